"""Per convolution of a bench-models result: where it sits in the converted graph, its shape, and what
it cost on each emulated core in the TREC model and in the dense twin.

The firmware's profiler gives instructions per operator (``result["boards"][board]["ops"]``, paired by
position: the converter keeps the twin's graph with TREC_CONV_2D in place of CONV_2D). This module
names those operators by layer, so the report says per layer what TREC saved, or, for a layer left
dense, what share of the network it is and its shape (1x1, strided, few output rows): the facts that
decide whether TREC can pay there (docs/OP_SPEC.md; trec_tflm.tune.cost).
"""

from __future__ import annotations

import re
from pathlib import Path

from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_CUSTOM_CODE, decode_trec_options
from trec_tflm.tflite.convert import load_keras_model

_CONV_OPS = ("CONV_2D", TREC_CUSTOM_CODE)
# the Keras layer in a fused output tensor's name: ".../<layer>[_<n>]/convolution"
_LAYER_IN_NAME = re.compile(r"([^/;]+)/convolution(?:;|$)")


def conv_ops(m, names: list[str]) -> dict[str, dict]:
    """The operator of each Keras convolution in ``names`` in the converted model ``m`` (parsed,
    trec_tflm.spec.model.load_model): ``{name: {"op",
    "kernel", "stride", "cin", "cout", "rows"}}`` (rows: output height x width; a TREC operator with a
    ``scratch_budget`` option also has it). TREC operators are
    named by the converter's metadata; CONV_2D ones by their output tensor's name, which TensorFlow's
    converter builds from the layer's (with a ``_<n>`` suffix Keras may add). A convolution not found
    is left out."""
    sg = m.subgraphs[0]
    by_index = {int(e["operator_index"]): e["name"] for e in (tm.read_metadata(m) or {}).get("trec_layers") or []
                if "operator_index" in e}
    wanted = set(names)
    found = {}
    for i, op in enumerate(sg.operators):
        kind = tm.op_name(m, op)
        if kind not in _CONV_OPS:
            continue
        name = by_index.get(i) if kind == TREC_CUSTOM_CODE else _layer_of(sg.tensors[op.outputs[0]], wanted)
        if name not in wanted or name in found:
            continue
        cout, kh, kw, cin = (int(v) for v in sg.tensors[op.inputs[1]].shape)
        out = [int(v) for v in sg.tensors[op.outputs[0]].shape]
        budget = None
        if kind == TREC_CUSTOM_CODE:
            o = decode_trec_options(tm.custom_options_bytes(op))
            stride, budget = [o["stride_h"], o["stride_w"]], o.get("scratch_budget")
        else:
            stride = [int(op.builtinOptions.strideH), int(op.builtinOptions.strideW)]
        found[name] = {"op": i, "kernel": [kh, kw], "stride": stride, "cin": cin, "cout": cout, "rows": out[1:3],
                       **({"scratch_budget": budget} if budget is not None else {})}
    return found


def _layer_of(tensor, names: set[str]) -> str | None:
    for part in _LAYER_IN_NAME.findall(tm.tensor_name(tensor)):
        if part in names:
            return part
        bare = re.sub(r"_\d+$", "", part)
        if bare in names:
            return bare
    return None


def with_ops(rows: list[dict], m) -> list[dict]:
    """Layer rows (``name``, ``kind``...) with their operator and shape from :func:`conv_ops`."""
    ops = conv_ops(m, [r["name"] for r in rows])
    return [{**r, **ops.get(r["name"], {})} for r in rows]


def instructions(layer: dict, boards: dict) -> dict[str, dict]:
    """``{board: {"trec", "dense", "share"}}`` for one layer row that has ``op``: its operator's mean
    instructions per inference in each model, and its share of the dense twin's total."""
    if "op" not in layer:
        return {}
    found = {}
    for board, b in boards.items():
        ops = b.get("ops") or []
        row = next((r for r in ops if r.get("index") == layer["op"]), None)
        total = sum(r.get("dense") or 0 for r in ops)
        if row is None or row.get("trec") is None or row.get("dense") is None or not total:
            continue
        found[board] = {"trec": row["trec"], "dense": row["dense"], "share": row["dense"] / total}
    return found


def describe(layer: dict, boards: dict) -> str:
    """One report line: the layer's choice, shape, and per core what it cost against the twin."""
    head = (f"{layer['name']} TREC (L={layer['L']}, H={layer['H']}, rc={layer['rc']:.3f})"
            if layer["kind"] == "TREC" and layer.get("rc") is not None else f"{layer['name']} {layer['kind']}")
    if "op" in layer:
        (kh, kw), (sh, sw) = layer["kernel"], layer["stride"]
        head += (f", {kh}x{kw}{'' if (sh, sw) == (1, 1) else f' stride {sh}'} {layer['cin']}->{layer['cout']}, "
                 f"{layer['rows'][0]}x{layer['rows'][1]} output rows")
    if layer.get("scratch_budget") is not None:
        head += f", scratch {layer['scratch_budget']:,} B"
    cost = []
    for board, c in instructions(layer, boards).items():
        if layer["kind"] == "TREC":
            cost.append(f"{board} {c['trec']:,.0f} vs {c['dense']:,.0f} dense ({c['dense'] / c['trec']:.2f}x fewer, "
                        f"{100 * c['share']:.1f}% of the twin)")
        else:
            cost.append(f"{board} {c['dense']:,.0f} ({100 * c['share']:.1f}% of the twin)")
    line = head + (": " + "; ".join(cost) if cost else "")
    return line + (f"; why: {layer['why']}" if layer.get("why") else "")


def layer_choices(trec_tflite: bytes, trec_keras: Path) -> list[dict]:
    """Every convolution in build order: TREC with its (L, H, rc) or dense, and its operator and shape
    (:func:`with_ops`). rc: the converter's, the float model's on the calibration images."""
    from trec_tflm.training.models import conv_layers  # lazy: Keras and TensorFlow

    m = tm.load_model(trec_tflite)
    meta = tm.read_metadata(m) or {}
    trec = {e["name"]: e for e in meta.get("trec_layers") or []}
    rows = []
    for conv in conv_layers(load_keras_model(trec_keras)):
        e = trec.get(conv.name)
        rows.append({"name": conv.name, "kind": "TREC" if e else "dense",
                     **({"L": e.get("sub_vector_length"), "H": e.get("hash_bits"), "rc": e.get("rc")}
                        if e else {})})
    return with_ops(rows, m)


def with_whys(rows: list[dict], whys: dict) -> list[dict]:
    """The maker's reason per layer (tune's: why a layer is dense, or what TREC is predicted to save)."""
    return [{**r, "why": whys[r["name"]]} if r["name"] in whys else r for r in rows]

"""``trec-tflm inspect MODEL.tflite [--json]``: what a converted model holds.

Operators (index, name, input/output shapes and dtypes), the options of every ``TREC_CONV_2D``,
per-layer work (dense MACs vs the TREC work model of docs/OP_SPEC.md "Reuse statistics"), weight
bytes, the ``trec_tflm`` metadata and, when TFLM can run the model here, the arena it allocates
(:func:`trec_tflm.host.arena.measure_arena`).

Work model, per output pixel of a conv with K = kh*kw*Cin, M = ceil(K/L), Cout channels:
dense ``K*Cout`` MACs; TREC ``K*H`` (hashing) + ``K`` (centroid sums) + ``rc*K*Cout`` (cluster
products) + ``M*Cout`` (scatter adds). rc comes from the metadata (measured by the converter with
the float Keras model on its calibration images); without it the product term is "unknown".
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from trec_tflm.host.arena import measure_arena
from trec_tflm.spec import model as tm
from trec_tflm.spec import validate

# kernel_path and general_path_hint are facts of the int8 kernel (spec.golden); importable from here as before
from trec_tflm.spec.golden import general_path_hint, kernel_path


def trec_work(k: int, cout: int, length: int, bits: int, n: int, rc: float | None) -> dict:
    """The work model for one layer and one image (N output pixels)."""
    m = math.ceil(k / length)
    work = {"hash_macs": n * k * bits, "centroid_adds": n * k, "scatter_adds": n * m * cout,
            "cluster_product_macs": None if rc is None else int(round(rc * n * k * cout))}
    work["total"] = None if rc is None else sum(work.values())
    return work


def _const_bytes(m, tensor_index: int) -> int:
    t = m.subgraphs[0].tensors[tensor_index]
    data = m.buffers[t.buffer].data if 0 <= t.buffer < len(m.buffers) else None
    return 0 if data is None else len(data)


def _conv_geometry(op) -> tuple[int, int, int, int]:
    """(K, Cout, N = Ho*Wo, Cin) of a conv-like OpInfo (input 0, filter 1, output 0)."""
    w = op.inputs[1].shape
    out = op.outputs[0].shape
    return int(np.prod(w[1:])), int(w[0]), int(out[1] * out[2]), int(w[3])


def inspect_model(buf: bytes, *, measure: bool = True) -> dict:
    """The report ``trec-tflm inspect`` prints, as a dict (the ``--json`` form)."""
    m = validate.validate_model(buf)
    ops = tm.operators(m)
    meta = tm.read_metadata(m)
    by_op = {e.get("operator_index"): e for e in (meta or {}).get("trec_layers") or []}
    sg = m.subgraphs[0]
    weight_bytes = sum(_const_bytes(m, i) for i in range(len(sg.tensors)))

    trec, convs = [], []
    for op in ops:
        if op.name == tm.TREC_CUSTOM_CODE:
            o = op.trec_options
            k, cout, n, cin = _conv_geometry(op)
            entry = by_op.get(op.index, {})
            rc = entry.get("rc")
            work = trec_work(k, cout, o["sub_vector_length"], o["hash_bits"], n, rc)
            dense = n * k * cout
            layer_bytes = sum(_const_bytes(m, t.index) for t in op.inputs[1:] if t is not None)
            trec.append({
                "operator_index": op.index, "name": entry.get("name"),
                "sub_vector_length": o["sub_vector_length"], "hash_bits": o["hash_bits"],
                "hash_center": o["hash_center"], "options": o, "scratch_budget": o.get("scratch_budget"),
                "input_shape": op.inputs[0].shape, "output_shape": op.outputs[0].shape,
                "filter_shape": op.inputs[1].shape, "K": k, "M": math.ceil(k / o["sub_vector_length"]),
                "rows": n, "rc": rc if rc is not None else "unknown",
                "rc_source": (meta or {}).get("calibration", {}).get("rc_source") if rc is not None else
                "no measured rc in the metadata",
                "dense_macs": dense, "trec_work": work,
                "estimated_speedup": None if work["total"] is None else dense / work["total"],
                "weight_bytes": int(layer_bytes),
                "kernel": kernel_path(o["sub_vector_length"], cin, int(op.inputs[1].shape[2]), k),
            })
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, out = op.inputs[1].shape, op.outputs[0].shape
            macs = int(np.prod(out[1:3])) * int(np.prod(w))
            if op.name == "DEPTHWISE_CONV_2D":
                macs = int(np.prod(out[1:])) * int(np.prod(w[1:3]))
            convs.append({"operator_index": op.index, "op": op.name, "macs": macs})

    report = {
        "bytes": len(buf),
        "operators": [op.to_dict() for op in ops],
        "operator_codes": sorted({op.name for op in ops}),
        "trec_layers": trec,
        "other_convs": convs,
        "weight_bytes": int(weight_bytes),
        "metadata": meta,
    }
    dense_total = sum(t["dense_macs"] for t in trec) + sum(c["macs"] for c in convs)
    trec_known = all(t["trec_work"]["total"] is not None for t in trec)
    report["totals"] = {
        "conv_macs_dense": dense_total,
        "conv_work_trec": (sum(t["trec_work"]["total"] for t in trec) + sum(c["macs"] for c in convs))
        if trec_known else "unknown",
    }
    report["arena"] = measure_arena(buf, bool(trec)) if measure else {"bytes": None, "how": "not measured"}
    return report


def _fmt_tensor(t) -> str:
    if t is None:
        return "-"
    c = "c" if t.constant else ""
    return f"{t.dtype}{t.shape}{c}"


def print_report(report: dict, ops_info) -> None:
    meta = report["metadata"]
    print(f"{report['bytes']:,} bytes, {len(report['operators'])} operators, operator codes: "
          f"{', '.join(report['operator_codes'])}")
    if meta:
        print(f"metadata: trec_tflm {meta.get('trec_tflm_version')} (format {meta.get('format_version')}), "
              f"model {meta.get('model_name')!r}, io {meta.get('io')}, "
              f"labels: {', '.join(meta['labels']) if meta.get('labels') else 'none'}")
    else:
        print("metadata: none (not written by trec-tflm convert)")
    print("\noperators (c = constant):")
    for op in ops_info:
        ins = ", ".join(_fmt_tensor(t) for t in op.inputs)
        outs = ", ".join(_fmt_tensor(t) for t in op.outputs)
        print(f"  {op.index:>3} {op.name:<16} {ins}  ->  {outs}")
    if report["trec_layers"]:
        print("\nTREC_CONV_2D layers:")
        for t in report["trec_layers"]:
            o = t["options"]
            rc = t["rc"] if isinstance(t["rc"], str) else f"{t['rc']:.4f}"
            print(f"  op {t['operator_index']} {t['name'] or '?'}: L={o['sub_vector_length']} H={o['hash_bits']} "
                  f"centre={o['hash_center']} stride={o['stride_h']}x{o['stride_w']} "
                  f"dilation={o['dilation_h']}x{o['dilation_w']} padding={o['padding']} act={o['activation']} "
                  + ("scratch budget: none (fast plan)" if o.get("scratch_budget") is None
                     else f"scratch budget: {o['scratch_budget']:,} B"))
            w = t["trec_work"]
            total = "unknown (no rc)" if w["total"] is None else f"{w['total']:,}"
            speed = "" if t["estimated_speedup"] is None else f"  dense/TREC {t['estimated_speedup']:.2f}x"
            print(f"      K={t['K']} M={t['M']} rows={t['rows']} rc={rc}  dense MACs {t['dense_macs']:,}  "
                  f"TREC work {total} (hash {w['hash_macs']:,}, centroid {w['centroid_adds']:,}, products "
                  f"{'unknown' if w['cluster_product_macs'] is None else format(w['cluster_product_macs'], ',')}, "
                  f"scatter {w['scatter_adds']:,}){speed}  weights {t['weight_bytes']:,} B")
            kp = t["kernel"]
            if kp["path"] == "strip":
                j = o["sub_vector_length"] // t["filter_shape"][3]
                what = "one pixel's channels" if j == 1 else f"{j} neighbouring pixels"
                print(f"      int8 kernel: strip path (a sub-vector is {what})")
            else:
                print("      int8 kernel: " + general_path_hint(o["sub_vector_length"], t["filter_shape"][3],
                                                                t["filter_shape"][2], kp["strip_lengths"]))
    else:
        print("\nno TREC_CONV_2D operators")
    for c in report["other_convs"]:
        print(f"  op {c['operator_index']} {c['op']}: {c['macs']:,} MACs")
    tot = report["totals"]
    print(f"\nconvolutions: dense {tot['conv_macs_dense']:,} MACs, with TREC "
          f"{tot['conv_work_trec'] if isinstance(tot['conv_work_trec'], str) else format(tot['conv_work_trec'], ',')}")
    print(f"weights (constant buffers): {report['weight_bytes']:,} bytes")
    a = report["arena"]
    print(f"TFLM arena: {'unknown' if a['bytes'] is None else format(a['bytes'], ',') + ' bytes'} ({a['how']})")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .tflite model")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-arena", action="store_true", help="do not try to measure the TFLM arena")
    p.set_defaults(func=inspect_command)


def inspect_command(args) -> int:
    buf = tm.read_bytes(args.model)
    validate.validate_model(buf, args.model)
    report = inspect_model(buf, measure=not args.no_arena)
    report["model"] = str(args.model)
    if args.json:
        print(json.dumps(report, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    else:
        print_report(report, tm.operators(tm.load_model(buf)))
    return 0

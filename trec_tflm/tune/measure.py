"""The tuner's result against the dense input model, measured on the emulated board of its core.

Both int8 models are deployed, built and run in TFLM on QEMU the way ``trec-tflm demo`` and
``trec-tflm bench --compare`` do it (:func:`trec_tflm.bench.compare.compare_on_qemu`): the TREC model
with our ``TREC_CONV_2D`` kernels, the dense one with TFLM's CMSIS-NN kernels, the same images. QEMU
runs with ``-icount shift=0``, so the counts are executed instructions, identical on every run.

:func:`measure` returns ``(doc, None)`` or ``(None, why)``: why not measured (the TFLM tree, the ARM
toolchain or qemu-system-arm missing, or the build or run failed) -- a tune run that took many
minutes of fine-tuning keeps its result when the board cannot be emulated here. Every step has a
timeout: the build (``firmware.build``), QEMU's start and the arena run, and every serial command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from trec_tflm.bench.compare import compare_on_qemu
from trec_tflm.errors import TrecTflmError
from trec_tflm.host import tflm_build
from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_CUSTOM_CODE
from trec_tflm.target import toolchain
from trec_tflm.target.boards import QEMU_BOARD_OF_CORE

DEFAULT_IMAGES = 20
CONV_OPS = ("CONV_2D", TREC_CUSTOM_CODE)


def why_not(core: str) -> str | None:
    """None when ``core``'s emulated board can be built and run here, else what is missing and how to get it."""
    if core not in QEMU_BOARD_OF_CORE:
        return f"no emulated board has core {core!r} (emulated cores: {', '.join(sorted(QEMU_BOARD_OF_CORE))})"
    try:
        tflm_build.check_tflm_tree()
    except tflm_build.TflmTreeMissing as exc:
        return f"the TFLM tree is missing ({exc})"
    reason = toolchain.skip_reason(need_qemu=True, need_toolchain=True)
    return None if reason is None else f"the emulator or the ARM toolchain is missing ({reason})"


def conv_ops(tflite: bytes) -> list[dict]:
    """The convolutions of an int8 model in execution order: operator index, op, filter shape, and the
    Keras layer's name where the model's metadata records it (TREC layers)."""
    m = tm.load_model(tflite)
    named = {e.get("operator_index"): e.get("name") for e in (tm.read_metadata(m) or {}).get("trec_layers") or []}
    return [{"index": op.index, "op": op.name, "filter_shape": list(op.inputs[1].shape),
             "layer": named.get(op.index)}
            for op in tm.operators(m) if op.name in CONV_OPS]


def _op_means(bench) -> dict[int, float]:
    """Operator index -> mean instructions per inference (run_bench names each op ``NAME #index``)."""
    return {int(op.name.rsplit(" #", 1)[1]): float(op.ticks) for op in bench.ops}


def per_layer(trec_tflite: bytes, dense_tflite: bytes, trec_ops: dict[int, float], dense_ops: dict[int, float],
              layers: Sequence[str] | None = None) -> list[dict]:
    """The measured instructions of each convolution in both models, paired by position (the converter keeps
    the dense twin's graph, a TREC_CONV_2D in place of a CONV_2D) and named after ``layers`` (the model's conv
    layers in order) or the TREC metadata. Raises ValueError when the two graphs' convolutions differ."""
    t, d = conv_ops(trec_tflite), conv_ops(dense_tflite)
    if len(t) != len(d) or any(a["filter_shape"] != b["filter_shape"] for a, b in zip(t, d)):
        raise ValueError(f"the TREC model's convolutions {[a['filter_shape'] for a in t]} are not the dense "
                         f"model's {[b['filter_shape'] for b in d]}: not twins")
    names = list(layers) if layers is not None and len(layers) == len(t) else [None] * len(t)
    rows = []
    for i, (a, b) in enumerate(zip(t, d)):
        if a["layer"] is not None and names[i] is not None and a["layer"] != names[i]:
            raise ValueError(f"convolution {i} of the TREC model is layer {a['layer']!r} by its metadata, but "
                             f"{names[i]!r} by the model's layer order")
        ti, di = trec_ops.get(a["index"]), dense_ops.get(b["index"])
        rows.append({"layer": a["layer"] or names[i] or f"conv #{i}",
                     "trec_op": f"{a['op']} #{a['index']}", "trec_instructions": ti,
                     "dense_op": f"{b['op']} #{b['index']}", "dense_instructions": di,
                     "speedup": di / ti if ti and di is not None else None})
    return rows


def measure(trec_tflite: bytes, dense_tflite: bytes, x_images, *, core: str = "m7", images: int = DEFAULT_IMAGES,
            layers: Sequence[str] | None = None, images_from: str = "test",
            log: Callable[[str], None] | None = None) -> tuple[dict | None, str | None]:
    """Both models on ``core``'s QEMU board in TFLM, on the first ``images`` of ``x_images`` (float images as
    the models take them). Returns ``(doc, None)`` with per model the median instructions per inference,
    the whole-network ratio and per convolution the mean instructions of both (``per_layer``), or
    ``(None, why)`` when it could not be measured."""
    n = min(int(images), len(x_images))
    if n <= 0:
        return None, "not measured: no images (--measure-images 0 turns the measurement off)"
    reason = why_not(core)
    if reason:
        return None, f"not measured: {reason}"
    board = QEMU_BOARD_OF_CORE[core]
    try:
        res = compare_on_qemu(bytes(trec_tflite), bytes(dense_tflite), board, np.asarray(x_images[:n]), None,
                              host=False, names=("tune_trec", "tune_dense"), log=log)
    except (TrecTflmError, OSError) as exc:
        return None, f"not measured: {type(exc).__name__}: {exc}"
    trec, dense = (float(np.median(r.bench.ticks)) for r in (res.trec, res.dense))
    doc = {"core": core, "board": board, "images": n, "images_from": images_from, "unit": res.trec.bench.unit,
           "trec_instructions": trec, "dense_instructions": dense, "speedup": dense / trec,
           "trec_mean_instructions": res.trec.instructions, "dense_mean_instructions": res.dense.instructions,
           "trec_ops_sum": sum(op.ticks for op in res.trec.bench.ops),
           "dense_ops_sum": sum(op.ticks for op in res.dense.bench.ops),
           "per_layer": [], "per_layer_why": None}
    try:
        doc["per_layer"] = per_layer(trec_tflite, dense_tflite, _op_means(res.trec.bench),
                                     _op_means(res.dense.bench), layers)
    except ValueError as exc:  # the whole-network numbers stand without the per-layer split
        doc["per_layer_why"] = str(exc)
    return doc, None


def for_report(trec_tflite: bytes, dense_tflite: bytes, *, test, validation, core: str, images: int,
               layers: Sequence[str], log: Callable[[str], None]) -> dict:
    """report.json's ``measured`` and ``measured_why``: on the test images when there are any, else on the
    validation images; ``images`` 0 turns it off."""
    if images <= 0:
        return {"measured": None, "measured_why": "not measured: turned off (--measure-images 0)"}
    x, where = (test[0], "test") if test is not None and len(test[0]) else (validation[0], "validation")
    log(f"measuring the result and the input model on the emulated {core} ({min(images, len(x))} {where} images)")
    doc, why = measure(trec_tflite, dense_tflite, x, core=core, images=images, layers=layers, images_from=where,
                       log=log)
    if doc is None:
        log(why)
    else:
        log(f"measured on {doc['board']}: {doc['trec_instructions']:,.0f} vs dense {doc['dense_instructions']:,.0f} "
            f"instructions (median of {doc['images']}) = {doc['speedup']:.2f}x")
    return {"measured": doc, "measured_why": why}

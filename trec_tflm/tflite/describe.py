"""``trec-tflm inspect MODEL.tflite [--json]``: what a converted model holds.

Operators (index, name, input/output shapes and dtypes), the options of every ``TREC_CONV_2D``,
per-layer work (dense MACs vs the TREC work model of docs/OP_SPEC.md "Reuse statistics"), weight
bytes, the ``trec_tflm`` metadata and, when TFLM can run the model here, the arena it allocates.

Work model, per output pixel of a conv with K = kh*kw*Cin, M = ceil(K/L), Cout channels:
dense ``K*Cout`` MACs; TREC ``K*H`` (hashing) + ``K`` (centroid sums) + ``rc*K*Cout`` (cluster
products) + ``M*Cout`` (scatter adds). rc comes from the metadata (measured by the converter with
the float Keras model on its calibration images); without it the product term is "unknown".
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import re
import sys

import numpy as np

from trec_tflm.host import isolate
from trec_tflm.spec import model as tm
from trec_tflm.spec import validate
from trec_tflm.spec.golden import strip_width


def trec_work(k: int, cout: int, length: int, bits: int, n: int, rc: float | None) -> dict:
    """The work model for one layer and one image (N output pixels)."""
    m = math.ceil(k / length)
    work = {"hash_macs": n * k * bits, "centroid_adds": n * k, "scatter_adds": n * m * cout,
            "cluster_product_macs": None if rc is None else int(round(rc * n * k * cout))}
    work["total"] = None if rc is None else sum(work.values())
    return work


def kernel_path(length: int, cin: int, kw: int, k: int) -> dict:
    """Which path the int8 kernel takes for L: "strip" where golden.strip_width says L is a strip of
    whole pixels (each input position is hashed once and neighbouring windows' sums are updated,
    not re-summed), else "general" (every (row, sub-matrix) hashed and gathered element by element).
    With the strip lengths the layer could take."""
    strips = [j * cin for j in range(1, kw + 1) if j * cin <= k and strip_width(j * cin, cin, kw)]
    return {"path": "strip" if strip_width(length, cin, kw) else "general", "strip_lengths": strips}


def general_path_hint(length: int, cin: int, kw: int, strips: list[int]) -> str:
    """What to tell a user whose layer takes the general path."""
    better = " or ".join(f"L = {s}" for s in strips) or "no L (Cin exceeds K)"
    return (f"L = {length} is not j*Cin (Cin = {cin}) with j dividing the kernel width {kw}, so the int8 kernel "
            f"takes its general path: it hashes and gathers every im2col sub-vector (the CMSIS-NN example's "
            f"conv2 runs at 0.13x of dense at L = 9, 3.9x at L = 32; docs/BENCHMARKS.md); {better} takes the "
            f"strip path")


@contextlib.contextmanager
def _capture_fds():
    """Capture C-level stdout and stderr (TFLM prints through them) into a list of one string."""
    out: list = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with isolate.capture_file() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            try:
                ctypes.CDLL(None).fflush(None)
            except OSError:  # pragma: no cover
                pass
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


_ALLOC_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def measure_arena(buf: bytes, has_trec: bool) -> dict:
    """``{"bytes": int | None, "how": str}``: what TFLM allocates for the model on this host.
    TFLM runs in a child process: a crash there raises isolate.NativeCrashError."""
    return isolate.run_isolated(_measure_arena_here, buf, has_trec, what="measuring the TFLM arena", timeout=600)


def _measure_arena_here(buf: bytes, has_trec: bool) -> dict:
    if has_trec:
        try:
            from trec_tflm.host.interpreter import Runtime, TflmError
        except ImportError as exc:
            return {"bytes": None, "how": f"not measured: the model has TREC_CONV_2D ops and the TFLM glue "
                                          f"(trec_tflm.host.interpreter) is not available ({exc})"}
        try:
            rt = Runtime(buf)
            return {"bytes": int(rt.arena_used_bytes()),
                    "how": "TFLM with TREC_CONV_2D registered (trec_tflm.host.interpreter), "
                           "host build (64-bit pointers)"}
        except (TflmError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {"bytes": None, "how": f"not measured: TFLM cannot run TREC_CONV_2D here ({first})"}
    from trec_tflm.host.evaluate import RunnerUnavailable, wheel_interpreter

    try:
        interp = wheel_interpreter(buf, max(16 << 20, 10 * len(buf)))
    except RunnerUnavailable as exc:
        return {"bytes": None, "how": f"not measured: {exc}"}
    with _capture_fds() as log:
        interp.print_allocations()
    found = _ALLOC_TOTAL.search(log[0] if log else "")
    if not found:
        return {"bytes": None, "how": "not measured: the TFLM interpreter did not report its allocations"}
    return {"bytes": int(found.group(1)),
            "how": "tflite-micro interpreter (RecordingMicroAllocator), host build (64-bit pointers)"}


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
                "hash_center": o["hash_center"], "options": o,
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
                  f"dilation={o['dilation_h']}x{o['dilation_w']} padding={o['padding']} act={o['activation']}")
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

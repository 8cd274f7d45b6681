"""The tensor arena a 32-bit TFLM build needs for a model, estimated without TFLM
(:func:`estimate_arena`; ``trec-tflm deploy`` without ``TFLM_ROOT``). With a TFLM tree the arena is
measured instead (trec_tflm.target.firmware). :func:`grow_scratch` gives TREC layers the arena's
free room beside them for faster plans."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Optional

from trec_tflm.host import kernels as native
from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_CUSTOM_CODE
from trec_tflm.tflite.rewrite import with_scratch_budgets

#: TFLM aligns every arena buffer to 16 bytes (MicroArenaBufferAlignment()).
ARENA_ALIGN = 16
#: Fixed persistent overhead: the MicroAllocator, subgraph and planner bookkeeping, the
#: interpreter's input/output TfLiteTensors (32-bit build). Per tensor: a TfLiteEvalTensor
#: (12 bytes) + planner bookkeeping; per operator: TfLiteNode + registration + op data.
ARENA_FIXED = 2048
ARENA_PER_TENSOR = 48
ARENA_PER_OP = 160
ARENA_PER_CHANNEL = 8      # per-channel multiplier and shift (int32 each) of conv-like operators


@dataclasses.dataclass
class ArenaEstimate:
    activations: int        # greedy placement of the activation tensors and scratch buffers
    scratch: int            # largest scratch buffer of one operator (included in activations)
    persistent: int         # bookkeeping and op data (32-bit)
    margin: int
    notes: list

    @property
    def need(self) -> int:
        return self.activations + self.persistent

    @property
    def total(self) -> int:
        return align(self.need + self.margin, ARENA_ALIGN)

    def describe(self) -> str:
        return (f"estimate: activations+scratch {self.activations:,} B (largest scratch {self.scratch:,} B) "
                f"+ bookkeeping {self.persistent:,} B + margin {self.margin:,} B")


def align(n: int, a: int) -> int:
    return (int(n) + a - 1) // a * a


def _greedy_plan(buffers: list) -> int:
    """Peak of a first-fit placement of (size, first, last) buffers, largest first: the same
    strategy as TFLM's GreedyMemoryPlanner (buffers live in [first, last] operator steps)."""
    placed: list = []  # (offset, size, first, last)
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], buffers[i][1]))
    peak = 0
    for i in order:
        size, first, last = buffers[i]
        busy = sorted((o, s) for o, s, f, end in placed if not (end < first or f > last))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        peak = max(peak, offset + size)
    return peak


def _layer_args(op) -> tuple:
    """(input shape, filter shape, layer keywords) of the host kernels' size queries for a TREC op."""
    o = op.trec_options
    return (tuple(op.inputs[0].shape), tuple(op.inputs[1].shape),
            dict(sub_vector_length=o["sub_vector_length"], hash_bits=o["hash_bits"], hash_center=o["hash_center"],
                 stride=(o["stride_h"], o["stride_w"]), dilation=(o["dilation_h"], o["dilation_w"]),
                 padding=o["padding"]))


def _trec_scratch(op) -> tuple[int, str]:
    """Scratch bytes TREC_CONV_2D requests, as Prepare does: trec_convolve_s8_get_buffer_size, or
    the op's ``scratch_budget`` option when it has one (at most trec_convolve_s8_get_max_buffer_size),
    through the host C library when it can be built here; else twice the int8 output tensor (the
    kernel's design bound, docs/OP_SPEC.md) or the budget."""
    budget = op.trec_options.get("scratch_budget")
    out_bytes = int(math.prod(op.outputs[0].shape))
    x_shape, w_shape, layer = _layer_args(op)
    try:
        size, _ = native.kernels().trec_buffer_sizes(x_shape, w_shape, **layer)
        size, how = int(size) + 4, "trec_convolve_s8_get_buffer_size"
        most = native.kernels().trec_max_buffer_size(x_shape, w_shape, **layer) if budget is not None else None
    except Exception as exc:  # noqa: BLE001 - no compiler, or an older library: fall back
        size, how = 2 * out_bytes + 4096, f"2 x output + 4 KiB (kernel library unavailable: {type(exc).__name__})"
        most = None
    if budget is None:
        return size, how
    if most is not None and most < budget:
        return most + 4, "the op's scratch_budget, capped by trec_convolve_s8_get_max_buffer_size"
    return budget + 4, "the op's scratch_budget"


def estimate_arena(model: bytes, margin: Optional[int] = None) -> ArenaEstimate:
    """Tensor arena a 32-bit TFLM build needs for ``model``, without TFLM.

    Activations: every non-constant tensor lives from the operator that first touches it to the
    last one that reads it (graph inputs from the start, outputs to the end); each operator's
    scratch lives during that operator (TREC_CONV_2D: trec_convolve_s8_get_buffer_size, or its
    ``scratch_budget`` option; CONV_2D
    and DEPTHWISE_CONV_2D: CMSIS-NN's two int16 im2col columns, 4*K bytes; AVERAGE_POOL_2D: 4*C);
    the buffers, 16-byte aligned, are placed first-fit largest first like TFLM's greedy planner.
    Bookkeeping: ARENA_FIXED + ARENA_PER_TENSOR per tensor + ARENA_PER_OP per operator +
    ARENA_PER_CHANNEL per output channel of conv-like operators. ``margin``: default
    max(4 KiB, 10 %) of that sum. The TFLM-tier tests check the estimate against the arena the
    app really uses on the QEMU boards (it must not be smaller)."""
    m = tm.load_model(model)
    ops = tm.operators(m)
    sg = m.subgraphs[0]
    n_ops = len(ops)
    life: dict = {}
    for t in list(sg.inputs if sg.inputs is not None else []):
        life[int(t)] = [0, 0]
    for op in ops:
        for t in [*op.inputs, *op.outputs]:
            if t is None or t.constant:
                continue
            span = life.setdefault(t.index, [op.index, op.index])
            span[0] = min(span[0], op.index)
            span[1] = max(span[1], op.index)
    for t in list(sg.outputs if sg.outputs is not None else []):
        life.setdefault(int(t), [n_ops - 1, n_ops - 1])[1] = max(n_ops - 1, 0)
    buffers, notes = [], []
    for idx, (first, last) in life.items():
        info = tm.tensor_info(m, idx)
        nbytes = int(math.prod(info.shape)) * tm.tensor_dtype(sg.tensors[idx]).itemsize
        buffers.append((align(nbytes, ARENA_ALIGN), first, last))
    largest_scratch, channels = 0, 0
    for op in ops:
        scratch = 0
        if op.name == TREC_CUSTOM_CODE:
            scratch, how = _trec_scratch(op)
            if not any(how in n for n in notes):
                notes.append(f"TREC_CONV_2D scratch: {how}")
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.inputs[1] is not None:
            w = op.inputs[1].shape
            k = int(math.prod(w[1:])) if op.name == "CONV_2D" else int(math.prod(w[1:3])) * int(w[3])
            scratch = 4 * k
        elif op.name == "AVERAGE_POOL_2D":
            scratch = 4 * int(op.inputs[0].shape[-1])
        if op.name in (TREC_CUSTOM_CODE, "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") \
                and op.inputs[1] is not None:
            channels += int(op.inputs[1].shape[0] if op.name != "DEPTHWISE_CONV_2D" else op.inputs[1].shape[-1])
        if scratch:
            buffers.append((align(scratch, ARENA_ALIGN), op.index, op.index))
            largest_scratch = max(largest_scratch, align(scratch, ARENA_ALIGN))
    activations = _greedy_plan(buffers)
    persistent = ARENA_FIXED + ARENA_PER_TENSOR * len(sg.tensors) + ARENA_PER_OP * n_ops + ARENA_PER_CHANNEL * channels
    need = activations + persistent
    if margin is None:
        margin = max(4096, need // 10)
    return ArenaEstimate(activations, largest_scratch, persistent, int(margin), notes)


@dataclasses.dataclass
class Grown:
    """:func:`grow_scratch`'s model, the arena it stays within, and per TREC layer raised
    (by its ``trec_layers`` name, else its operator index) the scratch bytes before and after."""

    tflite: bytes
    limit: int
    layers: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"limit": self.limit,
                "layers": {str(name): {"before": a, "after": b} for name, (a, b) in self.layers.items()}}


def grow_scratch(model: bytes, limit: Optional[int] = None, *, arena: Optional[Callable[[bytes], int]] = None
                 ) -> Grown:
    """Give each TREC layer of ``model`` the most scratch, up to its fastest plan's worst case
    (trec_convolve_s8_get_max_buffer_size), that keeps the arena within ``limit`` bytes (default:
    the model's own, so the arena does not grow), through the op's ``scratch_budget`` option.
    ``arena``: bytes of a model's arena (default :func:`estimate_arena`'s total; where a TFLM tree
    is, TFLM's own planner is the truer measure: trec_tflm.host.interpreter.Runtime's
    arena_used_bytes, which the bench passes). Needs the host C library (the kernel's sizes).

    Why: the op's default scratch is twice its output (the paper's space-efficiency bar), but the
    arena is sized by its peak operator, so a layer elsewhere has room beside its activations that
    faster plans can use for free (CifarNet's conv2: 6 passes over its channels in its default 32 KB,
    2 in the 96 KB beside it; docs/BENCHMARKS.md). More scratch never makes the kernel slower (it
    takes the cheapest plan that fits, trec_convolve_plan_s8.c), so nothing is priced: each layer in
    turn takes the largest size that fits, found by bisection (first-fit placement makes the arena
    not quite monotone in one buffer's size, so each size is checked, not assumed)."""
    m = tm.load_model(model)
    if arena is None:
        def arena(buf: bytes) -> int:
            return estimate_arena(buf).total
    limit = arena(model) if limit is None else int(limit)
    names = {int(e["operator_index"]): e["name"] for e in (tm.read_metadata(m) or {}).get("trec_layers") or []}
    grown = Grown(model, limit)
    for op in tm.operators(m):
        if op.name != TREC_CUSTOM_CODE:
            continue
        x_shape, w_shape, layer = _layer_args(op)
        budget = op.trec_options.get("scratch_budget")
        now = native.kernels().trec_buffer_sizes(x_shape, w_shape, **layer)[0] if budget is None else budget
        most = native.kernels().trec_max_buffer_size(x_shape, w_shape, **layer) or limit

        def fits(size: int, idx=op.index) -> bool:
            return arena(with_scratch_budgets(grown.tflite, {idx: size})) <= limit

        if most <= now:
            continue
        if fits(most):
            best = most
        else:
            lo, hi = now // ARENA_ALIGN, most // ARENA_ALIGN  # in alignment steps: lo fits, hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid * ARENA_ALIGN) else (lo, mid)
            best = lo * ARENA_ALIGN
        if best > now:
            grown.tflite = with_scratch_budgets(grown.tflite, {op.index: best})
            grown.layers[names.get(op.index, op.index)] = (now, best)
    return grown


def without_scratch_budgets(model: bytes) -> bytes:
    """``model`` with no TREC layer's ``scratch_budget`` option: every op at its default scratch."""
    m = tm.load_model(model)
    return with_scratch_budgets(model, {op.index: None for op in tm.operators(m) if op.name == TREC_CUSTOM_CODE})

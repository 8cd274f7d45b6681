"""Fitting a TREC model's tensor arena into a RAM budget by choosing each TREC layer's scratch
(issue 20): :func:`fit_arena`.

A TREC_CONV_2D takes ``trec_convolve_s8_get_buffer_size`` bytes of scratch for its fastest plan, and
runs in anything down to ``trec_convolve_s8_get_min_buffer_size`` with more passes over the output
channels or a slower scatter plan (the op's ``scratch_budget`` option, docs/OP_SPEC.md; every plan
gives the same outputs bit for bit). Which plan a size buys depends on the clusters the input forms,
so it is not derived here: the kernel's host build (:func:`trec_tflm.tune.cost.host_plan`) runs on
the layer's int8 input activations at a ladder of sizes, and :func:`trec_tflm.tune.cost.predict_trec`
prices each plan. The arena of a choice is :func:`trec_tflm.target.arena.estimate_arena` of the model
with those budgets (the scratch is one buffer among the activations, so the arena is not the sum of
the scratches: shrinking a layer whose operator is not at the arena's peak saves nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from trec_tflm.errors import UserError
from trec_tflm.host.kernels import kernels
from trec_tflm.spec import model as tm
from trec_tflm.target.arena import estimate_arena
from trec_tflm.tflite.rewrite import with_scratch_budgets
from trec_tflm.tune import cost

#: sizes probed per layer between its minimum and its fastest plan's size, spaced geometrically: the
#: passes over the channels grow like 1/size, so equal ratios see their changes evenly (~15 % apart
#: for a 10x range); consecutive sizes priced the same keep only the smallest
LADDER = 16


class TuneError(UserError, ValueError):
    """Bad input to tune, or a budget nothing meets; the message says which and how to fix it."""


@dataclass
class LayerFit:
    """One TREC layer's scratch: its fastest plan's size and minimum (the C library's), the budget
    chosen (None: no cap, the fastest plan) and the predicted instructions per image at both."""

    name: str
    operator_index: int
    preferred_bytes: int
    minimum_bytes: int
    budget: int | None
    preferred_instructions: float
    instructions: float
    preferred_plan: str
    plan: str
    #: the kernel's plan at the budget makes fewer passes, or is priced cheaper, than at a larger
    #: size (shorter sums blocks, not in the cost model): priced as the larger one, but it may cost
    #: far more; taken only when nothing else fits, worth measuring
    unpriced: bool = False

    @property
    def slowdown(self) -> float:
        return self.instructions / self.preferred_instructions


@dataclass
class Fit:
    """The model with the chosen budgets, the arena estimate before and after, and per TREC layer
    the trade-off (:class:`LayerFit`)."""

    tflite: bytes
    budget: int
    arena_before: int
    arena_after: int
    layers: list = field(default_factory=list)

    @property
    def budgets(self) -> dict:
        return {f.name: f.budget for f in self.layers if f.budget is not None}

    @property
    def extra_instructions(self) -> float:
        """Predicted instructions per image the smaller plans add over the fastest ones."""
        return sum(f.instructions - f.preferred_instructions for f in self.layers)

    def to_dict(self) -> dict:
        return {"budget": self.budget, "arena_before": self.arena_before, "arena_after": self.arena_after,
                "extra_instructions": self.extra_instructions,
                "layers": [asdict(f) | {"slowdown": f.slowdown} for f in self.layers]}


@dataclass
class _Ladder:
    """A layer's probed sizes, largest (its fastest plan's) first, with predicted instructions and plans."""

    name: str
    operator_index: int
    sizes: list
    instructions: list
    plans: list
    unpriced: list  # priced as a larger size's plan: see _ladder


def fit_arena(tflite: bytes, budget: int, activations: dict, *, core: str = "m7", what: str = "") -> Fit:
    """Choose per TREC layer of ``tflite`` a scratch budget so that its arena (estimate_arena) fits
    ``budget`` bytes at the least predicted slowdown; ``activations`` maps each TREC layer's name to
    its input activations on a few images (float NHWC, quantized here with the operator's input
    quantization, or already int8). A model that fits is returned as it is. ``what`` says where the
    budget comes from (for the error). Raises :class:`TuneError` naming the layers with the most
    scratch and the bytes missing when even every layer at its minimum does not fit."""
    m, layers, sizes = _trec_layers(tflite)

    def arena(budgets: dict) -> int:
        return estimate_arena(with_scratch_budgets(tflite, budgets)).total

    before = arena({})
    if before <= budget:
        return Fit(tflite, budget, before, before, [])
    check_fits(tflite, budget, what)
    missing = [name for name, _ in layers if name not in activations]
    if missing:
        raise ValueError(f"fit_arena needs the input activations of TREC layer(s) {', '.join(missing)}")
    ladders = {name: _ladder(m, name, idx, *sizes[name], activations[name], core) for name, idx in layers}
    # the sizes the cost model prices only as a lower bound are the last resort
    trusted = {name: _trusted(d) for name, d in ladders.items()}
    if arena(_budgets(trusted, {name: len(d.sizes) - 1 for name, d in trusted.items()})) <= budget:
        ladders = trusted
    at = _greedy(ladders, arena, before, budget)
    budgets = {name: ladders[name].sizes[i] for name, i in at.items() if i > 0}
    fits = [LayerFit(name, d.operator_index, sizes[name][0], sizes[name][1], budgets.get(name),
                     d.instructions[0], d.instructions[at[name]], d.plans[0], d.plans[at[name]],
                     d.unpriced[at[name]])
            for name, d in ladders.items()]
    return Fit(with_scratch_budgets(tflite, budgets), budget, before, arena(budgets), fits)


def check_fits(tflite: bytes, budget: int, what: str = "") -> int:
    """The arena with every TREC layer at its minimum scratch (the least any choice of budgets
    reaches); raises :class:`TuneError` when it is over ``budget`` (nothing else is probed: this is
    the check before a setting is fine-tuned)."""
    _, _, sizes = _trec_layers(tflite)
    least = estimate_arena(with_scratch_budgets(tflite, {name: lo for name, (fast, lo) in sizes.items()
                                                         if lo < fast})).total
    if least > budget:
        raise TuneError(_unreachable(sizes, least, budget, what))
    return least


def _trec_layers(tflite: bytes):
    """(model, [(name, operator index)], {name: (fastest plan's scratch, minimum scratch)})."""
    m = tm.load_model(tflite)
    layers = [(e["name"], int(e["operator_index"])) for e in (tm.read_metadata(m) or {}).get("trec_layers") or []]
    return m, layers, {name: _buffer_sizes(m, idx) for name, idx in layers}


def _greedy(ladders: dict, arena, before: int, budget: int) -> dict:
    """Ladder index per layer (0: fastest plan) whose arena fits ``budget``.

    Choosing one size per layer under a memory cap is a multiple-choice knapsack; the layers' costs
    are roughly convex in the size (each halving of the scratch about doubles the passes), where
    taking the move with the fewest predicted instructions lost per arena byte saved is the usual
    near-optimal rule, and it needs only (layers x sizes) arena estimates per step where an exact
    search is exponential in the layers. A move may jump several sizes (the costs are not quite
    convex: the kernel's plans also change with the clusters). When no single move lowers the
    arena (two layers at the same peak), the move with the fewest instructions lost per byte of
    scratch saved is taken. Afterwards sizes are given back, most instructions regained first,
    while the arena still fits (a last big step may have overshot). Not always the optimum: a
    trade between two layers at the same peak (one smaller still, the other back up) can beat it
    (tests/test_tune_memory.py's LADDERS at 1400 B: 80 instructions lost where 73 would do)."""
    at = {name: 0 for name in ladders}
    current = before
    while current > budget:
        best = None
        for name, d in ladders.items():
            for j in range(at[name] + 1, len(d.sizes)):
                trial = arena(_budgets(ladders, {**at, name: j}))
                lost = d.instructions[j] - d.instructions[at[name]]
                saved = current - trial
                key = (0, lost / saved) if saved > 0 else (1, lost / (d.sizes[at[name]] - d.sizes[j]))
                if best is None or key < best[0]:
                    best = (key, name, j, trial)
        if best is None:  # every layer at its minimum: fit_arena checked that this fits
            raise AssertionError("the arena at the minimum scratch was checked to fit")
        _, name, j, current = best
        at[name] = j
    while True:
        best = None
        for name, d in ladders.items():
            for j in range(at[name]):
                regained = d.instructions[at[name]] - d.instructions[j]
                if regained > 0 and (best is None or regained > best[0]) \
                        and arena(_budgets(ladders, {**at, name: j})) <= budget:
                    best = (regained, name, j)
        if best is None:
            return at
        at[best[1]] = best[2]


def _trusted(d: _Ladder) -> _Ladder:
    keep = [i for i, u in enumerate(d.unpriced) if not u]
    return _Ladder(d.name, d.operator_index, *([getattr(d, f)[i] for i in keep]
                                               for f in ("sizes", "instructions", "plans", "unpriced")))


def _budgets(ladders: dict, at: dict) -> dict:
    return {name: ladders[name].sizes[i] for name, i in at.items() if i > 0}


def _buffer_sizes(m, idx: int) -> tuple[int, int]:
    """(get_buffer_size, get_min_buffer_size) of the TREC_CONV_2D at operator ``idx``."""
    sg = m.subgraphs[0]
    op = sg.operators[idx]
    o = tm.decode_trec_options(tm.custom_options_bytes(op), f"operator {idx}")
    fast, least = kernels("host").trec_buffer_sizes(
        tuple(int(v) for v in sg.tensors[op.inputs[0]].shape), tuple(int(v) for v in sg.tensors[op.inputs[1]].shape),
        sub_vector_length=o["sub_vector_length"], hash_bits=o["hash_bits"], hash_center=o["hash_center"],
        stride=(o["stride_h"], o["stride_w"]), dilation=(o["dilation_h"], o["dilation_w"]), padding=o["padding"])
    return int(fast), int(least)


def _int8_input(m, op, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.int8:
        return x
    q = tm.tensor_quant(m.subgraphs[0].tensors[op.inputs[0]])
    scale, zero_point = float(q.scale[0]), int(q.zero_point[0])
    return np.clip(np.round(x.astype(np.float32) / scale) + zero_point, -128, 127).astype(np.int8)


def _ladder(m, name: str, idx: int, fast: int, least: int, x, core: str) -> _Ladder:
    """The layer's sizes from ``fast`` down to ``least`` with the median predicted instructions of
    the plans the kernel picks at each on the images of ``x``.

    More scratch never costs the kernel more (it takes the cheapest plan that fits, and every plan
    that fits in less fits in more; trec_convolve_plan_s8.c's plan_cost), so a size predicted
    cheaper than a larger one is a gap in the cost model, not a bargain: the kernel got there by
    what its report does not tell (shorter sums blocks, another sums mode), which can cost far
    more (docs/BENCHMARKS.md "Per-op scratch budget": 23x at conv2's minimum, with fewer passes
    than at twice that scratch). Such a size, or one where an image makes fewer passes than at a
    larger size, is priced as the dearest larger one and marked ``unpriced``: fit_arena takes it
    only when the arena cannot fit without it, and the report says to measure it. Then sizes
    priced the same keep only the smallest."""
    op = m.subgraphs[0].operators[idx]
    p = tm.trec_op_params(m, op, where=f"TREC layer {name!r}")
    o, kw = p["options"], p["kwargs"]
    conv = cost.Conv.of(m.subgraphs[0].tensors[op.inputs[0]].shape, p["filter"].shape, kw["stride"],
                        kw["dilation"], kw["padding"])
    x8 = _int8_input(m, op, x)
    sizes = [fast, *np.geomspace(fast, least, LADDER)[1:-1].astype(int).tolist(), least] if least < fast else [fast]
    ladder = _Ladder(name, idx, [], [], [], [])
    dearest, most_passes = 0.0, np.zeros(len(x8), int)
    for size in sizes:
        plans = cost.host_plan(x8, p["filter"], p["hash"], sub_vector_length=o["sub_vector_length"],
                               hash_bits=o["hash_bits"], input_zero_point=kw["input_zero_point"],
                               hash_center=o["hash_center"], stride=kw["stride"], dilation=kw["dilation"],
                               padding=kw["padding"], scratch_bytes=int(size))
        predicted = float(np.median([cost.predict_trec(conv, o["sub_vector_length"], o["hash_bits"], max(q.rc, 1e-6),
                                                       q.passes, q.scatter_tenths, core, q.sums_block, q.plan)
                                      for q in plans]))
        median = plans[int(np.argsort([q.passes for q in plans])[len(plans) // 2])]
        described = f"{median.passes} pass(es) x {median.chunk} channels, {median.plan}"
        passes = np.array([q.passes for q in plans])
        # fewer passes in less scratch: more channels per pass fit only with shorter sums blocks (the
        # kernel reports them, the model prices them) or another sums mode, which the report does not tell
        unpriced = predicted < dearest or bool(np.any(passes < most_passes))
        dearest, most_passes = max(dearest, predicted), np.maximum(most_passes, passes)
        if len(ladder.sizes) > 1 and dearest == ladder.instructions[-1] and unpriced == ladder.unpriced[-1]:
            # priced as the size before it: keep the smaller (index 0 stays the fastest plan's size)
            ladder.sizes[-1], ladder.plans[-1], ladder.unpriced[-1] = int(size), described, unpriced
        else:
            ladder.sizes.append(int(size))
            ladder.instructions.append(dearest)
            ladder.plans.append(described)
            ladder.unpriced.append(unpriced)
    return ladder


def _unreachable(sizes: dict, least_arena: int, budget: int, what: str) -> str:
    if not sizes:
        return (f"the model needs an arena of {least_arena:,} B, over the budget of {budget:,} B"
                f"{f' ({what})' if what else ''} by {least_arena - budget:,} B, and has no TREC layer whose "
                "scratch could shrink; give a board with more RAM or a larger --arena-budget")
    by_scratch = sorted(sizes.items(), key=lambda kv: -kv[1][1])[:2]
    layers = ", ".join(f"{name!r} ({lo:,} B at least, {fast:,} B for its fastest plan)"
                       for name, (fast, lo) in by_scratch)
    return (f"the arena needs {least_arena:,} B even with every TREC layer at its minimum scratch, over the budget "
            f"of {budget:,} B{f' ({what})' if what else ''} by {least_arena - budget:,} B; the most scratch is "
            f"held by {layers}; give a board with more RAM or --arena-budget {least_arena:,} or more, or keep "
            f"{by_scratch[0][0]!r} dense (fewer TREC layers)")

"""The tuner's search space and its predictions (issue 20): per convolution the candidate (L, H), their rc
on calibration images, predicted instructions TREC vs dense (:mod:`trec_tflm.tune.cost`), and the order
in which :mod:`trec_tflm.tune.run` fine-tunes whole-network settings (:class:`Search`: per-layer (L, H),
one layer at a time).

Candidates per layer: every strip length L = j*Cin (j dividing the kernel width,
``transform.strip_lengths``) times every H of :data:`HASH_BITS`. Cin itself is always a strip length, so
the general path (slower than dense on the int8 kernel) never enters the search. rc, passes and plan come
from the kernel itself (``cost.host_plan``, the host build) on the layer's int8 input activations: the
calibration images (training split) through the float model up to the layer, quantized as the int8 model
quantizes a ReLU activation (zero point -128) or a signed one (its min..max), and a fixed random hash
matrix (the fine-tuned one differs; rc is a property of the input's clustering more than of the
particular projections). rc is the median over :data:`PLAN_IMAGES` images.

Whole network: the conv layers by the cost model (TREC or CMSIS-NN dense), each ``Dense`` layer as a 1x1
convolution of one pixel through the dense model, every other op (pooling, activations, reshape,
softmax, quantize) counted 0. The other ops push QEMU's count up, the fine-tuned hash (which usually
merges more rows than the random one) pushes it down: on fashion_net it measured 3.20x where 2.99x
was predicted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from trec_tflm.host.kernels import kernels
from trec_tflm.spec import golden
from trec_tflm.tune import cost

#: H tried for every layer: 8 is to_trec's default (ids fit a byte), fewer bits cluster more rows (faster,
#: less accurate). Above 8 the ids take two bytes and the scatter slows down.
HASH_BITS = (8, 7, 6, 5)
#: images whose int8 activations the kernel plans on (median rc, passes, plan)
PLAN_IMAGES = 8


@dataclass
class LayerCandidate:
    """One (L, H) of one convolution with its measured rc and predicted instructions per image."""

    layer: str
    sub_vector_length: int
    hash_bits: int
    rc: float
    passes: int
    plan: str
    chunk: int
    trec_instructions: float
    dense_instructions: float
    scratch_bytes: int

    @property
    def pays(self) -> bool:
        return self.trec_instructions < self.dense_instructions


@dataclass
class LayerInfo:
    name: str
    conv: cost.Conv
    dense_instructions: float
    candidates: list = field(default_factory=list)
    why_not: str | None = None  # TREC cannot take it (transform.why_not)


@dataclass
class Setting:
    """A whole-network choice: {layer: (L, H)} for the TREC layers, the rest dense."""

    name: str
    choice: dict
    predicted_instructions: float
    dense_instructions: float

    @property
    def speedup(self) -> float:
        return self.dense_instructions / self.predicted_instructions

    def key(self) -> str:
        return ",".join(f"{k}:{length}x{bits}" for k, (length, bits) in sorted(self.choice.items())) or "dense"

    def to_dict(self) -> dict:
        return {"name": self.name, "choice": {k: list(v) for k, v in self.choice.items()},
                "predicted_instructions": self.predicted_instructions, "speedup": self.speedup}


def _quantize_activations(x: np.ndarray) -> tuple[np.ndarray, int]:
    """float activations -> int8 and zero point, as the int8 converter quantizes a tensor of that range."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8), zero_point


def _quantize_filter(kernel: np.ndarray) -> np.ndarray:
    """Keras kernel [kh, kw, cin, cout] -> int8 [cout, kh, kw, cin], per output channel symmetric."""
    w = np.transpose(np.asarray(kernel, np.float32), (3, 0, 1, 2))
    scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)


def conv_geometry(layer) -> cost.Conv:
    shape = tuple(int(d) for d in layer.input.shape[1:])
    kh, kw = layer.kernel_size
    return cost.Conv.of((1, *shape), (int(layer.filters), kh, kw, shape[-1]), layer.strides,
                        layer.dilation_rate, layer.padding)


def layer_candidates(name: str, conv: cost.Conv, kernel: np.ndarray, activations: np.ndarray, *,
                     core: str, hash_bits=HASH_BITS, seed: int = 0, lengths=None) -> list[LayerCandidate]:
    """Every strip (L, H) of one layer, measured on ``activations`` (float [N, h, w, cin])."""
    from trec_tflm.training.transform import strip_lengths  # lazy: Keras

    x, zero_point = _quantize_activations(np.asarray(activations[:PLAN_IMAGES], np.float32))
    w = _quantize_filter(kernel)
    dense = cost.predict_dense(conv, core)
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths or strip_lengths(conv.kw, conv.cin):
        for bits in hash_bits:
            try:
                golden.check_trec_params(conv.depth, length, bits, "mean")
            except ValueError:
                continue  # e.g. L beyond K
            hsh = rng.integers(-127, 128, (length, bits), dtype=np.int8)
            plans = cost.host_plan(x, w, hsh, sub_vector_length=length, hash_bits=bits, input_zero_point=zero_point,
                                   stride=conv.stride, dilation=conv.dilation, padding=conv.padding)
            rc = float(np.median([p.rc for p in plans]))
            typical = plans[int(np.argsort([p.rc for p in plans])[len(plans) // 2])]
            trec = cost.predict_trec(conv, length, bits, max(rc, 1e-6), typical.passes, typical.scatter_tenths,
                                     core, typical.sums_block, typical.plan)
            scratch, _ = kernels("host").trec_buffer_sizes(
                (1, conv.h, conv.w, conv.cin), (conv.cout, conv.kh, conv.kw, conv.cin), sub_vector_length=length,
                hash_bits=bits, stride=conv.stride, dilation=conv.dilation, padding=conv.padding)
            out.append(LayerCandidate(name, length, bits, rc, typical.passes, typical.plan, typical.chunk, trec,
                                      dense, int(scratch)))
    return out


def other_instructions(model, core: str) -> float:
    """Predicted instructions of the non-conv layers: Dense as a one-pixel 1x1 conv, everything else 0."""
    import keras  # lazy: only called with a Keras model in hand

    total = 0.0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Dense):
            cin = int(layer.kernel.shape[0])
            total += cost.predict_dense(cost.Conv(1, 1, cin, int(layer.units), 1, 1), core)
    return total


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def predicted(layers: list[LayerInfo], choice: dict, other: float) -> float:
    """Predicted whole-network instructions of ``choice`` ({layer: (L, H)}, the other layers dense)."""
    total = other
    for info in layers:
        c = candidate_of(layers, info.name, *choice[info.name]) if info.name in choice else None
        total += c.trec_instructions if c is not None else info.dense_instructions
    return total


def setting_of(layers: list[LayerInfo], name: str, choice: dict, other: float) -> Setting:
    dense_total = other + sum(info.dense_instructions for info in layers)
    return Setting(name, dict(choice), predicted(layers, choice, other), dense_total)


#: a move must save at least this share of the whole network's predicted instructions to be worth a
#: fine-tune (fashion_net's conv1 at H = 5 instead of 8 saves ~1.5%; its conv2 one rung lower 6-13%)
MIN_GAIN = 0.02


def ladder(info: LayerInfo, min_saving: float = 0.0) -> list[LayerCandidate]:
    """A layer's candidates that save at least ``min_saving`` instructions over dense, from the
    safest down: rc falling (more rows merged into their cluster's centroid, so less accurate), each
    rung faster than every rung above it (a candidate that merges more rows but is not faster is
    never worth its accuracy)."""
    out = []
    paying = (c for c in info.candidates if c.pays and c.dense_instructions - c.trec_instructions >= min_saving)
    for c in sorted(paying, key=lambda c: (-c.rc, c.trec_instructions)):
        if not out or c.trec_instructions < out[-1].trec_instructions:
            out.append(c)
    return out


def _setting_at(layers, ladders, rung_of, other, name) -> Setting:
    return setting_of(layers, name, {info.name: (rung_of(ladders[info.name]).sub_vector_length,
                                                 rung_of(ladders[info.name]).hash_bits)
                                     for info in layers if ladders[info.name]}, other)


def moves(layers: list[LayerInfo], base: Setting, other: float, frozen=(), min_gain: float = MIN_GAIN) -> list[Setting]:
    """From an accepted ``base``, each TREC layer not in ``frozen`` moved down its :func:`ladder` to
    the first rung that saves at least ``min_gain`` of the base's predicted instructions; fastest
    result first."""
    min_saving = min_gain * base.dense_instructions
    out = []
    for name, (length, bits) in base.choice.items():
        if name in frozen:
            continue
        here = candidate_of(layers, name, length, bits)
        info = next(i for i in layers if i.name == name)
        for rung in ladder(info, min_saving):
            if rung.rc > here.rc or rung.trec_instructions >= here.trec_instructions:
                continue
            if here.trec_instructions - rung.trec_instructions >= min_gain * base.predicted_instructions:
                choice = {**base.choice, name: (rung.sub_vector_length, rung.hash_bits)}
                out.append(setting_of(layers, f"{name} L={rung.sub_vector_length} H={rung.hash_bits}", choice, other))
                break
    return sorted(out, key=lambda s: s.predicted_instructions)


class Search:
    """Which setting to fine-tune next, given the answers so far (accepted: within --max-drop and the
    arena budget). Per-layer (L, H) without fine-tuning every combination:

    1. the fastest setting (every layer at the bottom of its :func:`ladder`) from the input model:
       accepted, nothing is faster;
    2. else ascent: the layers one at a time, the one saving most at the top of its ladder first,
       each added at its top rung to the accepted setting and fine-tuned from the accepted student
       (the first from the input model); refused for accuracy, that layer stays dense; refused because
       no scratch plan fits the arena budget, the layer is tried again one rung down (a faster rung
       often needs less scratch: on CifarNet's conv2 the top rung needed 340 KB);
    3. descent from the accepted setting: the move (one layer down its ladder) that saves most,
       fine-tuned from the accepted student; accepted, it is the new base; refused, that layer stays
       where it is. Until no move saves :data:`MIN_GAIN`.

    Why one layer at a time, each from the last accepted student: every TREC layer perturbs the
    network, and a student that has adapted to the layers before absorbs one more far better than
    the input model absorbs all at once (on the demo's fashion_net, conv1 and conv2 at H = 5 lost
    1.5-1.9 pt on validation fine-tuned from the input model, and +0.1 pt fine-tuned from the
    accepted student with conv2 at H = 6). The cost: about one fine-tune per layer and rung, not
    one per combination."""

    def __init__(self, layers: list[LayerInfo], other: float, min_gain: float = MIN_GAIN):
        self.layers, self.other, self.min_gain = layers, other, min_gain
        # a layer that cannot save min_gain of the dense network stays dense: its few instructions are
        # not worth its accuracy (the CMSIS-NN example's conv3 saves 2% at H = 5 only)
        dense_total = other + sum(info.dense_instructions for info in layers)
        self._ladders = {info.name: ladder(info, min_gain * dense_total) for info in layers}
        fastest = _setting_at(layers, self._ladders, lambda rungs: rungs[-1], other, "fastest")
        self._fastest = fastest if fastest.choice else None
        top = {name: rungs[0] for name, rungs in self._ladders.items() if rungs}
        self._ascent = sorted(top, key=lambda n: top[n].trec_instructions - top[n].dense_instructions)
        self._rung = {name: 0 for name in top}  # where each layer enters the ascent
        if len(self._ascent) == 1 and fastest.key() == self._add(None, self._ascent[0]).key():
            self._ascent = []  # one layer with one rung: the fastest is all there is
        self.base: Setting | None = None   # the accepted setting so far
        self.frozen: set = set()
        self._pending: tuple[str, Setting] | None = None

    @property
    def has_candidates(self) -> bool:
        return self._fastest is not None or bool(self._ascent) or self.base is not None

    def _add(self, base: Setting | None, name: str) -> Setting:
        top = self._ladders[name][self._rung.get(name, 0)]
        choice = {**(base.choice if base else {}), name: (top.sub_vector_length, top.hash_bits)}
        return setting_of(self.layers, f"+{name} L={top.sub_vector_length} H={top.hash_bits}", choice, self.other)

    def next(self) -> tuple[Setting, Setting | None] | None:
        """(setting to fine-tune, the accepted setting to start it from or None), or None: done."""
        if self._fastest is not None:
            setting, self._fastest = self._fastest, None
            self._pending = ("fastest", setting, None)
            return setting, None
        if self._ascent:
            name = self._ascent.pop(0)
            setting = self._add(self.base, name)
            self._pending = ("ascent", setting, name)
            return setting, self.base
        if self.base is None:
            return None
        options = moves(self.layers, self.base, self.other, self.frozen, self.min_gain)
        if not options:
            return None
        self._pending = ("descent", options[0], None)
        return options[0], self.base

    def answer(self, accepted: bool, fits: bool = True) -> None:
        """``accepted``: within --max-drop and the budget; ``fits``: False when refused because no
        scratch plan fits the arena budget (the accuracy was never measured)."""
        (phase, setting, name), self._pending = self._pending, None
        if phase == "ascent" and not accepted and not fits and self._rung[name] + 1 < len(self._ladders[name]):
            self._rung[name] += 1
            self._ascent.insert(0, name)
            return
        if accepted:
            self.base = setting
            if phase == "fastest":
                self._ascent = []  # nothing is faster
        elif phase == "descent":
            self.frozen.add(next(k for k, v in setting.choice.items() if self.base.choice.get(k) != v))


def dense_setting(layers: list[LayerInfo], other: float) -> Setting:
    total = other + sum(info.dense_instructions for info in layers)
    return Setting("dense", {}, total, total)


def candidate_of(layers: list[LayerInfo], name: str, length: int, bits: int) -> LayerCandidate | None:
    for info in layers:
        for c in info.candidates:
            if c.layer == name and c.sub_vector_length == length and c.hash_bits == bits:
                return c
    return None


def layer_rows(layers: list[LayerInfo], setting: Setting) -> list[dict]:
    """Per layer of the chosen ``setting``: choice, L, H, rc, predicted instructions, scratch."""
    rows = []
    for info in layers:
        row = {"layer": info.name, "choice": "dense", "L": None, "H": None, "rc": None,
               "trec_instructions": None, "dense_instructions": info.dense_instructions, "scratch_bytes": None,
               "why": info.why_not}
        if info.name in setting.choice:
            c = candidate_of(layers, info.name, *setting.choice[info.name])
            row.update(choice="trec", L=c.sub_vector_length, H=c.hash_bits, rc=c.rc,
                       trec_instructions=c.trec_instructions, scratch_bytes=c.scratch_bytes, plan=c.plan,
                       passes=c.passes, why=None)
        elif info.why_not is None:
            best = min(info.candidates, key=lambda c: c.trec_instructions, default=None)
            row["why"] = ("TREC does not pay: best predicted "
                          f"{best.trec_instructions:,.0f} >= dense {info.dense_instructions:,.0f} "
                          f"(L={best.sub_vector_length}, H={best.hash_bits}, rc={best.rc:.3f})"
                          if best is not None and not best.pays else
                          "TREC pays by the cost model, but the chosen setting keeps it dense" if setting.choice else
                          "TREC pays by the cost model, but no setting was accepted (see why)")
        rows.append(row)
    return rows


def candidates_json(layers: list[LayerInfo]) -> list[dict]:
    return [{"layer": info.name, "dense_instructions": info.dense_instructions, "why_not": info.why_not,
             "candidates": [asdict(c) for c in info.candidates]} for info in layers]


def ceil_kib(n: int) -> str:
    return f"{math.ceil(n / 1024):,} KiB"

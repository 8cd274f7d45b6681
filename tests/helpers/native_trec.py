"""Random TREC int8 convolution cases, shared by the host (test_native_trec) and emulated
(test_qemu_trec) kernel tests."""

from __future__ import annotations

import numpy as np

from trec_tflm.spec import golden, quant


def make_case(seed: int, cin: int, k: int, stride: int, padding: str, *, length=None, bits=None,
              center=None, h=None, w=None, dilation=1) -> dict:
    """Random layer: L dividing or not dividing K, H in [1, 16], zero points and clamps at extremes."""
    rng = np.random.default_rng(seed)
    h = h or int((k - 1) * dilation + 1 + rng.integers(0, 7))
    w = w or int((k - 1) * dilation + 1 + rng.integers(0, 7))
    kk = k * k * cin
    if length is None:
        divisors = [d for d in range(1, kk + 1) if kk % d == 0 and d <= 32]
        length = int(rng.choice(divisors)) if rng.random() < 0.5 else int(rng.integers(1, min(kk, 40) + 1))
    bits = bits or int(rng.integers(1, golden.MAX_HASH_BITS + 1))
    cout = int(rng.choice([1, 3, 8, 17]))
    x = rng.integers(-128, 128, (1, h, w, cin), dtype=np.int8)
    if rng.random() < 0.3:  # smooth images: many equal codes, big clusters
        x = np.repeat(np.repeat(x[:, ::3, ::3], 3, axis=1), 3, axis=2)[:, :h, :w]
        x = np.ascontiguousarray(x)
    wt = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
    scale = rng.uniform(0.3, 3.0, cout) / (np.sqrt(kk) * 128 * 74 / 40)
    mult, shift = quant.quantize_multipliers(scale)
    izp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    ozp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    # clamps as TFLite derives them, around the output zero point, so that the output keeps some
    # spread (a constant output would check nothing); a bias of tens of output steps, sometimes
    # one that saturates
    clamp = str(rng.choice(["none", "relu", "tight"])) if ozp < 100 else "none"
    amin, amax = {"none": (-128, 127), "relu": (ozp, 127), "tight": (max(-128, ozp - 20), ozp + 20)}[clamp]
    bias_max = 30000 if rng.random() < 0.2 else int(min(30000, 30 / scale.min()))
    return dict(
        input=x, filter=wt,
        bias=rng.integers(-bias_max, bias_max + 1, cout).astype(np.int32) if rng.random() < 0.8 else None,
        hash=rng.integers(-127, 128, (length, bits), dtype=np.int8),
        input_zero_point=izp, output_zero_point=ozp,
        output_multiplier=mult, output_shift=shift, sub_vector_length=length, hash_bits=bits,
        hash_center=center or str(rng.choice(["mean", "none"])), stride=stride, padding=padding,
        dilation=dilation, activation_min=amin, activation_max=amax)


def split(case):
    args = dict(case)
    return [args.pop(n) for n in ("input", "filter", "bias", "hash")], args

"""Random dense int8 convolution cases and the sanitizer-child harness, shared by the host
(test_native_*) and emulated (test_qemu_dense) kernel tests."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trec_tflm.host import kernels as native
from trec_tflm.spec import golden, quant

TESTS_DIR = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# random cases
# ------------------------------------------------------------------------------------------------
CINS = (1, 3, 8, 16, 64)
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
DILATIONS = (1, 2)
PADDINGS = ("SAME", "VALID")
GRID = list(itertools.product(CINS, KERNELS, STRIDES, DILATIONS, PADDINGS))


def make_case(seed: int, cin: int, k: int, stride, dilation, padding: str, batch: int = 2) -> dict:
    """Random int8 tensors and quantization for one conv; zero points and clamps hit the extremes."""
    rng = np.random.default_rng(seed)
    kh, kw = (k, k) if rng.random() < 0.7 else (k, max(1, k - 2))
    dil_h, dil_w = golden._pair(dilation)
    eff_h, eff_w = (kh - 1) * dil_h + 1, (kw - 1) * dil_w + 1
    h = int(eff_h + rng.integers(0, 6))
    w = int(eff_w + rng.integers(0, 6))
    cout = int(rng.choice([1, 2, 3, 5, 8, 17]))
    izp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    ozp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    x = rng.integers(-128, 128, (batch, h, w, cin), dtype=np.int8)
    wt = rng.integers(-127, 128, (cout, kh, kw, cin), dtype=np.int8)
    bias = rng.integers(-30000, 30000, cout).astype(np.int32) if rng.random() < 0.8 else None
    kk = kh * kw * cin
    # accumulators are ~ sqrt(K) * 128 * 74 (+ zero-point terms); aim the scale at a few tens of
    # output steps, with a spread that saturates some channels
    scale = rng.uniform(0.3, 3.0, cout) / (np.sqrt(kk) * 128 * 74 / 40)
    if rng.random() < 0.15:
        scale[0] = rng.uniform(1.0, 4.0)  # multiplier > 1: positive shift
    mult, shift = quant.quantize_multipliers(scale)
    # clamps as TFLite derives them, around the output zero point, so that the output keeps some
    # spread (a constant output would check nothing)
    clamp = rng.choice(["none", "relu", "tight"]) if ozp < 100 else "none"
    if clamp == "none":
        amin, amax = -128, 127
    elif clamp == "relu":
        amin, amax = ozp, 127
    else:
        amin, amax = max(-128, ozp - int(rng.integers(0, 40))), ozp + int(rng.integers(1, 28))
    return dict(input=x, filter=wt, bias=bias, input_zero_point=izp, output_zero_point=ozp,
                output_multiplier=mult, output_shift=shift, stride=stride, dilation=dilation,
                padding=padding, activation_min=amin, activation_max=amax)


def run_both(kernels: native.Kernels, case: dict) -> tuple[np.ndarray, np.ndarray]:
    args = dict(case)
    x, w, b = args.pop("input"), args.pop("filter"), args.pop("bias")
    return kernels.conv2d_s8(x, w, b, **args), golden.conv2d_s8(x, w, b, **args)


# The child imports this checkout's package (its __init__ loads no TensorFlow) and the tests' modules.
CHILD_PRELUDE = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(native.__file__).parents[2])!r})
    sys.path.insert(0, {str(TESTS_DIR)!r})
""")


def run_child(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    try:
        env = native.sanitizer_env()
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)

"""TFLite int8 integer arithmetic in NumPy: the building blocks every reference kernel shares.

Written from TFLite's documented semantics (quantization spec and the reference
``MultiplyByQuantizedMultiplier`` with its two roundings), vectorised over arrays.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Split a positive real multiplier into a Q31 significand and a power-of-two shift.

    Mirrors TFLite's QuantizeMultiplier: ``real = q * 2**(shift - 31)`` with q in [2**30, 2**31).
    """
    if real_multiplier == 0.0:
        return 0, 0
    if real_multiplier < 0:
        raise ValueError(f"multiplier must be non-negative, got {real_multiplier}")
    significand, shift = math.frexp(real_multiplier)
    q = int(math.floor(significand * (1 << 31) + 0.5))  # TfLiteRound: half away from zero
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:  # too small to represent: TFLite flushes to zero
        return 0, 0
    if shift > 30:
        raise ValueError(f"multiplier {real_multiplier} too large for int32 requantization")
    return q, shift


def quantize_multipliers(real_multipliers) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(m)) for m in np.ravel(real_multipliers)]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def _saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C's integer division truncates towards zero; numpy's // floors.
    num = ab + nudge
    res = np.where(num >= 0, num // (1 << 31), -((-num) // (1 << 31)))
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def _rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite reference MultiplyByQuantizedMultiplier (double rounding), broadcasting.

    x: int32 values; multiplier: Q31 int32; shift: int (left if > 0, right if < 0).
    Returns int64 array holding int32 results.
    """
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    shifted = x * (np.int64(1) << left)
    # TFLite applies the left shift to an int32 value; wrap as C would (callers keep it in range).
    shifted = ((shifted + 2**31) % 2**32) - 2**31
    return _rounding_divide_by_pot(_saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def requantize_to_int8(acc, multiplier, shift, output_zero_point: int, act_min: int = -128,
                       act_max: int = 127) -> np.ndarray:
    """int32 accumulator -> int8 output, per-channel multiplier/shift on the last axis."""
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + output_zero_point
    return np.clip(out, act_min, act_max).astype(np.int8)


def round_half_away_from_zero_div(num, den) -> np.ndarray:
    """Integer division rounding half away from zero: TFLM's average-pool convention.

    Computed as C does it: ``num > 0 ? (num + den/2)/den : (num - den/2)/den`` with truncating
    division and den > 0.
    """
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    half = den // 2
    pos = (num + half) // den
    neg = -((-num + half) // den)
    return np.where(num > 0, pos, neg)


def quantize_input(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Float model inputs -> the integer input tensor: ``round(x / scale) + zero_point``, clipped to ``dtype``.

    NumPy's round (half to even) on float64, as TFLite's reference QUANTIZE does on the host. Every place
    that feeds float images to an int8 model (``eval``, the host runtime, ``bench``, the MLPerf dataset) uses
    this one function, so the same image becomes the same bytes on every path.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"input scale must be finite and > 0 (an int8-quantized input), got {scale}")
    info = np.iinfo(dtype)
    if not info.min <= zero_point <= info.max:
        raise ValueError(f"input zero point must be in [{info.min}, {info.max}], got {zero_point}")
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)

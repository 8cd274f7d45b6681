"""Bit-exact NumPy reference of the int8 kernels: the specification every C kernel must match.

``trec_conv2d_s8`` is TREC_CONV_2D as docs/OP_SPEC.md defines it; ``conv2d_s8`` is TFLite's int8
CONV_2D (per-channel), used as the dense baseline and as the singleton-regime check: when every
cluster has one member the two are equal bit for bit.

Every integer choice lives here and in docs/OP_SPEC.md, nowhere else:
- rows are im2col rows in (ky, kx, ci) order of ``x - input_zero_point`` (padding contributes 0);
- K = kh*kw*cin is cut into M = ceil(K/L) sub-vectors; the last one is zero-extended to L;
- hash centre: "mean" subtracts the per-channel mean of the input image from the projection,
  folded into an int32 offset per (sub-matrix, bit); "none" hashes around the real zero;
- bit h of a sub-vector is set when its int32 projection (plus offset) is > 0;
- a cluster's product is sum_l(sum of members)_l * W_l, divided by the member count with
  rounding half away from zero (one rounding per cluster and output channel);
- a row's accumulator is bias + the sum over sub-matrices of its clusters' products, then
  TFLite's MultiplyByQuantizedMultiplier, output zero point and activation clamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trec_tflm.spec.op import HASH_CENTERS, MAX_HASH_BITS  # noqa: F401  (golden.MAX_HASH_BITS is part of its API)
from trec_tflm.spec.quant import requantize_to_int8, round_half_away_from_zero_div


# --------------------------------------------------------------------------------------------
# geometry (TFLite's ComputePaddingHeightWidth)
# --------------------------------------------------------------------------------------------
def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv_geometry(in_hw, filter_hw, stride, dilation, padding: str):
    """Output size and (top, left) padding exactly as TFLite computes them."""
    padding = padding.upper()
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    outs, pads = [], []
    for size, k, s, d in zip(in_hw, filter_hw, _pair(stride), _pair(dilation)):
        eff = (k - 1) * d + 1
        out = (size + s - 1) // s if padding == "SAME" else (size - eff + s) // s
        if out <= 0:
            raise ValueError(f"filter {k} (dilation {d}) does not fit input size {size} with VALID padding")
        total = max((out - 1) * s + eff - size, 0)
        outs.append(out)
        pads.append(total // 2)
    return tuple(outs), tuple(pads)


def strip_width(length: int, cin: int, kw: int) -> int:
    """j when sub-vectors of length L are strips of j whole, horizontally neighbouring input pixels
    (L = j*Cin with j dividing the kernel width kw), else 0. Such L take the int8 kernel's strip
    path (tflm_ops trec_make_geom) and the layer's per-position projections."""
    if length % cin:
        return 0
    j = length // cin
    return j if kw % j == 0 else 0


def kernel_path(length: int, cin: int, kw: int, k: int) -> dict:
    """Which path the int8 kernel takes for L: "strip" where :func:`strip_width` says L is a strip of
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


def im2col(x: np.ndarray, filter_hw, stride, dilation, padding: str, pad_value=0) -> np.ndarray:
    """x: [H, W, C] -> rows [Ho*Wo, kh*kw*C] in (ky, kx, ci) order; out-of-image taps = pad_value."""
    h, w, c = x.shape
    kh, kw = filter_hw
    (ho, wo), (pt, pl) = conv_geometry((h, w), (kh, kw), stride, dilation, padding)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    ys = (np.arange(ho) * sh - pt)[:, None] + np.arange(kh) * dh  # [ho, kh]
    xs = (np.arange(wo) * sw - pl)[:, None] + np.arange(kw) * dw  # [wo, kw]
    vy = (ys >= 0) & (ys < h)
    vx = (xs >= 0) & (xs < w)
    padded = np.full((h + 1, w + 1, c), pad_value, dtype=x.dtype)
    padded[:h, :w] = x
    yi = np.where(vy, ys, h)  # index h / w hits the pad row / column
    xi = np.where(vx, xs, w)
    patches = padded[yi[:, None, :, None], xi[None, :, None, :]]  # [ho, wo, kh, kw, c]
    return patches.reshape(ho * wo, kh * kw * c)


# --------------------------------------------------------------------------------------------
# dense int8 CONV_2D (TFLite reference semantics, per-channel)
# --------------------------------------------------------------------------------------------
def _check_common(x, w, bias, multiplier, shift):
    if x.dtype != np.int8 or x.ndim != 4:
        raise ValueError("input must be int8 [N, H, W, Cin]")
    if w.dtype != np.int8 or w.ndim != 4:
        raise ValueError("filter must be int8 [Cout, kh, kw, Cin]")
    if w.shape[3] != x.shape[3]:
        raise ValueError(f"filter Cin {w.shape[3]} != input Cin {x.shape[3]}")
    cout = w.shape[0]
    if bias is not None and (np.asarray(bias).shape != (cout,)):
        raise ValueError(f"bias must have shape ({cout},)")
    if np.asarray(multiplier).shape != (cout,) or np.asarray(shift).shape != (cout,):
        raise ValueError(f"output_multiplier and output_shift must have shape ({cout},)")


def conv2d_s8(input, filter, bias, *, input_zero_point: int, output_zero_point: int,
              output_multiplier, output_shift, stride=1, dilation=1, padding="SAME",
              activation_min: int = -128, activation_max: int = 127) -> np.ndarray:
    """TFLite int8 CONV_2D. input [N,H,W,Cin] int8, filter [Cout,kh,kw,Cin] int8, bias int32."""
    x, w = np.asarray(input), np.asarray(filter)
    _check_common(x, w, bias, output_multiplier, output_shift)
    cout, kh, kw, _ = w.shape
    wk = w.reshape(cout, -1).astype(np.int64)
    b = np.zeros(cout, np.int64) if bias is None else np.asarray(bias, np.int64)
    outs = []
    for img in x:
        rows = im2col(img.astype(np.int64) - input_zero_point, (kh, kw), stride, dilation, padding)
        acc = rows @ wk.T + b
        outs.append(requantize_to_int8(acc, output_multiplier, output_shift, output_zero_point,
                                       activation_min, activation_max))
    (ho, wo), _ = conv_geometry(x.shape[1:3], (kh, kw), stride, dilation, padding)
    return np.stack(outs).reshape(x.shape[0], ho, wo, cout)


# --------------------------------------------------------------------------------------------
# TREC_CONV_2D
# --------------------------------------------------------------------------------------------
@dataclass
class TrecStats:
    """What the reuse did for one image: clusters per sub-matrix and the remaining ratio."""

    rows: int
    sub_matrices: int
    clusters: np.ndarray  # [M] clusters per sub-matrix

    @property
    def remaining_ratio(self) -> float:
        return float(self.clusters.sum()) / float(self.rows * self.sub_matrices)


def check_trec_params(k: int, sub_vector_length: int, hash_bits: int, hash_center: str) -> int:
    """Validate (L, H, centre) against K = kh*kw*cin; returns M = ceil(K / L)."""
    if not 1 <= sub_vector_length <= k:
        raise ValueError(f"sub_vector_length L={sub_vector_length} must lie in [1, K={k}] "
                         f"(K = kernel_h*kernel_w*in_channels)")
    if not 1 <= hash_bits <= MAX_HASH_BITS:
        raise ValueError(f"hash_bits H={hash_bits} must lie in [1, {MAX_HASH_BITS}]")
    if hash_center not in HASH_CENTERS:
        raise ValueError(f"hash_center must be one of {HASH_CENTERS}, got {hash_center!r}")
    return -(-k // sub_vector_length)


def hash_offsets(img_centered: np.ndarray, hash_q: np.ndarray, k: int, hash_center: str) -> np.ndarray:
    """int32 offset per (sub-matrix, bit) that centres the projections: [M, H].

    "mean": off[m, h] = -round(sum_l S[c(m, l)] * R[l, h] / P), where S is the per-channel sum of
    (x - zp) over the P = H*W input pixels and c(m, l) = (m*L + l) mod Cin; zero-extended
    positions (m*L + l >= K) contribute nothing.
    """
    length, bits = hash_q.shape
    m_count = -(-k // length)
    if hash_center == "none":
        return np.zeros((m_count, bits), np.int64)
    hgt, wid, cin = img_centered.shape
    sums = img_centered.reshape(-1, cin).astype(np.int64).sum(axis=0)  # [Cin]
    col = np.arange(m_count * length)
    col_sums = np.where(col < k, sums[col % cin], 0).reshape(m_count, length)
    num = col_sums @ hash_q.astype(np.int64)  # [M, H]
    return -round_half_away_from_zero_div(num, hgt * wid)


def trec_conv2d_s8(input, filter, bias, hash, *, input_zero_point: int, output_zero_point: int,
                   output_multiplier, output_shift, sub_vector_length: int, hash_bits: int,
                   hash_center: str = "mean", stride=1, dilation=1, padding="SAME",
                   activation_min: int = -128, activation_max: int = 127,
                   return_stats: bool = False):
    """TREC_CONV_2D on int8 tensors. hash: int8 [L, H]. Returns int8 [N,Ho,Wo,Cout]
    (and a list of TrecStats, one per image, when return_stats)."""
    x, w, r = np.asarray(input), np.asarray(filter), np.asarray(hash)
    _check_common(x, w, bias, output_multiplier, output_shift)
    cout, kh, kw, cin = w.shape
    k = kh * kw * cin
    length, bits = sub_vector_length, hash_bits
    m_count = check_trec_params(k, length, bits, hash_center)
    if r.dtype != np.int8 or r.shape != (length, bits):
        raise ValueError(f"hash must be int8 [L={length}, H={bits}], got {r.dtype} {r.shape}")
    wk = np.zeros((cout, m_count * length), np.int64)
    wk[:, :k] = w.reshape(cout, k)
    wk = wk.reshape(cout, m_count, length)
    b = np.zeros(cout, np.int64) if bias is None else np.asarray(bias, np.int64)
    weights_pow = np.int64(1) << np.arange(bits, dtype=np.int64)

    outs, stats = [], []
    for img in x:
        centered = img.astype(np.int64) - input_zero_point
        rows = im2col(centered, (kh, kw), stride, dilation, padding)  # [N, K]
        n = rows.shape[0]
        sub = np.zeros((n, m_count * length), np.int64)
        sub[:, :k] = rows
        sub = sub.reshape(n, m_count, length)
        proj = np.einsum("nml,lh->nmh", sub, r.astype(np.int64))
        proj += hash_offsets(centered, r, k, hash_center)[None]
        codes = ((proj > 0).astype(np.int64) * weights_pow).sum(axis=2)  # [N, M]

        acc = np.tile(b, (n, 1))
        clusters = np.zeros(m_count, np.int64)
        for m in range(m_count):
            uniq, inv, counts = np.unique(codes[:, m], return_inverse=True, return_counts=True)
            sums = np.zeros((uniq.size, length), np.int64)
            np.add.at(sums, inv, sub[:, m, :])
            products = round_half_away_from_zero_div(sums @ wk[:, m, :].T, counts[:, None])
            acc += products[inv]
            clusters[m] = uniq.size
        outs.append(requantize_to_int8(acc, output_multiplier, output_shift, output_zero_point,
                                       activation_min, activation_max))
        stats.append(TrecStats(rows=n, sub_matrices=m_count, clusters=clusters))
    (ho, wo), _ = conv_geometry(x.shape[1:3], (kh, kw), stride, dilation, padding)
    out = np.stack(outs).reshape(x.shape[0], ho, wo, cout)
    return (out, stats) if return_stats else out

"""The cost model: a convolution's instructions on Cortex-M7/M4 per image, TREC (trec_convolve_s8) and
dense (CMSIS-NN's arm_convolve_wrapper_s8).

TREC's work is split as the kernel splits it (tflm_ops/src/trec_convolve_s8.c): hashing, then per pass
over the output channels the cluster sums, the products of clusters and filter slice, and the scatter
of the tables into the rows. Each phase is a few terms of work (projections, elements gathered, rows,
multiply-accumulates, table entries ...), weighted where the kernel has measured per-operation costs
(plan_cost in tflm_ops/src/trec_convolve_plan_s8.c: ~12 instructions per gathered element on the
scalar paths and ~4 with SIMD lanes, ~30 per cluster slot, ~300 per sub-matrix, ~12 per cluster and
channel). The scatter's cost per table entry depends on the plan and chunk (unrolled chunk sizes are
cheaper); its table lives only in the kernel (trec_scatter_tenths), which reports the value for the
plan it ran (trec_reuse_stats.scatter_tenths), and the model takes it from there. One coefficient per term,
fitted once to the phase counts of a profile build on QEMU (``python -m trec_tflm.tune.calibrate
--core m7``, into trec_tflm/tune/coefficients.py; a coefficient of 0 is a term the fit found no use
for), scales it. docs/BENCHMARKS.md ("Cost model") has how close it comes on layers it was not fitted on.

The plan (passes over the channels, chunk, scatter kind, length of the sums blocks) depends on the
clusters the input forms and on the scratch, as the kernel chooses it at run time; it is not
re-derived here: :func:`host_plan` runs the same kernel built for the host (trec_tflm.host.kernels,
DSP paths emulated) on an input and returns its rc, passes, plan, chunk, scatter cost and sums block
(trec_reuse_stats.sums_block: the kernel cuts the sums into blocks shorter than L when scratch is
tight, and every block walks the rows again; on the general path that is most of the work), which
:func:`predict_trec` takes. Not in the kernel's report, so not in the model: whether a strip layer's
sums ran in SIMD lanes or incrementally (assumed wherever possible and the block is whole), plan A vs
A2 outside the scatter, and a plan T16 chunk whose entries did not fit 16 bits (its tables built
twice); layers where those change are the model's worst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trec_tflm.host.kernels import kernels
from trec_tflm.spec import golden
from trec_tflm.tune import coefficients

CORES = ("m7", "m4")
PLANS = ("accumulator", "tables", "tables16")  # TrecReuseStats.plan 0, 1, 2
TREC_PHASES = ("hash", "sums", "products", "scatter")


@dataclass(frozen=True)
class Conv:
    """A convolution's geometry: input (h, w, cin), filter (cout, kh, kw), stride, dilation, padding."""

    h: int
    w: int
    cin: int
    cout: int
    kh: int
    kw: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "SAME"

    @classmethod
    def of(cls, input_shape, filter_shape, stride=1, dilation=1, padding="SAME") -> Conv:
        """From NHWC input and [Cout, kh, kw, Cin] filter shapes (as the kernels take them)."""
        *_, h, w, cin = (int(v) for v in input_shape)
        cout, kh, kw, fcin = (int(v) for v in filter_shape)
        if fcin != cin:
            raise ValueError(f"filter takes {fcin} input channels, the input has {cin}")
        return cls(h, w, cin, cout, kh, kw, golden._pair(stride), golden._pair(dilation), padding.upper())

    @property
    def out_hw(self) -> tuple[int, int]:
        return golden.conv_geometry((self.h, self.w), (self.kh, self.kw), self.stride, self.dilation,
                                    self.padding)[0]

    @property
    def rows(self) -> int:
        ho, wo = self.out_hw
        return ho * wo

    @property
    def depth(self) -> int:
        return self.kh * self.kw * self.cin


# ------------------------------------------------------------------------------------------------
# TREC
# ------------------------------------------------------------------------------------------------
def _general_runs(conv: Conv, length: int, block: int) -> tuple[int, int]:
    """General path, per row and pass: (runs, loops). A run is the consecutive channels of one
    input pixel a sums block touches (trec_row_sums adds run by run); a loop is one walk over the
    rows, one per block and group of at most 16 runs (its block_runs); zero-extended blocks past K
    are skipped."""
    k, cin = conv.depth, conv.cin
    runs = loops = 0
    for m in range(math.ceil(k / length)):
        for l0 in range(0, length, block):
            k0, k1 = m * length + l0, min(m * length + l0 + block, (m + 1) * length, k)
            if k0 >= k1:
                continue
            r = (k1 - 1) // cin - k0 // cin + 1
            runs += r
            loops += math.ceil(r / 16)
    return runs, loops


def trec_work(conv: Conv, sub_vector_length: int, hash_bits: int, rc: float, passes: int,
              scatter_tenths: int, sums_block: int | None = None, plan: str | None = None
              ) -> dict[str, dict[str, float]]:
    """Per phase, its terms of work in the kernel's per-operation costs (instructions before calibration).
    ``scatter_tenths``: the kernel's scatter cost per table entry for the plan it ran, ``sums_block``
    the length of its cluster-sums blocks (None: L), ``plan`` the plan (one of PLANS; None: not
    "tables16") (all :class:`HostPlan`)."""
    if not 0.0 < rc <= 1.0 or passes < 1:
        raise ValueError(f"rc must be in (0, 1] and passes at least 1, got rc={rc}, passes={passes}")
    if scatter_tenths < 1:
        raise ValueError(f"scatter_tenths must be positive, got {scatter_tenths}: pass the kernel's "
                         "trec_reuse_stats.scatter_tenths for the plan it ran (HostPlan.scatter_tenths)")
    length, bits = int(sub_vector_length), int(hash_bits)
    golden.check_trec_params(conv.depth, length, bits, "mean")
    if plan is not None and plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS} or None, got {plan!r}")
    block = length if sums_block is None else int(sums_block)
    t16 = int(plan == "tables16")
    if not 1 <= block <= length:
        raise ValueError(f"sums_block must lie in [1, L={length}], got {sums_block}: pass the kernel's "
                         "trec_reuse_stats.sums_block (HostPlan.sums_block) or None for whole sub-vectors")
    (ho, wo), n, k = conv.out_hw, conv.rows, conv.depth
    m = math.ceil(k / length)
    j = golden.strip_width(length, conv.cin, conv.kw)
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    clusters = rc * n * m
    # sums in blocks shorter than L (tight scratch): every block walks the rows again, and the
    # products pay their per-(cluster, channel) set-up per block; SIMD and incremental sums take whole
    # sub-vectors, so a split means the kernel runs neither
    blocks = math.ceil(length / block)
    runs = loops = 0
    if j:
        # the strip path hashes each strip pixel of the padded input once, every sub-matrix reads its ids
        ph, pw = (ho - 1) * sh + (conv.kh - 1) * dh + 1, (wo - 1) * sw + (conv.kw - j) * dw + 1
        projections = ph * pw
        simd = int(conv.cin % 4 == 0 and blocks == 1)  # SIMD sums and products (the kernel's simd_possible)
        if sh == 1 and sw == 1 and blocks == 1:
            # incremental sums: the first window whole, then where neighbouring windows differ
            # (the sub-matrices are visited row by row, snaking)
            moves_x, moves_y = conv.kh * (conv.kw // j - 1), conv.kh - 1
            incremental = length * (n + 2 * (moves_x * ho * min(j * dw, wo) + moves_y * wo * min(dh, ho)))
            gathered = {"incremental": incremental, "windows": 0, "im2col_rows": 0}
        else:
            gathered = {"incremental": 0, "windows": n * length * m, "im2col_rows": 0}
    else:  # im2col rows, hashed and summed whole
        projections, simd, gathered = n * m, 0, {"incremental": 0, "windows": 0, "im2col_rows": n * k}
        runs, loops = _general_runs(conv, length, block)
    per_element = 4 if simd else 12
    scatter_per_entry = scatter_tenths / 10
    general = 0 if j else 1
    return {
        # the hash centre (the input's channel sums, an offset per bit and sub-matrix: one on the strip
        # path); dual 16-bit MACs of the projections; an id per row and sub-matrix; the general path
        # builds its im2col rows (element by element, a call per kernel tap, padding checked) before hashing them
        "hash": {"input": conv.h * conv.w * conv.cin, "offsets": (m if general else 1) * bits * length,
                 "projections": projections * length * bits / 2, "ids": n * m,
                 "im2col": general * n * m * length, "taps": general * n * conv.kh * conv.kw,
                 "rows": general * n},
        # every pass re-derives the sums (reading each row's id), pays per cluster slot and per sub-matrix
        # (and block); the strip path walks its windows once per block, the general path its rows once
        # per block and group of runs and pays per run; the general path also compacts N x M codes into ids
        # (the strip path pays a set-up per input pixel it visits: an id read, bounds, the counts)
        "sums": {**{f"gathered_{g}": passes * v * per_element for g, v in gathered.items()},
                 "pixels": passes * (gathered["incremental"] + gathered["windows"]) / conv.cin,
                 "rows": (1 - simd) * (1 - general) * passes * n * m * blocks, "rows_simd": simd * passes * n * m,
                 "general_rows": passes * n * loops, "general_runs": passes * n * runs,
                 "compact": general * n * m,
                 "slots": passes * clusters * 30, "sub_matrices": passes * m * blocks * 300},
        # the filter's slices (every channel once over the passes, a set-up per pass, sub-matrix and block);
        # the multiply-accumulates of clusters x filter slice, a division per cluster and channel (and
        # a set-up per further sums block), and per pass each cluster's sums packed for the products
        "products": {"filter": conv.cout * m * length, "slices": passes * m * blocks,
                     "macs": (1 - simd) * clusters * conv.cout * length,
                     "macs_simd": simd * clusters * conv.cout * length,
                     "strip_pixels": simd * clusters * conv.cout * j,  # SIMD: filter sums per strip pixel
                     "divisions": clusters * conv.cout * 12,
                     "blocks": clusters * conv.cout * (blocks - 1) * 12,
                     "narrow16": t16 * clusters * conv.cout,  # plan T16 narrows every table entry to 16 bits
                     "per_pass": passes * clusters * length},
        # a table entry per row, sub-matrix and channel, a row's set-up per pass, the requantization
        # (plan T16: a row's pointers into the tables of sub-matrices 1.. are set up per pass, which its
        # flat cost per entry does not carry)
        "scatter": {"entries": n * m * conv.cout * scatter_per_entry, "per_pass": passes * n * m,
                    "row_tables16": t16 * passes * n * m, "sub_matrices": passes * m,
                    "row_passes": passes * n, "requantize": n * conv.cout},
    }


def predict_trec(conv: Conv, sub_vector_length: int, hash_bits: int, rc: float, passes: int,
                 scatter_tenths: int, core: str = "m7", sums_block: int | None = None,
                 plan: str | None = None) -> float:
    """Predicted instructions of trec_convolve_s8 on one image at reuse rate ``rc`` (clusters over
    rows x sub-matrices) with ``passes`` over the channels and the scatter cost per entry of the
    kernel's plan, its sums block length and the plan itself (all from :func:`host_plan`)."""
    return float(sum(trec_phases(conv, sub_vector_length, hash_bits, rc, passes, scatter_tenths, core,
                                 sums_block, plan).values()))


def trec_phases(conv: Conv, sub_vector_length: int, hash_bits: int, rc: float, passes: int,
                scatter_tenths: int, core: str = "m7", sums_block: int | None = None,
                plan: str | None = None) -> dict[str, float]:
    """:func:`predict_trec` by phase (hash, sums, products, scatter; the rest in "fixed")."""
    coef = _coefficients(core)["trec"]
    work = trec_work(conv, sub_vector_length, hash_bits, rc, passes, scatter_tenths, sums_block, plan)
    out = {p: sum(coef[p][t] * v for t, v in terms.items()) for p, terms in work.items()}
    return out | {"fixed": coef["fixed"]}


@dataclass(frozen=True)
class HostPlan:
    """What the kernel chose for one image: TrecReuseStats of the host build."""

    rc: float
    passes: int
    plan: str
    chunk: int
    scatter_tenths: int  # the kernel's scatter cost per table entry with this plan and chunk (M7, tenths)
    sums_block: int | None = None  # length of its cluster-sums blocks (None: L, one block)


def host_plan(input, filter, hash, *, sub_vector_length: int, hash_bits: int, input_zero_point: int,
              hash_center: str = "mean", stride=1, dilation=1, padding="SAME",
              scratch_bytes: int | None = None) -> list[HostPlan]:
    """The kernel's rc, passes, plan, chunk and scatter cost per image of ``input`` (int8 NHWC), from the host build of
    trec_convolve_s8 at ``scratch_bytes`` (default: get_buffer_size, what the TFLM op gives it)."""
    lib = kernels("host")
    x = np.asarray(input)
    cout = np.asarray(filter).shape[0]
    out = []
    for image in x:
        _, st = lib.trec_conv2d_s8(
            image[None], filter, None, hash, input_zero_point=input_zero_point, output_zero_point=0,
            output_multiplier=np.full(cout, 1 << 30, np.int32), output_shift=np.zeros(cout, np.int32),
            sub_vector_length=sub_vector_length, hash_bits=hash_bits, hash_center=hash_center, stride=stride,
            dilation=dilation, padding=padding, return_stats=True, scratch_bytes=scratch_bytes)
        out.append(HostPlan(st.remaining_ratio, int(st.passes), PLANS[int(st.plan)], int(st.chunk),
                            int(st.scatter_tenths), int(st.sums_block)))
    return out


# ------------------------------------------------------------------------------------------------
# dense: CMSIS-NN's arm_convolve_wrapper_s8 (im2col of two columns, then the s8 x s16 matrix kernel)
# ------------------------------------------------------------------------------------------------
def dense_work(conv: Conv) -> dict[str, float]:
    n, k = conv.rows, conv.depth
    # dual MACs; im2col copies a kernel row (kw x cin bytes) per call, widened to int16
    return {"macs": n * k * conv.cout / 2, "im2col": n * k, "copies": n * conv.kh, "columns": n,
            "outputs": n * conv.cout}


def predict_dense(conv: Conv, core: str = "m7") -> float:
    """Predicted instructions of arm_convolve_wrapper_s8 on one image (data-independent)."""
    coef = _coefficients(core)["dense"]
    return float(sum(coef[t] * v for t, v in dense_work(conv).items()))


def _coefficients(core: str) -> dict:
    if core not in CORES:
        raise ValueError(f"core must be one of {CORES}, got {core!r}")
    table = coefficients.COEFFICIENTS.get(core)
    if table is None:
        raise ValueError(f"no calibrated coefficients for {core}: run python -m trec_tflm.tune.calibrate --core {core}")
    return table

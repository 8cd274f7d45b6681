"""The C TREC kernel (tflm_ops/src/trec_convolve_s8.c and its phases, trec_*_s8.c) against golden.trec_conv2d_s8,
bit for bit.

"host" runs the DSP code path (SMLAD structure, intrinsics emulated in C), "host-plain" the plain C
path. Scratch budgets between the minimum and get_buffer_size select different plans; every plan must
give the same bytes. Bad arguments return an error status and leave every buffer untouched; the
sanitizer builds (subprocess with libasan) prove no access outside the buffers.
"""

from __future__ import annotations

import ctypes
import itertools

import numpy as np
import pytest
from helpers.native_dense import run_child
from helpers.native_trec import make_case, split  # noqa: F401 - the sanitizer child uses t.make_case

from trec_tflm.host import kernels as native
from trec_tflm.spec import golden, quant

VARIANTS = ("host", "host-plain")
GRID = list(itertools.product((1, 3, 8, 16, 64), (1, 3, 5, 7), (1, 2), ("SAME", "VALID")))


@pytest.fixture(scope="module", params=VARIANTS)
def kern(request):
    try:
        return native.kernels(request.param)
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))


def check(kern, case, scratch_bytes=None):
    tensors, kwargs = split(case)
    want, stats = golden.trec_conv2d_s8(*tensors, **kwargs, return_stats=True)
    got, cstats = kern.trec_conv2d_s8(*tensors, **kwargs, return_stats=True, scratch_bytes=scratch_bytes)
    np.testing.assert_array_equal(got, want)
    assert cstats.clusters == sum(int(s.clusters.sum()) for s in stats)
    return got, cstats


@pytest.mark.parametrize("cin,k,stride,padding", GRID)
def test_bit_exact_vs_golden(kern, cin, k, stride, padding):
    for rep in range(2):
        check(kern, make_case(GRID.index((cin, k, stride, padding)) * 7 + rep, cin, k, stride, padding))


PIXEL_GRID = list(itertools.product((1, 3, 8, 16, 64), (1, 3, 5), (1, 2), (1, 2), ("SAME", "VALID")))


@pytest.mark.parametrize("cin,k,stride,dilation,padding", PIXEL_GRID)
def test_pixel_path_l_equals_cin(kern, cin, k, stride, dilation, padding):
    """L == Cin: each sub-vector is one input pixel, hashed once (the kernel's pixel path)."""
    seed = PIXEL_GRID.index((cin, k, stride, dilation, padding))
    case = make_case(2000 + seed, cin, k, stride, padding, length=cin, dilation=dilation,
                     bits=int(np.random.default_rng(seed).choice([2, 5, 8, 12])))
    check(kern, case)


@pytest.mark.parametrize("cin,length", [(16, 16), (8, 24)])
def test_strip_path_clusters_beyond_int16_lanes(kern, cin, length):
    """Mostly uniform 24x24 input: clusters of more than 256 members (the SIMD sums' int32 branch)."""
    case = make_case(4000 + cin, cin, 3, 1, "SAME", length=length, bits=4, h=24, w=24, center="none")
    x = np.full(case["input"].shape, 60, np.int8)
    x[:, :3] = np.random.default_rng(cin).integers(-128, 128, x[:, :3].shape, dtype=np.int8)
    case["input"] = x
    _, stats = check(kern, case)
    assert stats.rows == 576 and stats.clusters < stats.rows  # big clusters exist


@pytest.mark.parametrize("cin", [4, 8, 7])
def test_mean_centre_of_a_bright_image(kern, cin):
    """The centre's channel sums over 24x24 pixels near +-110: more than int16 lanes hold (the
    DSP path sums four channels per load in int16 lanes and must flush them in time)."""
    rng = np.random.default_rng(cin)
    case = make_case(4100 + cin, cin, 3, 1, "SAME", length=cin, bits=8, h=24, w=24, center="mean")
    sign = np.where(np.arange(cin) % 2, -1, 1)
    case["input"] = np.clip(110 * sign + rng.integers(-20, 21, (1, 24, 24, cin)), -128, 127).astype(np.int8)
    case.update(output_zero_point=0, activation_min=-128, activation_max=127)
    got, _ = check(kern, case)
    assert len(np.unique(got)) > 16


@pytest.mark.parametrize("stride", [1, 2])
def test_pixel_path_every_scratch_budget(kern, stride):
    case = make_case(3000 + stride, 16, 3, stride, "SAME", length=16, bits=6, h=14, w=13)
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=16, hash_bits=6,
                                              hash_center=kwargs["hash_center"], stride=stride, padding="SAME")
    for size in sorted({least, least + 64, (least + preferred) // 2, preferred, preferred * 8}):
        check(kern, case, scratch_bytes=size)


def test_pixel_path_chunks_that_end_in_a_partial_quad(kern):
    """18 output channels: budgets that give chunks of 8 or 12 channels leave a last chunk of 2 or
    6, which the interleaved cluster-pair products (whole quads only) must hand to the plain loop."""
    case = make_case(3100, 8, 3, 1, "SAME", length=8, bits=6, h=12, w=12)
    rng = np.random.default_rng(3100)
    case["filter"] = rng.integers(-127, 128, (18, 3, 3, 8), dtype=np.int8)
    case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
        rng.uniform(0.3, 3.0, 18) / (np.sqrt(72) * 128 * 74 / 40))
    case["bias"] = rng.integers(-3000, 3001, 18).astype(np.int32)
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=8, hash_bits=6,
                                              hash_center=kwargs["hash_center"], stride=1, padding="SAME")
    passes = set()
    for size in np.linspace(least, 2 * preferred, 32).astype(int):
        passes.add(check(kern, case, scratch_bytes=int(size))[1].passes)
    assert {2, 3} <= passes  # chunks of 12 + 6 and of 8 + 8 + 2 among them


def with_channels(case: dict, cout: int, seed: int) -> dict:
    """case with `cout` output channels (new filter, bias and multipliers), an unsaturated output"""
    rng = np.random.default_rng(seed)
    _, kh, kw, cin = case["filter"].shape
    case["filter"] = rng.integers(-127, 128, (cout, kh, kw, cin), dtype=np.int8)
    case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
        rng.uniform(0.3, 3.0, cout) / (np.sqrt(kh * kw * cin) * 128 * 74 / 40))
    case["bias"] = rng.integers(-3000, 3001, cout).astype(np.int32)
    case.update(output_zero_point=0, activation_min=-128, activation_max=127)
    return case


def budget_sweep(kern, case, points: int = 24) -> set[int]:
    """check() from the least scratch to 4x the preferred; the set of pass counts seen"""
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(
        tensors[0].shape, tensors[1].shape, sub_vector_length=kwargs["sub_vector_length"],
        hash_bits=kwargs["hash_bits"], hash_center=kwargs["hash_center"], stride=kwargs["stride"],
        padding=kwargs["padding"])
    return {check(kern, case, scratch_bytes=int(size))[1].passes
            for size in np.linspace(least, 4 * preferred, points)}


def test_pixel_path_small_layer_in_chunks_of_four_and_eight(kern):
    """L3's shape (8x8x16 -> 32, 5x5, padding 2, L = 16): with little scratch the DSP path takes
    chunks of 4 or 8 channels, whose scatters and products are unrolled (L = 16 whole), and lists
    the clusters of each window, many of them padding only."""
    case = with_channels(make_case(3200, 16, 5, 1, "SAME", length=16, bits=6, h=8, w=8, center="mean"), 32, 3200)
    assert {8, 4} <= budget_sweep(kern, case, points=40)


def test_pixel_path_interleaved_cluster_pairs(kern):
    """One-pixel strips with L = 32 and chunks of two quads or more: the products copy two
    clusters' sums interleaved and read both with one load (L = 16 takes the listed products)."""
    case = with_channels(make_case(3300, 32, 3, 1, "SAME", length=32, bits=5, h=10, w=10, center="mean"), 24, 3300)
    assert len(budget_sweep(kern, case)) >= 3


@pytest.mark.parametrize("cout,length", [(40, 8), (64, 8), (64, 24)])
def test_passes_split_the_channels_evenly(kern, cout, length):
    """Where the scratch holds more than half but not all of the channels, the kernel runs two
    passes of half the channels each, not one as large as fits and a short rest that pays a
    whole pass's set-up (or one of the chunk sizes whose scatter is unrolled: 4, 8, 16, 64)."""
    case = with_channels(make_case(3400 + length, 8, 3, 1, "SAME", length=length, bits=6, h=12, w=12,
                                   center="mean"), cout, 3400)
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=length,
                                              hash_bits=6, hash_center="mean", stride=1, padding="SAME")
    seen = set()
    for size in np.linspace(least, 2 * preferred, 40).astype(int):
        stats = check(kern, case, scratch_bytes=int(size))[1]
        even = -(-cout // stats.passes)
        even = even if even < 4 else -(-even // 4) * 4  # whole channel quads
        assert stats.chunk in (even, 4, 8, 16, 64), (size, stats.passes, stats.chunk)
        assert -(-cout // stats.chunk) == stats.passes
        seen.add(stats.passes)
    assert len(seen) >= 3


def narrow_case(weight_max: int, large_from: int | None = None, cout: int = 24) -> dict:
    """A 3x3 layer over 16 channels (L = 16, H = 5) on a smooth 12x12 image. With small weights
    every sub-matrix's table entries lie within 16 bits of their mean (plan T16 holds them); from
    channel `large_from` on, weights of +127 spread them further, and T16 must give up."""
    case = make_case(7100, 16, 3, 1, "SAME", length=16, bits=5, h=12, w=12, center="mean")
    rng = np.random.default_rng(7100)
    case["input"] = np.ascontiguousarray(np.repeat(np.repeat(case["input"][:, ::3, ::3], 3, 1), 3, 2)[:, :12, :12])
    filt = rng.integers(-weight_max, weight_max + 1, (cout, 3, 3, 16)).astype(np.int8)
    if large_from is not None:
        filt[large_from:] = 127
    case["filter"] = filt
    case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
        rng.uniform(0.3, 3.0, cout) / (np.sqrt(144) * max(weight_max, 40) * 74 / 40))
    case["bias"] = rng.integers(-3000, 3001, cout).astype(np.int32)
    case.update(output_zero_point=0, activation_min=-128, activation_max=127)
    return case


def narrow_budgets(kern, case) -> list[int]:
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=16, hash_bits=5,
                                              hash_center="mean", stride=1, padding="SAME")
    return [int(v) for v in np.linspace(least, 2 * preferred, 40)]


def test_narrow_tables_and_their_fallback(kern):
    """Plan T16 (uint16 tables after the first) is chosen where it saves a pass, bit-exact. Where a
    chunk's entries do not fit 16 bits it reruns on the int32 plans, also bit-exact: in the first
    chunk, and after a first chunk that did fit (the cluster count is still counted once). The plan
    depends only on the shapes and the clusters, which the three filters share."""
    small = narrow_case(6)
    assert len(np.unique(check(kern, small)[0])) > 16  # an unsaturated output: every wrong sum shows
    narrow = {}
    for size in narrow_budgets(kern, small):
        got, stats = check(kern, small, scratch_bytes=size)
        if stats.plan == 2:
            narrow[size] = stats.passes
    assert narrow and max(narrow.values()) >= 3 and min(narrow.values()) == 1
    mixed, large = narrow_case(6, large_from=12), narrow_case(127, large_from=0)
    # one channel whose requantization is not the short one (right shift 20): T16's scatter has
    # only the short one, so every chunk with that channel goes to the int32 plans
    slow = narrow_case(6)
    slow["output_shift"] = slow["output_shift"].copy()
    slow["output_shift"][0] = -20
    for size, _passes in narrow.items():
        for case in (large, mixed, slow):
            _, stats = check(kern, case, scratch_bytes=size)
            assert stats.plan != 2
    # the first sub-matrix's table (tap 0, 0) fits 16 bits, the others do not: the kernel finds out
    # only when it narrows the second table
    late = narrow_case(6, large_from=0)
    late["filter"] = late["filter"].copy()
    late["filter"][:, 0, 0, :] = small["filter"][:, 0, 0, :]
    for size in narrow:
        assert check(kern, late, scratch_bytes=size)[1].plan != 2
    # channels 0-7 fit, 8-15 do not: one T16 chunk, the rest on the int32 plan
    size = max(s for s, passes in narrow.items() if passes == 3)
    _, stats = check(kern, mixed, scratch_bytes=size)
    assert stats.plan != 2 and stats.passes > 3


@pytest.mark.parametrize("cout", [17, 18])
def test_narrow_tables_with_channels_outside_quads(kern, cout):
    """Plan T16 with chunks that end in single channels: an odd chunk pads its uint16 rows to a
    word."""
    case = narrow_case(6, cout=cout)
    plans = {check(kern, case, scratch_bytes=size)[1].plan for size in narrow_budgets(kern, case)}
    assert 2 in plans


def test_narrow_tables_on_the_int64_products_path(kern):
    """Plan T16 after the int64 products of a layer whose cluster sums could overflow int32
    (N * L * 255 * 127 >= 2^31): 2,048 rows, L = 36 (4 sub-matrices, not the strip path)."""
    case = make_case(7300, 16, 3, 1, "SAME", length=36, bits=6, h=64, w=32, center="mean")
    rng = np.random.default_rng(7300)
    case["input"] = np.ascontiguousarray(np.repeat(np.repeat(case["input"][:, ::4, ::4], 4, 1), 4, 2)[:, :64, :32])
    case["filter"] = rng.integers(-3, 4, (64, 3, 3, 16)).astype(np.int8)
    case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
        rng.uniform(0.3, 3.0, 64) / (np.sqrt(144) * 40 * 74 / 40))
    case["bias"] = rng.integers(-3000, 3001, 64).astype(np.int32)
    case.update(output_zero_point=0, activation_min=-128, activation_max=127)
    tensors, kwargs = split(case)
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=36, hash_bits=6,
                                              hash_center="mean", stride=1, padding="SAME")
    plans = {check(kern, case, scratch_bytes=int(size))[1].plan for size in np.linspace(least, preferred, 12)}
    assert 2 in plans


@pytest.mark.parametrize("cin,length,k,dilation,padding", [
    (8, 24, 3, 1, "SAME"), (4, 8, 4, 2, "SAME"), (16, 32, 4, 1, "VALID"), (8, 8, 5, 1, "SAME"), (64, 64, 3, 2, "SAME")])
def test_strip_path_incremental_sums(kern, cin, length, k, dilation, padding):
    """Stride 1, at most 256 rows, Cin % 4 == 0: on the DSP path a sub-matrix's cluster sums are its
    predecessor's minus and plus the rows and columns where their windows differ (also across a
    kernel row's end). Strips of 1-3 pixels, dilation, one pass and several (every budget)."""
    seed = 5000 + cin * 10 + k
    case = make_case(seed, cin, k, 1, padding, length=length, bits=5, h=15, w=14, dilation=dilation)
    if seed % 2:  # smooth image: few, large clusters
        case["input"] = np.ascontiguousarray(np.repeat(np.repeat(case["input"][:, ::4, ::4], 4, 1), 4, 2)[:, :15, :14])
    # an unsaturated output, so that every wrong sum shows (saturation has its own tests)
    case.update(output_zero_point=0, activation_min=-128, activation_max=127)
    tensors, kwargs = split(case)
    assert len(np.unique(golden.trec_conv2d_s8(*tensors, **kwargs))) > 16
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=length,
                                              hash_bits=5, hash_center=kwargs["hash_center"], stride=1,
                                              dilation=dilation, padding=padding)
    for size in sorted({least, (least + preferred) // 2, preferred, preferred * 8}):
        check(kern, case, scratch_bytes=size)


@pytest.mark.parametrize("bits", list(range(1, golden.MAX_HASH_BITS + 1)))
def test_every_hash_width(kern, bits):
    check(kern, make_case(100 + bits, 4, 3, 1, "SAME", bits=bits, length=7))


def test_one_cluster_per_sub_matrix(kern):
    # A constant image: every in-image sub-vector is the same; with VALID padding all rows agree.
    case = make_case(5, 3, 3, 1, "VALID", length=9, bits=6)
    case["input"] = np.full_like(case["input"], 17)
    _, stats = check(kern, case)
    assert stats.clusters == stats.sub_matrices  # one cluster each


def test_all_singletons_equal_dense_conv(kern):
    # a case where the golden model puts every row in its own cluster (16 random bits on 27
    # elements rarely collide: the first seeds find one)
    for seed in range(6, 200):
        case = make_case(seed, 3, 3, 1, "SAME", length=27, bits=16, h=5, w=5)
        _, golden_stats = golden.trec_conv2d_s8(*split(case)[0], **split(case)[1], return_stats=True)
        if int(golden_stats[0].clusters.sum()) == 25:
            break
    got, stats = check(kern, case)
    assert stats.clusters == stats.rows * stats.sub_matrices
    tensors, kwargs = split(case)
    for key in ("sub_vector_length", "hash_bits", "hash_center"):
        kwargs.pop(key)
    np.testing.assert_array_equal(got, golden.conv2d_s8(tensors[0], tensors[1], tensors[2], **kwargs))


@pytest.mark.parametrize("edge", ["inside", "beyond"])
def test_accumulators_at_the_fast_requantization_bound(kern, edge):
    """A bias at the edge of the short requantization's range (accumulators below 2^29 in
    magnitude; the tables add at most kp * 255 * 128) and far beyond it, where doubling the
    accumulator would overflow int32: every output saturates towards its bias, on both plans."""
    rng = np.random.default_rng(4200)
    cout, kp = 12, 72  # one block of 8 channels and a quad; K = 72, a whole number of sub-vectors
    filt = rng.integers(-127, 128, (cout, 3, 3, 8), dtype=np.int8)
    mult, shift = quant.quantize_multipliers(rng.uniform(0.3, 3.0, cout) / (np.sqrt(kp) * 128 * 74 / 40))
    assert (shift >= -18).all() and (mult >= 2 ** 30).all()  # the channels' requantization may be short
    largest = 2 ** 29 - 1 - kp * 255 * 128 if edge == "inside" else 2 ** 31 - 1 - kp * 255 * 128
    sign = np.where(np.arange(cout) % 3 == 1, -1, 1)
    plans = set()
    # these pick the tables plan (ample scratch) and the accumulator plan (the default)
    for length, bits, scratch in ((8, 6, 16384), (4, 8, None)):
        case = make_case(4200, 8, 3, 1, "SAME", length=length, bits=bits, h=9, w=9)
        case.update(filter=filt, bias=(sign * (largest - np.arange(cout))).astype(np.int32),
                    output_multiplier=mult, output_shift=shift, output_zero_point=0, activation_min=-128,
                    activation_max=127)
        got, stats = check(kern, case, scratch_bytes=scratch)
        plans.add(stats.plan)
        assert (got[..., sign > 0] == 127).all() and (got[..., sign < 0] == -128).all()
    assert plans == {0, 1}


def test_batch_images_clustered_independently(kern):
    case = make_case(7, 8, 3, 1, "SAME", length=8, bits=5)
    other = np.random.default_rng(1).integers(-128, 128, case["input"].shape, dtype=np.int8)
    single, _ = check(kern, case)
    case2 = dict(case, input=np.concatenate([case["input"], other]))
    both, _ = check(kern, case2)
    np.testing.assert_array_equal(both[:1], single)


def test_every_scratch_budget_gives_the_same_output(kern):
    case = make_case(8, 16, 3, 1, "SAME", length=12, bits=8, h=12, w=12)
    tensors, kwargs = split(case)
    shape_args = dict(sub_vector_length=kwargs["sub_vector_length"], hash_bits=kwargs["hash_bits"],
                      hash_center=kwargs["hash_center"], stride=1, padding="SAME")
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, **shape_args)
    assert least <= preferred
    outs, passes = [], []
    for size in sorted({least, (least + preferred) // 2, preferred, preferred * 4}):
        got, stats = check(kern, case, scratch_bytes=size)
        outs.append(got)
        passes.append(stats.passes)
    assert passes[0] >= passes[-1] and passes[-1] == 1  # less scratch: more passes, never failure
    with pytest.raises(RuntimeError, match="TREC_BUFFER_ERROR"):
        kern.trec_conv2d_s8(*tensors, **kwargs, scratch_bytes=least - 4)


def test_max_scratch_runs_the_fastest_plan_at_the_most_clusters(kern):
    """get_max_buffer_size: enough for one pass over all channels with every sub-matrix's table
    (plan T) even when nearly every row is its own cluster (12 hash bits, 144 rows of noise)."""
    case = make_case(8, 16, 3, 1, "SAME", length=12, bits=12, h=12, w=12)
    tensors, kwargs = split(case)
    shape_args = dict(sub_vector_length=12, hash_bits=12, hash_center=kwargs["hash_center"], stride=1,
                      padding="SAME")
    preferred, least = kern.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, **shape_args)
    most = kern.trec_max_buffer_size(tensors[0].shape, tensors[1].shape, **shape_args)
    assert least <= preferred < most
    _, stats = check(kern, case, scratch_bytes=most)
    assert stats.clusters > 0.8 * stats.rows * stats.sub_matrices  # near the worst case (padding rows repeat)
    assert (stats.passes, stats.plan) == (1, 1)  # one pass, per-row tables
    # a layer whose fastest plan would need more than INT32_MAX bytes: no cap, the other sizes still answer
    big = dict(sub_vector_length=1, hash_bits=16, padding="SAME")
    assert kern.trec_max_buffer_size((1, 128, 128, 64), (64, 3, 3, 64), **big) is None
    assert kern.trec_buffer_sizes((1, 128, 128, 64), (64, 3, 3, 64), **big)[1] > 0


@pytest.mark.parametrize("shape,cout,k,length,bits", [
    ((32, 32, 3), 32, 5, 5, 8), ((16, 16, 32), 16, 5, 16, 8), ((16, 16, 64), 64, 5, 16, 8),
    ((16, 16, 16), 64, 3, 16, 8), ((8, 8, 16), 32, 5, 16, 10)])
def test_preferred_scratch_within_twice_the_output(kern, shape, cout, k, length, bits):
    """The design bar: the preferred scratch is at most twice the int8 output (when the minimum allows),
    far below a full im2col (N*K bytes)."""
    preferred, least = kern.trec_buffer_sizes((1, *shape), (cout, k, k, shape[2]), sub_vector_length=length,
                                              hash_bits=bits, padding="SAME")
    n = shape[0] * shape[1]
    assert preferred <= max(2 * n * cout, least)
    assert preferred < n * k * k * shape[2]


# ------------------------------------------------------------------------------------------------
# raw calls: bad arguments return a status and write nothing
# ------------------------------------------------------------------------------------------------
GUARD = 64


class RawCall:
    """A valid trec_convolve_s8 call with guarded buffers, to break one argument at a time."""

    def __init__(self, kern, seed=1):
        self.kern = kern
        self.case = make_case(seed, 3, 3, 1, "SAME", length=5, bits=6, h=6, w=7, center="mean")
        t, kw = split(self.case)
        self.x, self.w, self.b, self.r = (np.ascontiguousarray(a) if a is not None else None for a in t)
        if self.b is None:
            self.b = np.zeros(self.w.shape[0], np.int32)
        self.params, self.hp, (self.di, self.df, self.do), out_shape = kern._trec_args(
            self.x.shape, self.w.shape, **{k: kw[k] for k in (
                "input_zero_point", "output_zero_point", "sub_vector_length", "hash_bits", "hash_center",
                "stride", "padding", "activation_min", "activation_max")}, dilation=1)
        self.mult = np.ascontiguousarray(kw["output_multiplier"], np.int32)
        self.shift = np.ascontiguousarray(kw["output_shift"], np.int32)
        self.quant = native.TrecPerChannelQuantParams(native.ptr(self.mult, ctypes.c_int32),
                                                      native.ptr(self.shift, ctypes.c_int32))
        size = kern.lib.trec_convolve_s8_get_buffer_size(*(ctypes.byref(v) for v in (
            self.params, self.hp, self.di, self.df, self.do)))
        self.scratch_size = size
        self.scratch = np.full(size + 2 * GUARD, 0x5A, np.uint8)
        self.out = np.full(int(np.prod(out_shape)) + 2 * GUARD, 0x33, np.uint8)
        self.ctx = native.TrecContext(self.scratch.ctypes.data + GUARD, size)
        self.bias_dims = native.TrecDims(1, 1, 1, self.w.shape[0])
        self.args = {
            "ctx": ctypes.byref(self.ctx), "params": ctypes.byref(self.params), "hash_params": ctypes.byref(self.hp),
            "quant": ctypes.byref(self.quant), "input_dims": ctypes.byref(self.di),
            "input": native.ptr(self.x, ctypes.c_int8), "filter_dims": ctypes.byref(self.df),
            "filter": native.ptr(self.w, ctypes.c_int8), "hash": native.ptr(self.r, ctypes.c_int8),
            "bias_dims": ctypes.byref(self.bias_dims), "bias": native.ptr(self.b, ctypes.c_int32),
            "output_dims": ctypes.byref(self.do),
            "output": ctypes.cast(self.out.ctypes.data + GUARD, ctypes.POINTER(ctypes.c_int8)),
            "stats": None,
        }

    def call(self) -> int:
        return self.kern.lib.trec_convolve_s8(*self.args.values())

    def output_untouched(self) -> bool:
        return bool((self.out == 0x33).all())

    def guards_intact(self) -> bool:
        return bool((self.out[:GUARD] == 0x33).all() and (self.out[-GUARD:] == 0x33).all()
                    and (self.scratch[:GUARD] == 0x5A).all() and (self.scratch[-GUARD:] == 0x5A).all())


def _break(rc: RawCall, what: str) -> int:
    """Break one thing; return the status expected."""
    if what == "null-scratch":
        rc.ctx.buf = None
        return native.TREC_BUFFER_ERROR
    if what.startswith("null-"):
        assert what[5:] in rc.args, what
        rc.args[what[5:]] = None
        return native.TREC_ARG_ERROR
    if what == "L=0":
        rc.hp.sub_vector_length = 0
    elif what == "L>K":
        rc.hp.sub_vector_length = 28
    elif what == "H=0":
        rc.hp.hash_bits = 0
    elif what == "H=17":
        rc.hp.hash_bits = 17
    elif what == "centre=2":
        rc.hp.hash_center = 2
    elif what == "cout-mismatch":
        rc.do.c += 1
    elif what == "cin-mismatch":
        rc.df.c += 1
    elif what == "out-h":
        rc.do.h += 3  # no padding makes 6 rows from this input
    elif what == "bias-dims":
        rc.bias_dims.c += 1
    elif what == "negative-multiplier":
        rc.mult[0] = -1
    elif what == "input-offset":
        rc.params.input_offset = 200
    elif what == "small-scratch":
        least = rc.kern.lib.trec_convolve_s8_get_min_buffer_size(*(ctypes.byref(v) for v in (
            rc.params, rc.hp, rc.di, rc.df, rc.do)))
        rc.ctx.size = least - 4
        return native.TREC_BUFFER_ERROR
    else:
        raise AssertionError(what)
    return native.TREC_ARG_ERROR


BREAKS = ["null-ctx", "null-params", "null-hash_params", "null-quant", "null-input_dims", "null-input",
          "null-filter_dims", "null-filter", "null-hash", "null-output_dims", "null-output", "L=0", "L>K", "H=0",
          "H=17", "centre=2", "cout-mismatch", "cin-mismatch", "out-h", "bias-dims", "negative-multiplier",
          "input-offset", "small-scratch", "null-scratch"]


@pytest.mark.parametrize("what", BREAKS)
def test_bad_argument_status_and_no_writes(kern, what):
    rc = RawCall(kern)
    expected = _break(rc, what)
    assert rc.call() == expected
    assert rc.output_untouched() and rc.guards_intact()


def test_valid_raw_call_writes_only_its_buffers(kern):
    rc = RawCall(kern)
    assert rc.call() == native.TREC_SUCCESS
    assert rc.guards_intact() and not rc.output_untouched()


def test_python_errors_name_the_problem(kern):
    tensors, kwargs = split(make_case(9, 3, 3, 1, "SAME", length=5, bits=4))
    with pytest.raises(ValueError, match=r"hash must be int8 \[L=5, H=4\]"):
        kern.trec_conv2d_s8(tensors[0], tensors[1], tensors[2], tensors[3][:4], **kwargs)
    with pytest.raises(ValueError, match="hash_center"):
        kern.trec_conv2d_s8(*tensors, **dict(kwargs, hash_center="median"))
    with pytest.raises(ValueError, match="TREC_ARG_ERROR"):
        bad = dict(kwargs, sub_vector_length=28, hash_bits=4)
        kern.trec_conv2d_s8(tensors[0], tensors[1], tensors[2], np.zeros((28, 4), np.int8), **bad)


# ------------------------------------------------------------------------------------------------
# sanitizer builds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["host-asan", "host-asan-plain"])
def test_sanitizer_build_subset(variant):
    try:
        native.library_path(variant)
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))
    proc = run_child(f"""
        import numpy as np
        from trec_tflm.host import kernels as native
        import test_native_trec as t
        k = native.kernels({variant!r})
        for i, params in enumerate(t.GRID[::4]):
            t.check(k, t.make_case(i, *params))
        case = t.make_case(3, 16, 3, 1, "SAME", length=12, bits=8, h=12, w=12)
        tensors, kw = t.split(case)
        pref, least = k.trec_buffer_sizes(tensors[0].shape, tensors[1].shape, sub_vector_length=12,
                                          hash_bits=8, hash_center=kw["hash_center"], padding="SAME")
        for size in (least, (least + pref) // 2, pref):
            t.check(k, case, scratch_bytes=size)
        for case in (t.narrow_case(6), t.narrow_case(6, large_from=12)):  # plan T16 and its fallback
            for size in t.narrow_budgets(k, case)[::3]:
                t.check(k, case, scratch_bytes=size)
        for what in t.BREAKS:
            rc = t.RawCall(k)
            e = t._break(rc, what)
            assert rc.call() == e, what
            assert rc.output_untouched() and rc.guards_intact(), what
        print("SANITIZED-OK")
    """)
    assert proc.returncode == 0 and "SANITIZED-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]

"""The C dense int8 convolution (tflm_ops/src/trec_dense_convolve_s8.c) against golden.conv2d_s8.

Host builds of the same C code: "host" runs the DSP code path (SXTB16/SMLAD structure, intrinsics
emulated in C), "host-plain" the plain C path. The sanitizer builds run in a subprocess started with
LD_PRELOAD of libasan; a deliberately broken library shows that the harness does catch an overflow.
"""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
from helpers.native_dense import GRID, make_case, run_both  # noqa: F401 - sanitizer children use them as t.*
from helpers.native_dense import run_child as _run_child

from trec_tflm.host import kernels as native
from trec_tflm.spec import golden

VARIANTS = ("host", "host-plain")

# ------------------------------------------------------------------------------------------------
# bit-exact against golden
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=VARIANTS)
def kern(request):
    try:
        return native.kernels(request.param)
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("cin,k,stride,dilation,padding", GRID)
def test_bit_exact_vs_golden(kern, cin, k, stride, dilation, padding):
    seed = GRID.index((cin, k, stride, dilation, padding))
    case = make_case(seed, cin, k, stride, dilation, padding)
    got, want = run_both(kern, case)
    assert got.shape == want.shape and got.dtype == np.int8
    np.testing.assert_array_equal(got, want)


def test_cases_exercise_clamps_and_extremes():
    """The grid's data must actually saturate the activation clamps and use extreme zero points."""
    hits_min = hits_max = 0
    zps = set()
    for i, params in enumerate(GRID):
        case = make_case(i, *params)
        args = dict(case)
        x, w, b = args.pop("input"), args.pop("filter"), args.pop("bias")
        out = golden.conv2d_s8(x, w, b, **args)
        hits_min += int(np.any(out == case["activation_min"]))
        hits_max += int(np.any(out == case["activation_max"]))
        zps.update({case["input_zero_point"], case["output_zero_point"]})
    assert hits_min > len(GRID) // 4 and hits_max > len(GRID) // 4
    assert {-128, 127} <= zps


@pytest.mark.parametrize("n", [1, 2, 3])
def test_odd_and_even_pixel_counts_and_asymmetric_stride(kern, n):
    rng = np.random.default_rng(n)
    for h, w, sh, sw in [(1, 1, 1, 1), (1, 7, 1, 2), (5, 3, 2, 1), (6, 9, 3, 2)]:
        case = make_case(int(rng.integers(1 << 30)), 3, 3, (sh, sw), (1, 1), "SAME", batch=n)
        case["input"] = rng.integers(-128, 128, (n, h, w, 3), dtype=np.int8)
        got, want = run_both(kern, case)
        np.testing.assert_array_equal(got, want)


def test_requantization_extremes(kern):
    """Input == zero point makes every accumulator equal to the bias: requantize arbitrary int32
    values (INT32_MIN/MAX, halves, +-1) with multipliers 0 .. 2^31-1 and shifts -31 .. 30."""
    rng = np.random.default_rng(7)
    acc_values = [-(2**31), 2**31 - 1, 0, 1, -1, 2**30, -(2**30), 3 << 28, -(3 << 28),
                  (1 << 20) + (1 << 19), -((1 << 20) + (1 << 19)), 12345678, -12345678]
    # where the fast path's saturating doublings start to act (|x| = 2^30, |h| = 2^30 - 2^19)
    acc_values += [(1 << 30) - 1, -(1 << 30) + 1, -(1 << 30) - 1, (1 << 30) - (1 << 19) + 1,
                   -((1 << 30) - (1 << 19)) - 1, (1 << 29) + 12345, -(1 << 29) - 12345]
    acc_values += list(rng.integers(-(2**31), 2**31, 40))
    # 2^30 - 1 and 1: below QuantizeMultiplier's range, the exact slow path
    mults = [0, 1, 1 << 30, (1 << 30) - 1, (1 << 31) - 1, 1518500250, 1073741825]
    for shift in range(-31, 31):
        for m in mults:
            bias = np.array(acc_values, np.int32)
            cout = bias.size
            case = dict(input=np.full((1, 1, 1, 1), 5, np.int8), filter=np.ones((cout, 1, 1, 1), np.int8),
                        bias=bias, input_zero_point=5, output_zero_point=int(rng.integers(-128, 128)),
                        output_multiplier=np.full(cout, m, np.int32), output_shift=np.full(cout, shift, np.int32),
                        stride=1, dilation=1, padding="VALID")
            got, want = run_both(kern, case)
            np.testing.assert_array_equal(got, want, err_msg=f"multiplier {m} shift {shift}")


def test_bias_none_equals_zero_bias(kern):
    case = make_case(11, 8, 3, 1, 1, "SAME")
    case["bias"] = None
    got, want = run_both(kern, case)
    np.testing.assert_array_equal(got, want)
    case["bias"] = np.zeros(case["filter"].shape[0], np.int32)
    np.testing.assert_array_equal(run_both(kern, case)[0], got)


def test_module_level_function_matches_golden_signature():
    case = make_case(3, 16, 3, 2, 1, "SAME")
    args = dict(case)
    x, w, b = args.pop("input"), args.pop("filter"), args.pop("bias")
    np.testing.assert_array_equal(native.conv2d_s8(x, w, b, **args), golden.conv2d_s8(x, w, b, **args))


def test_python_level_errors():
    case = make_case(5, 3, 3, 1, 1, "SAME")
    args = dict(case)
    x, w, b = args.pop("input"), args.pop("filter"), args.pop("bias")
    with pytest.raises(ValueError, match="int8"):
        native.conv2d_s8(x.astype(np.int16), w, b, **args)
    with pytest.raises(ValueError, match="Cin"):
        native.conv2d_s8(x[..., :2], w, b, **args)
    with pytest.raises(ValueError, match="shape"):
        native.conv2d_s8(x, w, np.zeros(w.shape[0] + 1, np.int32), **args)
    bad = dict(args, output_shift=np.full(w.shape[0], 31, np.int32))
    with pytest.raises(ValueError, match="TREC_ARG_ERROR"):
        native.conv2d_s8(x, w, b, **bad)
    bad = dict(args, activation_min=10, activation_max=5)
    with pytest.raises(ValueError, match="TREC_ARG_ERROR"):
        native.conv2d_s8(x, w, b, **bad)


# ------------------------------------------------------------------------------------------------
# bad arguments through the raw C API: error status, nothing written
# ------------------------------------------------------------------------------------------------
GUARD = 64
CANARY = 0x5A


class RawCall:
    """One valid call of trec_dense_convolve_s8 with guarded buffers; fields can be broken one by one."""

    def __init__(self, kernels: native.Kernels, seed: int = 0):
        case = make_case(seed, 5, 3, 1, 1, "SAME", batch=2)
        self.kernels = kernels
        self.case = case
        x, w = case["input"], case["filter"]
        cout, kh, kw, cin = w.shape
        (ho, wo), (pt, pl) = golden.conv_geometry(x.shape[1:3], (kh, kw), 1, 1, "SAME")
        self.x, self.w = x, w
        self.b = case["bias"] if case["bias"] is not None else np.arange(cout, dtype=np.int32)
        self.mult = np.ascontiguousarray(case["output_multiplier"], np.int32)
        self.shift = np.ascontiguousarray(case["output_shift"], np.int32)
        self.out_shape = (x.shape[0], ho, wo, cout)
        n_out = int(np.prod(self.out_shape))
        self.out_guarded = np.full(n_out + 2 * GUARD, CANARY, np.uint8)
        self.scratch_size = kernels.dense_buffer_size(x.shape, w.shape)
        self.scratch_guarded = np.full(self.scratch_size + 2 * GUARD, CANARY, np.uint8)
        self.in_dims = native.TrecDims.of(x.shape)
        self.f_dims = native.TrecDims.of(w.shape)
        self.b_dims = native.TrecDims(1, 1, 1, cout)
        self.o_dims = native.TrecDims.of(self.out_shape)
        self.params = native.TrecConvParams(
            input_offset=-case["input_zero_point"], output_offset=case["output_zero_point"],
            stride=native.TrecTile(1, 1), padding=native.TrecTile(pl, pt), dilation=native.TrecTile(1, 1),
            activation=native.TrecActivation(case["activation_min"], case["activation_max"]))
        self.quant = native.TrecPerChannelQuantParams(native.ptr(self.mult, ctypes.c_int32),
                                                      native.ptr(self.shift, ctypes.c_int32))
        self.ctx = native.TrecContext(self.scratch_guarded.ctypes.data + GUARD, self.scratch_size)
        self.ptrs = dict(
            ctx=ctypes.byref(self.ctx), params=ctypes.byref(self.params), quant=ctypes.byref(self.quant),
            in_dims=ctypes.byref(self.in_dims), input=native.ptr(self.x, ctypes.c_int8),
            f_dims=ctypes.byref(self.f_dims), filter=native.ptr(self.w, ctypes.c_int8),
            b_dims=ctypes.byref(self.b_dims), bias=native.ptr(self.b, ctypes.c_int32),
            o_dims=ctypes.byref(self.o_dims),
            output=ctypes.cast(self.out_guarded.ctypes.data + GUARD, ctypes.POINTER(ctypes.c_int8)))

    def call(self, **override) -> int:
        p = dict(self.ptrs, **override)
        return self.kernels.lib.trec_dense_convolve_s8(
            p["ctx"], p["params"], p["quant"], p["in_dims"], p["input"], p["f_dims"], p["filter"],
            p["b_dims"], p["bias"], p["o_dims"], p["output"])

    def output(self) -> np.ndarray:
        return self.out_guarded[GUARD:-GUARD].view(np.int8).reshape(self.out_shape)

    def guards_intact(self) -> bool:
        return bool(np.all(self.out_guarded[:GUARD] == CANARY) and np.all(self.out_guarded[-GUARD:] == CANARY)
                    and np.all(self.scratch_guarded[:GUARD] == CANARY)
                    and np.all(self.scratch_guarded[-GUARD:] == CANARY))

    def untouched(self) -> bool:
        return bool(np.all(self.out_guarded == CANARY))

    def expected(self) -> np.ndarray:
        args = dict(self.case)
        args.pop("input"), args.pop("filter"), args.pop("bias")
        return golden.conv2d_s8(self.x, self.w, self.b, **args)


def test_raw_valid_call_writes_only_the_output(kern):
    rc = RawCall(kern)
    assert rc.call() == native.TREC_SUCCESS
    assert rc.guards_intact()
    np.testing.assert_array_equal(rc.output(), rc.expected())


NULLABLE = ["ctx", "params", "quant", "in_dims", "input", "f_dims", "filter", "o_dims", "output"]


@pytest.mark.parametrize("name", NULLABLE)
def test_null_pointer_is_arg_error(kern, name):
    rc = RawCall(kern)
    assert rc.call(**{name: None}) == native.TREC_ARG_ERROR
    assert rc.untouched() and rc.guards_intact()


@pytest.mark.parametrize("field", ["multiplier", "shift"])
def test_null_quant_arrays_are_arg_error(kern, field):
    rc = RawCall(kern)
    setattr(rc.quant, field, None)
    assert rc.call() == native.TREC_ARG_ERROR
    assert rc.untouched()


def test_null_bias_dims_with_bias_is_accepted(kern):
    rc = RawCall(kern)
    assert rc.call(b_dims=None) == native.TREC_SUCCESS
    np.testing.assert_array_equal(rc.output(), rc.expected())


def _break(rc: RawCall, what: str):
    """Apply one inconsistency; returns the expected status."""
    e = native.TREC_ARG_ERROR
    if what == "out_c":
        rc.o_dims.c += 1
    elif what == "out_n":
        rc.o_dims.n = 1
    elif what == "out_h_too_big":
        rc.o_dims.h += 3
    elif what == "out_w_too_small":
        rc.o_dims.w -= 2
    elif what == "in_c_ungroupable":
        rc.in_dims.c += 1  # 6 vs 5: not a multiple
    elif what == "in_c_grouped":
        rc.in_dims.c *= 2  # valid TFLite grouped conv, not implemented
        e = native.TREC_NO_IMPL_ERROR if rc.o_dims.c % 2 == 0 else native.TREC_ARG_ERROR
    elif what == "bias_dims":
        rc.b_dims.c += 1
    elif what == "zero_dim":
        rc.f_dims.h = 0
    elif what == "negative_dim":
        rc.in_dims.w = -4
    elif what == "stride0":
        rc.params.stride.w = 0
    elif what == "dilation0":
        rc.params.dilation.h = 0
    elif what == "negative_pad":
        rc.params.padding.h = -1
    elif what == "huge_pad":
        rc.params.padding.w = 50
    elif what == "input_offset":
        rc.params.input_offset = 129
    elif what == "output_offset":
        rc.params.output_offset = -129
    elif what == "act_order":
        rc.params.activation.min, rc.params.activation.max = 10, 9
    elif what == "act_range":
        rc.params.activation.max = 128
    elif what == "negative_multiplier":
        rc.mult[1 % rc.mult.size] = -5
    elif what == "shift_high":
        rc.shift[0] = 31
    elif what == "shift_low":
        rc.shift[-1] = -32
    elif what == "scratch_null":
        rc.ctx.buf = None
        e = native.TREC_BUFFER_ERROR
    elif what == "scratch_small":
        rc.ctx.size = rc.scratch_size - 1
        e = native.TREC_BUFFER_ERROR
    elif what == "scratch_negative":
        rc.ctx.size = -1
        e = native.TREC_BUFFER_ERROR
    elif what == "scratch_misaligned":
        rc.ctx.buf = rc.ctx.buf + 1  # same size, now 3 bytes short after alignment
        e = native.TREC_BUFFER_ERROR
    else:
        raise AssertionError(what)
    return e


BREAKS = ["out_c", "out_n", "out_h_too_big", "out_w_too_small", "in_c_ungroupable", "in_c_grouped",
          "bias_dims", "zero_dim", "negative_dim", "stride0", "dilation0", "negative_pad", "huge_pad",
          "input_offset", "output_offset", "act_order", "act_range", "negative_multiplier", "shift_high",
          "shift_low", "scratch_null", "scratch_small", "scratch_negative", "scratch_misaligned"]


@pytest.mark.parametrize("what", BREAKS)
def test_bad_argument_status_and_no_writes(kern, what):
    rc = RawCall(kern, seed=2)
    expected = _break(rc, what)
    assert rc.call() == expected
    assert rc.untouched() and rc.guards_intact()


def test_misaligned_scratch_with_slack_works(kern):
    rc = RawCall(kern)
    rc.ctx.buf = rc.ctx.buf + 1
    rc.ctx.size = rc.scratch_size + 3  # the given region now ends 4 bytes into the trailing guard
    assert rc.call() == native.TREC_SUCCESS
    np.testing.assert_array_equal(rc.output(), rc.expected())
    assert np.all(rc.scratch_guarded[:GUARD + 1] == CANARY)
    assert np.all(rc.scratch_guarded[GUARD + 4 + rc.scratch_size:] == CANARY)


def test_get_buffer_size(kern):
    assert kern.dense_buffer_size((1, 8, 8, 3), (4, 5, 5, 3)) == 4 * 76
    assert kern.dense_buffer_size((1, 8, 8, 16), (4, 3, 3, 16)) == 4 * 144
    fn = kern.lib.trec_dense_convolve_s8_get_buffer_size
    assert fn(None, ctypes.byref(native.TrecDims(1, 1, 1, 1))) == native.TREC_ARG_ERROR
    assert fn(ctypes.byref(native.TrecDims(1, 1, 1, 1)), ctypes.byref(native.TrecDims(1, 0, 1, 1))) < 0


# ------------------------------------------------------------------------------------------------
# sanitizer builds (subprocess with libasan preloaded)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["host-asan", "host-asan-plain"])
def test_sanitizer_build_subset(variant):
    try:
        native.library_path(variant)
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))
    proc = _run_child(f"""
        import numpy as np
        from trec_tflm.host import kernels as native
        from trec_tflm.spec import golden
        import test_native_dense as t
        k = native.kernels({variant!r})
        for params in t.GRID[::3]:
            got, want = t.run_both(k, t.make_case(t.GRID.index(params), *params))
            assert np.array_equal(got, want), params
        for what in t.BREAKS:
            rc = t.RawCall(k, seed=2)
            e = t._break(rc, what)
            assert rc.call() == e, what
            assert rc.untouched() and rc.guards_intact(), what
        rc = t.RawCall(k)
        assert rc.call() == 0 and rc.guards_intact()
        print("SANITIZED-OK")
    """)
    assert proc.returncode == 0 and "SANITIZED-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_sanitizer_harness_catches_an_overflow(tmp_path):
    """Negative control: a library that writes one byte past its buffer must make the child fail."""
    src = tmp_path / "oob.c"
    src.write_text("void write_past(signed char *p, int n) { for (int i = 0; i <= n; i++) p[i] = 1; }\n")
    lib = tmp_path / "liboob.so"
    flags = native._BASE_FLAGS + native._VARIANT_FLAGS["host-asan"]
    try:
        cc = native._compiler()
    except native.NativeToolMissing as exc:
        pytest.skip(str(exc))
    subprocess.run([cc, *flags, "-o", str(lib), str(src)], check=True)
    proc = _run_child(f"""
        import ctypes, numpy as np
        lib = ctypes.CDLL({str(lib)!r})
        a = np.zeros(16, np.int8)
        lib.write_past(a.ctypes.data_as(ctypes.c_void_p), 16)
        print("NOT-CAUGHT")
    """)
    assert proc.returncode != 0 and "NOT-CAUGHT" not in proc.stdout
    assert "AddressSanitizer" in proc.stderr

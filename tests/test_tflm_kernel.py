"""The TREC_CONV_2D TFLM kernel (tflm_ops/tflm/trec_conv.cc) under TFLM's KernelRunner.

A small C++ program (tflm_ops/tflm/tests/trec_conv_kernel_runner.cc, built by tflm_ops/tflm.mk
against the host TFLM framework) runs Init + Prepare + Eval once on a case this module writes.
Checked: outputs bit for bit against golden.trec_conv2d_s8 (strides, dilation, VALID/SAME, every
activation, L not dividing K, both hash centres, no bias, the minimum scratch budget); the custom
options (good ones; unknown version; each missing key; wrong types; out-of-range values; not a map;
garbage; none at all); and Prepare's checks (hash dims, batch, zero points, L > K, types).

Needs TFLM_ROOT (skips otherwise with the exact message).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from flatbuffers import flexbuffers
from helpers import tflm_skip_message
from helpers.tflm_models import activation_range, trec_options

from trec_tflm.host import tflm_build
from trec_tflm.host.kernels import kernels
from trec_tflm.spec import golden, quant


@pytest.fixture(scope="module")
def runner():
    return _build_runner(None)


def _build_runner(budget) -> Path:
    extra = [f"TREC_SCRATCH_BUDGET={budget}"] if budget is not None else []
    tflm_build.run_make("host-core", "lib")
    tflm_build.run_make("host-core", "kernel-runner", extra=extra)
    exe = Path(tflm_build.run_make("host-core", "print-kernel-runner", extra=extra).strip().splitlines()[-1])
    assert exe.is_file(), exe
    return exe


def make_case(seed=0, *, h=9, w=8, cin=3, cout=5, k=3, stride=(1, 1), dilation=(1, 1), padding="SAME",
              activation="RELU", length=5, bits=6, center="mean", bias=True, in_zp=None, out_zp=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, h, w, cin), dtype=np.int8)
    if seed % 2:  # blocky images: big clusters
        x = np.ascontiguousarray(np.repeat(np.repeat(x[:, ::2, ::2], 2, axis=1), 2, axis=2)[:, :h, :w])
    wt = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
    in_scale = np.float32(rng.uniform(0.005, 0.05))
    w_scale = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    out_scale = np.float32(rng.uniform(0.02, 0.2))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    out_zp = int(rng.integers(-100, 100)) if out_zp is None else out_zp
    b = rng.integers(-3000, 3000, cout).astype(np.int32) if bias else None
    r = rng.integers(-127, 128, (length, bits), dtype=np.int8)
    opts = trec_options(length=length, bits=bits, center=center, stride=stride, dilation=dilation,
                        padding=padding, activation=activation)
    (ho, wo), _ = golden.conv_geometry((h, w), (k, k), stride, dilation, padding)
    return dict(input=x, filter=wt, bias=b, hash=r, in_scale=in_scale, in_zp=in_zp, w_scale=w_scale,
                w_zp=np.zeros(cout, np.int32), out_scale=out_scale, out_zp=out_zp, out_shape=(1, ho, wo, cout),
                options=flexbuffers.Dumps(opts), opts=opts, hash_quant=(1, 1.0, 0))


def golden_of(case) -> np.ndarray:
    o = case["opts"]
    eff = np.float64(case["in_scale"]) * case["w_scale"].astype(np.float64) / np.float64(case["out_scale"])
    mult, shift = quant.quantize_multipliers(eff)
    amin, amax = activation_range(o["activation"], case["out_scale"], case["out_zp"])
    return golden.trec_conv2d_s8(
        case["input"], case["filter"], case["bias"], case["hash"], input_zero_point=case["in_zp"],
        output_zero_point=case["out_zp"], output_multiplier=mult, output_shift=shift,
        sub_vector_length=o["sub_vector_length"], hash_bits=o["hash_bits"], hash_center=o["hash_center"],
        stride=(o["stride_h"], o["stride_w"]), dilation=(o["dilation_h"], o["dilation_w"]),
        padding=o["padding"], activation_min=amin, activation_max=amax)


def write_case(case, path: Path) -> None:
    def i32(*v):
        return struct.pack(f"<{len(v)}i", *[int(x) for x in v])

    def f32(*v):
        return struct.pack(f"<{len(v)}f", *[float(x) for x in v])

    x, w, r = case["input"], case["filter"], case["hash"]
    has_bias = case["bias"] is not None
    blob = b"TRK1" + i32(*x.shape) + i32(*w.shape) + i32(*case["out_shape"]) + i32(*r.shape) + i32(has_bias)
    blob += f32(case["in_scale"]) + i32(case["in_zp"])
    blob += i32(len(case["w_scale"])) + f32(*case["w_scale"]) + i32(*case["w_zp"])
    blob += f32(case["out_scale"]) + i32(case["out_zp"])
    hq, hs, hz = case["hash_quant"]
    blob += i32(hq) + f32(hs) + i32(hz)
    opts = bytes(case["options"] or b"")
    blob += i32(len(opts)) + opts
    blob += x.tobytes() + w.tobytes()
    if has_bias:
        blob += case["bias"].astype("<i4").tobytes()
    blob += r.tobytes()
    if case.get("variable_mask"):
        blob += i32(case["variable_mask"])
    path.write_bytes(blob)


def run_case(exe: Path, case, tmp_path: Path):
    cf, of = tmp_path / "case.bin", tmp_path / "out.bin"
    of.unlink(missing_ok=True)
    write_case(case, cf)
    proc = subprocess.run([str(exe), str(cf), str(of)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"runner failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.strip().splitlines())
    out = None
    if lines.get("invoke") == "ok":
        out = np.frombuffer(of.read_bytes(), np.int8).reshape(case["out_shape"])
    return lines, out, proc.stderr


# ------------------------------------------------------------------------------------------------
NUMERIC_CASES = [
    dict(),
    dict(stride=(2, 2), padding="SAME", activation="RELU6"),
    dict(stride=(2, 1), padding="VALID", activation="NONE", k=5, h=11, w=9),
    dict(dilation=(2, 2), padding="SAME", activation="RELU_N1_TO_1", k=3, h=10, w=10),
    dict(length=7, bits=16, center="none", cin=4),            # L does not divide K = 36
    dict(length=27, bits=1, center="mean", cin=3),            # L = K: one sub-matrix, one bit
    dict(length=1, bits=3, k=1, cin=8, cout=16),              # 1x1 conv, scalar sub-vectors
    dict(bias=False, in_zp=-128, out_zp=127, activation="NONE"),
    dict(h=6, w=14, cin=16, cout=9, k=3, length=16, bits=8, in_zp=127),
]


@pytest.mark.parametrize("params", NUMERIC_CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "default"
                                                      for c in NUMERIC_CASES])
@pytest.mark.tflm
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_matches_golden(runner, tmp_path, params, seed):
    case = make_case(seed=seed + 17 * len(params), **params)
    lines, out, log = run_case(runner, case, tmp_path)
    assert lines.get("prepare") == "ok", log
    assert lines.get("invoke") == "ok", log
    assert lines.get("temp_deallocated") == "1", "Prepare leaked temporary tensors"
    want = golden_of(case)
    np.testing.assert_array_equal(out, want)
    stats = dict(kv.split("=") for kv in lines["stats"].split())
    k = case["filter"].shape[1] * case["filter"].shape[2] * case["filter"].shape[3]
    assert int(stats["rows"]) == want.shape[1] * want.shape[2]
    assert int(stats["sub_matrices"]) == -(-k // case["opts"]["sub_vector_length"])
    assert 1 <= int(stats["clusters"]) <= int(stats["rows"]) * int(stats["sub_matrices"])


@pytest.mark.tflm
def test_minimum_scratch_budget_gives_the_same_output(tmp_path):
    small = _build_runner(1)  # -DTREC_SCRATCH_BUDGET=1: the kernel's minimum
    fast = _build_runner(None)
    case = make_case(seed=5, h=12, w=12, cin=4, cout=24, length=9, bits=8)
    lines_s, out_s, log_s = run_case(small, case, tmp_path)
    lines_f, out_f, _ = run_case(fast, case, tmp_path)
    assert lines_s.get("invoke") == "ok", log_s
    np.testing.assert_array_equal(out_s, out_f)
    np.testing.assert_array_equal(out_s, golden_of(case))
    stats_s, stats_f = ({k: int(v) for k, v in (kv.split("=") for kv in lines["stats"].split())}
                        for lines in (lines_s, lines_f))
    assert stats_s["passes"] > stats_f["passes"] >= 1, "the minimum budget should need more passes"
    # the op's statistics are the kernel's (the host build at the same scratch), the plan's scatter
    # cost included: what the cost model reads
    o = case["opts"]
    eff = np.float64(case["in_scale"]) * case["w_scale"].astype(np.float64) / np.float64(case["out_scale"])
    mult, shift = quant.quantize_multipliers(eff)
    lib = kernels("host")
    preferred, least = lib.trec_buffer_sizes(case["input"].shape, case["filter"].shape, sub_vector_length=9,
                                             hash_bits=8, hash_center=o["hash_center"])
    for stats, scratch in ((stats_s, least), (stats_f, preferred)):
        _, st = lib.trec_conv2d_s8(case["input"], case["filter"], case["bias"], case["hash"],
                                   input_zero_point=case["in_zp"], output_zero_point=case["out_zp"],
                                   output_multiplier=mult, output_shift=shift, sub_vector_length=9, hash_bits=8,
                                   hash_center=o["hash_center"], return_stats=True, scratch_bytes=scratch)
        assert {k: stats[k] for k in ("passes", "chunk", "plan", "scatter_tenths")} == \
            {"passes": st.passes, "chunk": st.chunk, "plan": st.plan, "scatter_tenths": st.scatter_tenths}
        assert stats["scatter_tenths"] > 0


# ------------------------------------------------------------------------------------------------
# custom options
# ------------------------------------------------------------------------------------------------
REQUIRED_KEYS = ["version", "sub_vector_length", "hash_bits", "hash_center", "stride_h", "stride_w",
                 "dilation_h", "dilation_w", "padding", "activation"]


def _with_options(opts) -> dict:
    case = make_case(seed=3)
    case["options"] = opts if isinstance(opts, (bytes, bytearray)) or opts is None else flexbuffers.Dumps(opts)
    return case


def _refused(runner, tmp_path, case, *needles):
    lines, out, log = run_case(runner, case, tmp_path)
    assert lines.get("prepare") == "error", f"Prepare accepted it:\n{lines}\n{log}"
    for needle in needles:
        assert needle in log, f"{needle!r} not in TFLM's messages:\n{log}"
    return log


@pytest.mark.tflm
def test_good_options_are_accepted(runner, tmp_path):
    case = make_case(seed=3)
    lines, out, log = run_case(runner, case, tmp_path)
    assert lines["prepare"] == "ok" and lines["invoke"] == "ok", log
    assert "TREC_CONV_2D" not in log


@pytest.mark.tflm
@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_unknown_version_is_refused(runner, tmp_path, version):
    opts = dict(make_case(seed=3)["opts"], version=version)
    _refused(runner, tmp_path, _with_options(opts),
             f"unknown TREC_CONV_2D version {version}; this build supports 1")


@pytest.mark.tflm
def test_unknown_version_is_refused_before_other_keys_are_read(runner, tmp_path):
    """A future version may have other keys: only the version is reported."""
    log = _refused(runner, tmp_path, _with_options({"version": 2, "new_key": 1}), "unknown TREC_CONV_2D version 2")
    assert "missing" not in log


@pytest.mark.tflm
@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_refused(runner, tmp_path, key):
    opts = dict(make_case(seed=3)["opts"])
    del opts[key]
    _refused(runner, tmp_path, _with_options(opts), f"custom option '{key}' is missing")


@pytest.mark.parametrize("key,value,needle", [
    ("hash_bits", "6", "custom option 'hash_bits' must be an int, got a string"),
    ("sub_vector_length", 5.0, "custom option 'sub_vector_length' must be an int, got a float"),
    ("version", "1", "custom option 'version' must be an int, got a string"),
    ("stride_h", True, "custom option 'stride_h' must be an int, got a bool"),
    ("padding", 1, "custom option 'padding' must be a string"),
    ("activation", [1, 2], "custom option 'activation' must be a string"),
    ("hash_center", 0, "custom option 'hash_center' must be a string"),
])
@pytest.mark.tflm
def test_wrongly_typed_key_is_refused(runner, tmp_path, key, value, needle):
    opts = dict(make_case(seed=3)["opts"], **{key: value})
    _refused(runner, tmp_path, _with_options(opts), needle)


@pytest.mark.parametrize("key,value,needle", [
    ("hash_bits", 17, "custom option 'hash_bits' = 17 is outside [1, 16]"),
    ("hash_bits", 0, "custom option 'hash_bits' = 0 is outside [1, 16]"),
    ("sub_vector_length", 0, "custom option 'sub_vector_length' = 0 is outside"),
    ("stride_w", 0, "custom option 'stride_w' = 0 is outside"),
    ("dilation_h", -1, "custom option 'dilation_h' = -1 is outside"),
    ("padding", "FULL", "custom option 'padding' = \"FULL\" is not one of"),
    ("activation", "TANH", "custom option 'activation' = \"TANH\" is not one of"),
    ("hash_center", "median", "custom option 'hash_center' = \"median\" is not one of"),
])
@pytest.mark.tflm
def test_out_of_range_value_is_refused(runner, tmp_path, key, value, needle):
    opts = dict(make_case(seed=3)["opts"], **{key: value})
    _refused(runner, tmp_path, _with_options(opts), needle)


@pytest.mark.tflm
def test_options_that_are_not_a_map_are_refused(runner, tmp_path):
    _refused(runner, tmp_path, _with_options(flexbuffers.Dumps([1, 2, 3])), "must be a flexbuffer map")


@pytest.mark.tflm
def test_garbage_options_are_refused(runner, tmp_path):
    _refused(runner, tmp_path, _with_options(b"\xff\x13\x00\x07garbage\x99"), "not a valid flexbuffer")


@pytest.mark.tflm
def test_missing_options_are_refused(runner, tmp_path):
    _refused(runner, tmp_path, _with_options(None), "has no custom options")


# ------------------------------------------------------------------------------------------------
# Prepare's checks
# ------------------------------------------------------------------------------------------------
@pytest.mark.tflm
def test_hash_dims_must_match_the_options(runner, tmp_path):
    case = make_case(seed=3, length=5, bits=6)
    case["hash"] = np.zeros((5, 4), np.int8)
    _refused(runner, tmp_path, case, "hash tensor is [5, 4], the options say L=5, H=6")


@pytest.mark.tflm
def test_sub_vector_length_cannot_exceed_k(runner, tmp_path):
    case = make_case(seed=3, k=1, cin=3, length=4, bits=2)   # K = 3
    _refused(runner, tmp_path, case, "sub_vector_length L=4 exceeds K = kh*kw*Cin = 3")


@pytest.mark.tflm
def test_batch_must_be_one(runner, tmp_path):
    case = make_case(seed=3)
    case["input"] = np.concatenate([case["input"]] * 2)
    case["out_shape"] = (2,) + case["out_shape"][1:]
    _refused(runner, tmp_path, case, "batch must be 1")


@pytest.mark.tflm
def test_filter_zero_points_must_be_zero(runner, tmp_path):
    case = make_case(seed=3)
    case["w_zp"] = case["w_zp"].copy()
    case["w_zp"][2] = 3
    _refused(runner, tmp_path, case, "filter zero point 3 of channel 2 must be 0")


@pytest.mark.tflm
def test_hash_zero_point_must_be_zero(runner, tmp_path):
    case = make_case(seed=3)
    case["hash_quant"] = (1, 0.5, 4)
    _refused(runner, tmp_path, case, "hash zero point must be 0")


@pytest.mark.tflm
def test_output_shape_must_follow_from_the_options(runner, tmp_path):
    case = make_case(seed=3, stride=(1, 1))
    case["opts"]["stride_h"] = 2
    case["options"] = flexbuffers.Dumps(case["opts"])
    _refused(runner, tmp_path, case, "the options give [1,5,8,5]")


# the rules the host validator (trec_tflm.spec.validate) also enforces: a device refuses what the host refuses
def _scaled(case, which: str, index, value):
    if which == "w_scale":
        case["w_scale"] = case["w_scale"].copy()
        case["w_scale"][index] = value
    else:
        case[which] = value
    return case


@pytest.mark.parametrize("which,index,value,needle", [
    ("w_scale", 1, float("nan"), "filter scale nan of channel 1 must be finite and > 0"),
    ("w_scale", 2, -0.01, "filter scale -0.01 of channel 2 must be finite and > 0"),
    ("w_scale", 0, 0.0, "filter scale 0 of channel 0 must be finite and > 0"),
    ("w_scale", 4, 1e30, "the requantization scale of channel 4"),
    ("in_scale", None, float("nan"), "the input scale must be finite and > 0"),
    ("out_scale", None, float("inf"), "the output scale must be finite and > 0"),
    ("in_zp", None, 300, "the input zero point 300 is outside [-128, 127]"),
    ("out_zp", None, -129, "the output zero point -129 is outside [-128, 127]"),
])
@pytest.mark.tflm
def test_bad_scales_and_zero_points_are_refused(runner, tmp_path, which, index, value, needle):
    _refused(runner, tmp_path, _scaled(make_case(seed=3), which, index, value), needle)


@pytest.mark.tflm
def test_one_filter_scale_per_output_channel(runner, tmp_path):
    case = make_case(seed=3, cout=5)
    case["w_scale"], case["w_zp"] = case["w_scale"][:3], case["w_zp"][:3]
    _refused(runner, tmp_path, case, "filter has 3 scales for 5 output channels")


@pytest.mark.parametrize("bit,needle", [(1, "the filter must be a constant tensor"),
                                        (2, "the bias must be a constant tensor"),
                                        (3, "the hash must be a constant tensor")])
@pytest.mark.tflm
def test_filter_bias_and_hash_must_be_constant(runner, tmp_path, bit, needle):
    case = make_case(seed=3)
    case["variable_mask"] = 1 << bit
    _refused(runner, tmp_path, case, needle)


@pytest.mark.tflm
def test_dilation_that_overflows_the_padding_is_refused(runner, tmp_path):
    case = make_case(seed=3, k=3)
    case["opts"]["dilation_h"] = 2**31 - 1
    case["options"] = flexbuffers.Dumps(case["opts"])
    _refused(runner, tmp_path, case, "spans beyond int32")


def test_skip_message_names_what_to_set():
    TFLM_SKIP_MESSAGE = tflm_skip_message()
    assert "TFLM_ROOT" in TFLM_SKIP_MESSAGE and tflm_build.TFLM_COMMIT in TFLM_SKIP_MESSAGE
    assert "README 'TFLM tree'" in TFLM_SKIP_MESSAGE

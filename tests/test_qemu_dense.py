"""The dense int8 convolution on emulated Cortex-M7 (qemu_m7) and Cortex-M4 (qemu_m4).

The C kernel is compiled for the board with the real DSP intrinsics (SXTB16/SMLAD); inputs,
filters, quantization and expected outputs come from trec_tflm.spec.golden, embedded as C arrays
(tests/firmware/dense/main.c). The firmware's exit code is its number of mismatches.

The DESIGN section 8 layers also give instruction counts (QEMU -icount: deterministic), compared with
the table's arm_convolve_wrapper_s8 counts as a regression guard on the baseline's honesty (within
1.15x of CMSIS-NN). Run ``python tests/test_qemu_dense.py`` to print the counts.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from trec_tflm.spec import golden, quant
from trec_tflm.target import qemu

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "tests" / "firmware" / "dense" / "main.c"
BOARDS = ("qemu_m7", "qemu_m4")

# DESIGN section 8: (name, H, W, Cin, Cout, k); stride 1, SAME
DESIGN_LAYERS = [("L1", 32, 32, 3, 32, 5), ("L2", 16, 16, 32, 16, 5), ("L3", 8, 8, 16, 32, 5),
                 ("L4", 32, 32, 3, 64, 5), ("L5", 16, 16, 64, 64, 5), ("L6", 16, 16, 16, 64, 3)]
# arm_convolve_wrapper_s8 instructions from the same table (CMSIS-NN e096196, -Ofast, gcc 12.2)
CMSIS_NN_INSTRUCTIONS = {
    "qemu_m7": {"L1": 7_024_376, "L2": 6_374_867, "L3": 1_570_271, "L4": 12_668_664, "L5": 44_764_115,
                "L6": 4_818_311},
    "qemu_m4": {"L1": 6_974_060, "L2": 6_361_607, "L3": 1_566_611, "L4": 12_618_348, "L5": 44_750_855,
                "L6": 4_813_755},
}
MAX_RATIO_VS_CMSIS_NN = 1.15


pytestmark = pytest.mark.qemu


# ------------------------------------------------------------------------------------------------
# cases -> C header
# ------------------------------------------------------------------------------------------------
def _c_array(name: str, ctype: str, values) -> str:
    flat = np.ravel(np.asarray(values)).astype(np.int64)
    body = ",".join(str(int(v)) for v in flat) if flat.size else "0"
    return f"static const {ctype} {name}[{max(flat.size, 1)}] __attribute__((aligned(4))) = {{{body}}};\n"


def write_cases_header(path: Path, cases: list[tuple[str, dict]]) -> None:
    """cases: (name, kwargs of golden.conv2d_s8 incl. input/filter/bias); expected from golden."""
    parts = ["#include <stdint.h>\n#include <stddef.h>\n"]
    entries = []
    max_out = max_scratch = 0
    for i, (name, case) in enumerate(cases):
        args = dict(case)
        x, w, b = args.pop("input"), args.pop("filter"), args.pop("bias")
        y = golden.conv2d_s8(x, w, b, **args)
        cout, kh, kw, cin = w.shape
        sh, sw = golden._pair(args["stride"])
        dh, dw = golden._pair(args["dilation"])
        (ho, wo), (pt, pl) = golden.conv_geometry(x.shape[1:3], (kh, kw), (sh, sw), (dh, dw), args["padding"])
        k = kh * kw * cin
        max_out = max(max_out, y.size)
        max_scratch = max(max_scratch, 4 * (4 * ((k + 3) // 4)))  # 2 int16 columns of align4(K)
        p = f"c{i}"
        parts.append(_c_array(f"{p}_x", "int8_t", x))
        parts.append(_c_array(f"{p}_w", "int8_t", w))
        if b is not None:
            parts.append(_c_array(f"{p}_b", "int32_t", b))
        parts.append(_c_array(f"{p}_m", "int32_t", args["output_multiplier"]))
        parts.append(_c_array(f"{p}_s", "int32_t", args["output_shift"]))
        parts.append(_c_array(f"{p}_y", "int8_t", y))
        macs = x.shape[0] * ho * wo * cout * k
        entries.append(
            f'{{"{name}", {x.shape[0]}, {x.shape[1]}, {x.shape[2]}, {cin}, {cout}, {kh}, {kw}, {ho}, {wo}, '
            f'{sh}, {sw}, {dh}, {dw}, {pt}, {pl}, {-int(args["input_zero_point"])}, '
            f'{int(args["output_zero_point"])}, {int(args["activation_min"])}, {int(args["activation_max"])}, '
            f'{p}_x, {p}_w, {p + "_b" if b is not None else "NULL"}, {p}_m, {p}_s, {p}_y, {macs}u}}')
    parts.append(
        "typedef struct {\n  const char *name;\n"
        "  int32_t n, h, w, cin, cout, kh, kw, ho, wo, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;\n"
        "  int32_t input_offset, output_offset, act_min, act_max;\n"
        "  const int8_t *input; const int8_t *filter; const int32_t *bias;\n"
        "  const int32_t *multiplier; const int32_t *shift; const int8_t *expected; uint32_t macs;\n"
        "} dense_case;\n")
    parts.append("static const dense_case CASES[] = {\n  " + ",\n  ".join(entries) + "\n};\n")
    parts.append(f"#define N_CASES {len(entries)}\n#define MAX_OUT_BYTES {max_out}\n"
                 f"#define MAX_SCRATCH_BYTES {max_scratch}\n")
    path.write_text("".join(parts))


def correctness_cases() -> list[tuple[str, dict]]:
    from helpers.native_dense import GRID, make_case

    cases = []
    for i, params in enumerate(GRID):
        if i % 5 and params[0] != 3:  # a fifth of the grid, plus every Cin=3 case (stream gather)
            continue
        cin, k, s, d, pad = params
        case = make_case(1000 + i, cin, k, s, d, pad, batch=2 if i % 2 else 1)
        cases.append((f"cin{cin}_k{k}_s{s}_d{d}_{pad}", case))
    # odd Cout and K < 4 (whole-word filter reads must stay inside the array), NULL bias
    rng = np.random.default_rng(5)
    for cin, k, cout in [(1, 1, 17), (2, 1, 9), (3, 1, 5), (1, 2, 7), (5, 3, 3)]:
        case = make_case(int(rng.integers(1 << 30)), cin, k, 1, 1, "SAME", batch=1)
        case["filter"] = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
        case["bias"] = None if cout == 9 else rng.integers(-3000, 3000, cout).astype(np.int32)
        case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
            rng.uniform(0.002, 0.05, cout))
        cases.append((f"small_k_cin{cin}_k{k}_cout{cout}", case))
    cases += requantization_cases()
    return cases


def requantization_cases() -> list[tuple[str, dict]]:
    """Input == zero point makes each accumulator its bias: extreme int32 accumulators against
    (multiplier, shift) pairs on both sides of the fast requantization's limits (shift -18/-19,
    multiplier 2^30 / 2^30 - 1, left shifts), run with the core's own QADD/SMMULR."""
    acc = [-(2**31), 2**31 - 1, 0, 1, -1, 1 << 30, -(1 << 30), (1 << 30) - 1, -(1 << 30) + 1,
           (1 << 30) - (1 << 19) + 1, -((1 << 30) - (1 << 19)) - 1, 3 << 28, -(3 << 28), 12345678, -12345678,
           (1 << 20) + (1 << 19), -((1 << 20) + (1 << 19)), 1 << 9, -(1 << 9) - 1, 767]
    combos = [(1 << 30, 0), (1 << 30, -1), ((1 << 31) - 1, -18), ((1 << 31) - 1, -19), (1518500250, -9),
              ((1 << 30) - 1, -5), (1, 0), (0, -3), (1073741825, 3), (1717986918, -31)]
    cases = []
    for zp, (amin, amax) in ((-7, (-128, 127)), (100, (-20, 110))):
        cout = len(acc) * len(combos)
        mult = np.array([m for m, _ in combos for _ in acc], np.int32)
        shift = np.array([sh for _, sh in combos for _ in acc], np.int32)
        case = dict(input=np.full((1, 1, 1, 1), 9, np.int8), filter=np.ones((cout, 1, 1, 1), np.int8),
                    bias=np.array(acc * len(combos), np.int32), input_zero_point=9, output_zero_point=zp,
                    output_multiplier=mult, output_shift=shift, stride=1, dilation=1, padding="VALID",
                    activation_min=amin, activation_max=amax)
        cases.append((f"requant_zp{zp}", case))
    return cases


def design_layer_cases(seed: int = 1) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(seed)
    cases = []
    for name, h, w, cin, cout, k in DESIGN_LAYERS:
        kk = k * k * cin
        case = dict(input=rng.integers(-128, 128, (1, h, w, cin), dtype=np.int8),
                    filter=rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8),
                    bias=rng.integers(-20000, 20000, cout).astype(np.int32),
                    input_zero_point=-3, output_zero_point=5, stride=1, dilation=1, padding="SAME",
                    activation_min=-128, activation_max=127)
        case["output_multiplier"], case["output_shift"] = quant.quantize_multipliers(
            rng.uniform(0.5, 2.0, cout) / (np.sqrt(kk) * 128 * 64 / 4))
        cases.append((name, case))
    return cases


def build_and_run(board: str, cases, workdir: Path, opt: str = "-Ofast"):
    gen = workdir / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    write_cases_header(gen / "dense_cases.h", cases)
    srcs = [FIRMWARE, *sorted((REPO / "tflm_ops" / "src").glob("*.c"))]
    elf = qemu.build_firmware(board, srcs, include_dirs=[REPO / "tflm_ops" / "include", REPO / "tflm_ops" / "src",
                                                         gen],
                              build_dir=workdir / f"fw-{board}", opt=opt, app="dense", printf_float=False)
    return qemu.run_elf(elf, board, timeout=300)


def parse(stdout: str) -> dict:
    res = {}
    for m in re.finditer(r"^case (\S+) (ok|FAIL)(.*?) ticks=(\d+) macs=(\d+) scratch=(\d+)", stdout, re.M):
        res[m.group(1)] = dict(ok=m.group(2) == "ok", detail=m.group(3).strip(), ticks=int(m.group(4)),
                               macs=int(m.group(5)), scratch=int(m.group(6)))
    return res


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("board", BOARDS)
def test_dense_bit_exact_on_qemu(board, tmp_path):
    cases = correctness_cases()
    res = build_and_run(board, cases, tmp_path)
    got = parse(res.stdout)
    assert set(got) == {name for name, _ in cases}, res.stdout[-2000:]
    bad = {k: v["detail"] for k, v in got.items() if not v["ok"]}
    assert not bad, f"mismatches on {board}: {bad}"
    assert "bad-args ok" in res.stdout, res.stdout[-2000:]
    assert res.exit_code == 0, res.stdout[-2000:]


@pytest.mark.parametrize("board", BOARDS)
def test_dense_design_layers_instruction_counts(board, tmp_path, record_property):
    res = build_and_run(board, design_layer_cases(), tmp_path)
    got = parse(res.stdout)
    assert res.exit_code == 0 and all(v["ok"] for v in got.values()), res.stdout[-2000:]
    for name, ref in CMSIS_NN_INSTRUCTIONS[board].items():
        ratio = got[name]["ticks"] / ref
        record_property(f"{board}_{name}_instructions", got[name]["ticks"])
        print(f"{board} {name}: {got[name]['ticks']:,} instructions, {ratio:.3f}x CMSIS-NN")
        assert ratio <= MAX_RATIO_VS_CMSIS_NN, f"{board} {name}: {ratio:.3f}x arm_convolve_wrapper_s8"


def test_firmware_detects_a_wrong_expected_output(tmp_path):
    """Negative control: a corrupted expected value must make the firmware fail."""
    name, case = correctness_cases()[0]
    orig = golden.conv2d_s8

    def corrupted(*a, **kw):
        y = orig(*a, **kw).copy()
        y.flat[y.size // 2] = np.int8(int(y.flat[y.size // 2]) ^ 1)
        return y

    golden.conv2d_s8 = corrupted
    try:
        res = build_and_run("qemu_m7", [(name, case)], tmp_path)
    finally:
        golden.conv2d_s8 = orig
    assert res.exit_code != 0 and f"case {name} FAIL" in res.stdout


if __name__ == "__main__":  # print instruction counts of the DESIGN layers on both boards
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as d:
        for board in BOARDS:
            got = parse(build_and_run(board, design_layer_cases(), Path(d) / board).stdout)
            for name, ref in CMSIS_NN_INSTRUCTIONS[board].items():
                g = got[name]
                print(f"{board} {name}: {g['ticks']:>12,} instructions  ({g['macs']:,} MACs, "
                      f"{g['ticks'] / g['macs']:.2f}/MAC)  CMSIS-NN {ref:>12,}  ratio {g['ticks'] / ref:.3f}  "
                      f"scratch {g['scratch']} B  {'ok' if g['ok'] else 'MISMATCH'}")

"""Run the C kernels on emulated Cortex-M7/M4 against golden vectors: verification and instruction counts.

The firmware is tflm_ops/bench/kernel_bench.c; this module writes its case header (tensors,
quantization and the expected outputs computed by trec_tflm.spec.golden), builds it for a QEMU board with
trec_tflm.target.qemu, runs it with ``-icount shift=0`` and parses the per-kernel lines. With
``cmsis_nn_root`` (or $CMSIS_NN_ROOT) CMSIS-NN's arm_convolve_wrapper_s8 is compiled into the same
firmware and measured on the same tensors.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trec_tflm import paths
from trec_tflm.host.kernels import kernels
from trec_tflm.spec import golden
from trec_tflm.target import qemu, toolchain
from trec_tflm.target.boards import QEMU_BOARD_OF_CORE

#: The QEMU board each core's kernels run on.
BOARD_OF_CORE = QEMU_BOARD_OF_CORE


@dataclass
class KernelCase:
    """One layer call: the keyword arguments of golden.trec_conv2d_s8 plus tensors."""

    name: str
    input: np.ndarray
    filter: np.ndarray
    bias: np.ndarray | None
    hash: np.ndarray
    params: dict  # input/output zero points, multipliers, shifts, L, H, centre, stride, padding, clamps
    scratch_bytes: int = 0  # 0: the kernel's get_buffer_size
    dense: bool = True      # also run (and check) the dense kernel on the same tensors
    note: str = ""          # where the tensors come from

    def golden_trec(self):
        return golden.trec_conv2d_s8(self.input, self.filter, self.bias, self.hash, **self.params,
                                     return_stats=True)

    def golden_dense(self):
        p = {k: v for k, v in self.params.items() if k not in ("sub_vector_length", "hash_bits", "hash_center")}
        return golden.conv2d_s8(self.input, self.filter, self.bias, **p)


@dataclass
class KernelResult:
    name: str
    ok: bool
    ticks: int
    scratch: int
    detail: str = ""
    phases: dict = field(default_factory=dict)  # hash, centroids, products, scatter (profile builds)
    clusters: int = 0
    rows: int = 0
    sub_matrices: int = 0
    passes: int = 0
    chunk: int = 0  # output channels per pass
    plan: str = ""
    scatter_tenths: int = 0  # the kernel's scatter cost per table entry with its plan and chunk
    sums_block: int = 0  # length of the cluster-sums blocks (L unless the scratch is tight)

    @property
    def remaining_ratio(self) -> float:
        return self.clusters / float(self.rows * self.sub_matrices) if self.rows else float("nan")


@dataclass
class RunResult:
    board: str
    exit_code: int
    stdout: str
    trec: dict[str, KernelResult]
    dense: dict[str, KernelResult]
    cmsis: dict[str, KernelResult]
    bad_args_ok: bool


# ------------------------------------------------------------------------------------------------
# header
# ------------------------------------------------------------------------------------------------
def _c_array(name: str, ctype: str, values) -> str:
    flat = np.ravel(np.asarray(values)).astype(np.int64)
    body = ",".join(str(int(v)) for v in flat) if flat.size else "0"
    return f"static const {ctype} {name}[{max(flat.size, 1)}] __attribute__((aligned(4))) = {{{body}}};\n"


def buffer_sizes(case: KernelCase, lib=None) -> tuple[int, int]:
    """(get_buffer_size, get_min_buffer_size) of trec_convolve_s8 for the case's layer."""
    p = case.params
    return (lib or kernels("host")).trec_buffer_sizes(
        case.input.shape, case.filter.shape, sub_vector_length=p["sub_vector_length"], hash_bits=p["hash_bits"],
        hash_center=p.get("hash_center", "mean"), stride=golden._pair(p.get("stride", 1)),
        dilation=golden._pair(p.get("dilation", 1)), padding=p.get("padding", "SAME"))


def write_header(path: Path, cases: list[KernelCase]) -> dict:
    """Write bench_cases.h; returns {case name: golden TrecStats list} for the callers' checks."""
    parts = ["#include <stdint.h>\n#include <stddef.h>\n"]
    entries, stats = [], {}
    max_out = max_scratch = 0
    lib = kernels("host")
    emitted: dict = {}  # one array per distinct content: the cases of a scratch sweep share tensors

    def array(name: str, ctype: str, values) -> str:
        a = np.ascontiguousarray(values)
        key = (ctype, a.shape, hashlib.sha1(a.tobytes()).hexdigest())
        if key not in emitted:
            emitted[key] = name
            parts.append(_c_array(name, ctype, a))
        return emitted[key]

    for i, c in enumerate(cases):
        p = c.params
        y, st = c.golden_trec()
        stats[c.name] = st
        cout, kh, kw, cin = c.filter.shape
        sh, sw = golden._pair(p.get("stride", 1))
        dh, dw = golden._pair(p.get("dilation", 1))
        pad = p.get("padding", "SAME")
        (ho, wo), (pt, pl) = golden.conv_geometry(c.input.shape[1:3], (kh, kw), (sh, sw), (dh, dw), pad)
        preferred, _ = buffer_sizes(c, lib)
        scratch = c.scratch_bytes or preferred
        dense_scratch = 4 * (4 * ((kh * kw * cin + 3) // 4))
        max_out = max(max_out, y.size)
        max_scratch = max(max_scratch, scratch, dense_scratch)
        v = f"c{i}"
        names = [array(f"{v}_x", "int8_t", c.input), array(f"{v}_w", "int8_t", c.filter),
                 array(f"{v}_r", "int8_t", c.hash),
                 array(f"{v}_b", "int32_t", c.bias) if c.bias is not None else "NULL",
                 array(f"{v}_m", "int32_t", p["output_multiplier"]), array(f"{v}_s", "int32_t", p["output_shift"]),
                 array(f"{v}_y", "int8_t", y), array(f"{v}_yd", "int8_t", c.golden_dense()) if c.dense else "NULL"]
        centre = {"none": 0, "mean": 1}[p.get("hash_center", "mean")]
        entries.append(
            f'{{"{c.name}", {c.input.shape[0]}, {c.input.shape[1]}, {c.input.shape[2]}, {cin}, {cout}, {kh}, {kw}, '
            f'{ho}, {wo}, {sh}, {sw}, {dh}, {dw}, {pt}, {pl}, {-int(p["input_zero_point"])}, '
            f'{int(p["output_zero_point"])}, {int(p.get("activation_min", -128))}, '
            f'{int(p.get("activation_max", 127))}, '
            f'{int(p["sub_vector_length"])}, {int(p["hash_bits"])}, {centre}, {int(c.scratch_bytes)}, '
            f'{", ".join(names)}}}')
    parts.append(
        "typedef struct {\n  const char *name;\n"
        "  int32_t n, h, w, cin, cout, kh, kw, ho, wo, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;\n"
        "  int32_t input_offset, output_offset, act_min, act_max;\n"
        "  int32_t sub_vector_length, hash_bits, hash_center, scratch_bytes;\n"
        "  const int8_t *input; const int8_t *filter; const int8_t *hash; const int32_t *bias;\n"
        "  const int32_t *multiplier; const int32_t *shift; const int8_t *expected_trec;\n"
        "  const int8_t *expected_dense;\n} bench_case;\n")
    parts.append("static const bench_case CASES[] = {\n  " + ",\n  ".join(entries) + "\n};\n")
    cmsis_scratch = max_scratch  # CMSIS-NN's wrapper needs at most a few columns more than ours
    parts.append(f"#define N_CASES {len(entries)}\n#define MAX_OUT_BYTES {max_out}\n"
                 f"#define MAX_SCRATCH_BYTES {max(max_scratch, cmsis_scratch) + 4096}\n")
    path.write_text("".join(parts))
    return stats


# ------------------------------------------------------------------------------------------------
# build and run
# ------------------------------------------------------------------------------------------------
def cmsis_nn_sources(root: Path) -> list[Path]:
    src = root / "Source"
    files = sorted((src / "ConvolutionFunctions").glob("*.c")) + sorted((src / "NNSupportFunctions").glob("*.c"))
    if not files:
        raise FileNotFoundError(f"CMSIS_NN_ROOT={root} has no Source/ConvolutionFunctions/*.c: point it at a "
                                "CMSIS-NN checkout (commit e096196a0c49f065abc03d943c583cd50de424ba)")
    return files


def build_and_run(core: str, cases: list[KernelCase], workdir: Path, *, profile: bool = False,
                  cmsis_nn_root: str | os.PathLike | None = None, opt: str = "-Ofast",
                  timeout: float = 600) -> RunResult:
    board = BOARD_OF_CORE.get(core, core)
    gen = Path(workdir) / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    write_header(gen / "bench_cases.h", cases)
    ops = paths.tflm_ops_dir()
    srcs = [ops / "bench" / "kernel_bench.c", *sorted((ops / "src").glob("*.c"))]
    includes = [ops / "include", ops / "src", gen]
    defines = []
    if profile:
        defines.append("TREC_PROFILE=1")
    if cmsis_nn_root:
        root = Path(cmsis_nn_root)
        srcs += cmsis_nn_sources(root)
        includes.append(root / "Include")
        defines.append("TREC_BENCH_CMSIS_NN=1")
    tag = f"{board}{'-prof' if profile else ''}{'-cmsis' if cmsis_nn_root else ''}"
    elf = toolchain.build_firmware(board, srcs, include_dirs=includes, defines=defines,
                              build_dir=Path(workdir) / f"fw-{tag}", opt=opt, app="kernel_bench",
                              printf_float=False)
    res = qemu.run_elf(elf, board, timeout=timeout)
    return parse(board, res.exit_code, res.stdout)


_LINE = re.compile(r"^(trec|dense|cmsis) (\S+) (ok|FAIL)(.*?) ticks=(\d+)(.*)$", re.M)


def parse(board: str, exit_code: int, stdout: str) -> RunResult:
    out = {"trec": {}, "dense": {}, "cmsis": {}}
    for m in _LINE.finditer(stdout):
        kind, name, status, detail, ticks, rest = m.groups()
        fields = dict(re.findall(r"(\w+)=(\d+)", rest))
        r = KernelResult(name=name, ok=status == "ok", ticks=int(ticks), scratch=int(fields.get("scratch", 0)),
                         detail=detail.strip())
        if kind == "trec":
            r.phases = {k: int(fields[k]) for k in ("hash", "centroids", "products", "scatter")}
            r.plan = {"1": "tables", "2": "tables16"}.get(fields.get("plan"), "accumulator")
            r.clusters, r.rows = int(fields["clusters"]), int(fields["rows"])
            r.sub_matrices, r.passes = int(fields["subm"]), int(fields["passes"])
            r.chunk = int(fields.get("chunk", 0))
            r.scatter_tenths = int(fields.get("scatter_tenths", 0))
            r.sums_block = int(fields.get("sums_block", 0))
        out[kind][name] = r
    for m in re.finditer(r"^(trec|dense|cmsis) (\S+) FAIL(.*)$", stdout, re.M):  # lines without ticks
        if m.group(2) not in out[m.group(1)]:
            out[m.group(1)][m.group(2)] = KernelResult(m.group(2), False, 0, 0, m.group(3).strip())
    return RunResult(board, exit_code, stdout, out["trec"], out["dense"], out["cmsis"],
                     bool(re.search(r"^bad-args ok", stdout, re.M)))

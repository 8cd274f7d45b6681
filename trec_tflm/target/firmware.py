"""Firmware projects: a ``.tflite`` model as a TensorFlow Lite Micro app for one board.

:func:`generate_project` writes a project directory that builds with ``boards/firmware.mk``:

* ``trec_app_model.cc`` - the model as a 16-byte aligned C array (in flash);
* ``trec_app_ops.cc`` - a ``MicroMutableOpResolver<N>`` with exactly the model's operators
  (``AddConv2D()`` ..., ``tflite::AddTrecConv2D()``);
* ``trec_app_config.h`` - model name, operator count and the arena size: the arena the app
  really uses on that core (measured by running the app on the board's QEMU twin) plus a margin;
* ``trec_app_selftest.cc`` - optional built-in inputs for the self-test build;
* ``Makefile`` - ``make`` builds the TFLM libraries (tflm_ops/tflm.mk, CMSIS-NN kernels when
  ``CMSIS_NN_ROOT`` is set) and the app (``boards/app/`` + the EEMBC protocol + our kernels);
  ``make run`` runs it in QEMU; ``make SELFTEST=1`` builds the self-test variant;
* ``project.json`` - what was generated (board, core, operators, arena, trees).

The files' text is trec_tflm.target.sources; the resolver's methods come from trec_tflm.target.resolver.

:func:`build` builds it and returns the ELF. The app speaks the EEMBC / MLPerf Tiny protocol
(``trec-tflm bench``) and reports per-operator ticks with ``ops%``; see docs/TFLM.md.

Typical use (what ``trec-tflm deploy`` calls)::

    from trec_tflm.target import firmware
    info = firmware.generate_project(Path("model.tflite").read_bytes(), "nucleo_f746zg", "fw/")
    elf = firmware.build("fw/")                     # fw/build/nucleo_f746zg/trec_app.elf
    firmware.image_sizes(elf)                       # flash / RAM use

Needs ``TFLM_ROOT`` (and optionally ``CMSIS_NN_ROOT``, ``FLATBUFFERS_ROOT``), the ARM toolchain, and
for the arena measurement qemu-system-arm (without QEMU the arena comes from the host runtime
with a larger margin; ``arena_size=`` sets it outright).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trec_tflm import paths, progress
from trec_tflm.host import interpreter as runtime
from trec_tflm.host import tflm_build
from trec_tflm.host.isolate import run_isolated
from trec_tflm.spec import model as tm
from trec_tflm.spec.validate import ModelValidationError, validate_model
from trec_tflm.target import boards as board_table
from trec_tflm.target import mlperf, qemu, toolchain
from trec_tflm.target.boards import QEMU_TWIN
from trec_tflm.target.errors import FirmwareError
from trec_tflm.target.resolver import model_operators, resolver_calls
from trec_tflm.target.sources import (
    PROJECT_FILE,
    config_h,
    makefile,
    model_cc,
    ops_cc,
    sanitize_name,
    selftest_cc,
)

#: Arena size the measurement build uses (the app then reports what it really needs).
PROBE_ARENA = 256 * 1024

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class ProjectInfo:
    out_dir: Path
    board: str
    core: str                   # tflm.mk target: m4, m7, ...
    model_name: str
    model_bytes: int
    model_sha256: str
    operators: list             # every operator of the model, in order
    op_kinds: list              # distinct operators, registration order
    resolver_calls: list        # the generated Add... calls
    arena_size: int             # TREC_APP_ARENA_SIZE
    arena_used: Optional[int]   # measured need (None when set by the caller)
    arena_source: str           # "qemu_m7" / "qemu_m4" (measured), "host-estimate", "given"
    input_bytes: int
    selftest_count: int
    cmsis_nn: bool
    tflm_build_dir: str
    mlperf_id: Optional[str] = None     # m-model of profile% (None: the model name)
    input_format: str = "int8"          # "uint8": db bytes are the int8 input + 128 (MLPerf Tiny)
    output_softmax: bool = False        # m-results = softmax of the dequantized outputs

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# ------------------------------------------------------------------------------------------------
# boards
# ------------------------------------------------------------------------------------------------
def boards() -> list[str]:
    return sorted(n for n in board_table.BOARDS if (paths.boards_dir() / n / "board.mk").is_file())


def board_core(board: str) -> str:
    """tflm.mk core target (m4, m7, ...) of a board (trec_tflm.target.boards)."""
    try:
        return board_table.board(board).core
    except board_table.UnknownBoardError as exc:
        raise FirmwareError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# what the app reports to the MLPerf Tiny runner
# ------------------------------------------------------------------------------------------------
def mlperf_settings(model: bytes, mlperf_id: Optional[str], input_format: Optional[str]) -> dict:
    """What the app reports to the MLPerf Tiny runner (trec_tflm.target.mlperf): the checked model ID,
    the input byte convention (default uint8 with an ID, int8 without) and whether m-results
    is the softmax of the outputs (models ending in logits)."""
    if mlperf_id is not None:
        mlperf.check_mlperf_id(mlperf_id, model)
    fmt = input_format or ("uint8" if mlperf_id else "int8")
    if fmt not in mlperf.INPUT_FORMATS:
        raise mlperf.MlperfError(f"input format {fmt!r}: choose one of {', '.join(mlperf.INPUT_FORMATS)}")
    return dict(mlperf_id=mlperf_id, input_format=fmt, output_softmax=mlperf.output_is_logits(model))


# ------------------------------------------------------------------------------------------------
# generate / build
# ------------------------------------------------------------------------------------------------
def _tree_settings(core: str, cmsis_nn: bool) -> dict:
    root = tflm_build.check_tflm_tree()
    cmsis = os.environ.get("CMSIS_NN_ROOT", "") if cmsis_nn else ""
    extra: list = []
    bdir = tflm_build.target_build_dir(core, cmsis_nn=bool(cmsis), extra=extra)
    flags = tflm_build.run_make(core, "print-app-flags", cmsis_nn=bool(cmsis), extra=extra).strip().splitlines()[-1]
    incs = tflm_build.run_make(core, "print-app-includes", cmsis_nn=bool(cmsis), extra=extra).strip().splitlines()[-1]
    flat = next((Path(p).parent for p in incs.split() if p.endswith("/include") and "flatbuffers" in p), None)
    return dict(tflm_root=str(root), cmsis_nn_root=cmsis,
                flatbuffers_root=os.environ.get("FLATBUFFERS_ROOT") or (str(flat) if flat else ""),
                build_root=str(tflm_build.build_root()), tflm_build_dir=str(bdir), app_flags=flags,
                app_includes=incs, cmsis_nn=bool(cmsis))


def input_bytes(model: bytes) -> int:
    """Bytes of the model's (first) input: the app's input buffer (``db`` capacity)."""
    m = tm.load_model(model)
    sg = m.subgraphs[0]
    t = sg.tensors[int(sg.inputs[0])]
    n = int(np.prod(t.shape)) if t.shape is not None and len(t.shape) else 1
    return n * _ITEM_BYTES.get(tm.tensor_type_name(t.type), 1)


_ITEM_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "float32": 4, "int32": 4}


def generate_project(model_bytes: Union[bytes, PathLike], board: str, out_dir: PathLike, *,
                     name: Optional[str] = None, arena_size: Optional[int] = None,
                     arena_margin: Optional[int] = None, measure_arena: bool = True,
                     selftest_inputs: Optional[np.ndarray] = None, cmsis_nn: bool = True,
                     scratch_budget: Optional[int] = None, stack_size: int = 16384, opt: str = "-O3",
                     timeout: float = 3600.0, mlperf_id: Optional[str] = None,
                     input_format: Optional[str] = None) -> ProjectInfo:
    """Write a firmware project for ``board`` into ``out_dir`` (created; generated files replaced).

    ``arena_size``: bytes for the tensor arena; None measures the need by building the app with a
    large arena and running it on the board's QEMU twin (same core, same code), then adds
    ``arena_margin`` (default max(1 KiB, 2 %)). Without QEMU the host runtime's (64-bit, larger)
    need plus 25 % is used. ``selftest_inputs``: int8 inputs [N, ...] for the self-test build.
    ``cmsis_nn``: use CMSIS-NN kernels when ``CMSIS_NN_ROOT`` is set. ``scratch_budget``: cap the
    scratch of every TREC_CONV_2D (``-DTREC_SCRATCH_BUDGET``). ``mlperf_id`` / ``input_format``:
    see :func:`mlperf_settings` (the MLPerf Tiny runner's needs, docs/BOARDS.md).
    """
    if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
        model_bytes = Path(model_bytes).read_bytes()
    model = bytes(model_bytes)
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise FirmwareError("not a .tflite flatbuffer (no TFL3 identifier)")
    try:
        validate_model(model)  # what the board's TFLM will read without checking
    except ModelValidationError as exc:
        raise FirmwareError(str(exc)) from None
    core = board_core(board)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kinds, calls = resolver_calls(model)
    operators = model_operators(model)[0]
    settings = _tree_settings(core, cmsis_nn)
    n_input = input_bytes(model)
    model_name = sanitize_name(name or "model_" + hashlib.sha256(model).hexdigest()[:8])
    ml = mlperf_settings(model, mlperf_id, input_format)

    selftest_count = 0
    if selftest_inputs is not None:
        x = np.asarray(selftest_inputs)
        if x.dtype != np.int8:
            raise FirmwareError(f"selftest_inputs must be int8, got {x.dtype}")
        if x.size % n_input:
            raise FirmwareError(f"selftest_inputs ({x.size} values) are not a whole number of "
                                f"{n_input}-byte inputs")
        selftest_count = x.size // n_input
        (out / "trec_app_selftest.cc").write_text(selftest_cc(x.reshape(selftest_count, n_input)))
    else:
        (out / "trec_app_selftest.cc").unlink(missing_ok=True)

    defines = []
    if scratch_budget is not None:
        defines.append(f"TREC_SCRATCH_BUDGET={int(scratch_budget)}")
    mk = dict(model_name=model_name, board=board, core=core, trec_root=paths.source_root(), stack_size=stack_size,
              opt=opt, db_capacity=n_input, extra_defines=" ".join(defines), **settings)
    (out / "trec_app_model.cc").write_text(model_cc(model))
    (out / "trec_app_ops.cc").write_text(ops_cc(kinds, calls))
    (out / "Makefile").write_text(makefile(mk))

    def write_config(arena: int):
        (out / "trec_app_config.h").write_text(config_h(model_name, arena, len(kinds), selftest_count, n_input,
                                                         input_uint8=ml["input_format"] == "uint8",
                                                         mlperf_id=ml["mlperf_id"],
                                                         output_softmax=ml["output_softmax"]))

    def make_info(arena: int, used: Optional[int], source: str) -> ProjectInfo:
        info = ProjectInfo(out_dir=out, board=board, core=core, model_name=model_name, model_bytes=len(model),
                           model_sha256=hashlib.sha256(model).hexdigest(), operators=operators, op_kinds=kinds,
                           resolver_calls=calls, arena_size=arena, arena_used=used, arena_source=source,
                           input_bytes=n_input, selftest_count=selftest_count,
                           cmsis_nn=settings["cmsis_nn"], tflm_build_dir=settings["tflm_build_dir"], **ml)
        (out / PROJECT_FILE).write_text(json.dumps(info.to_dict(), indent=1) + "\n")
        return info

    used: Optional[int] = None
    if arena_size is not None:
        arena, source = int(arena_size), "given"
    else:
        twin = QEMU_TWIN.get(board)
        if measure_arena and twin is not None and toolchain.skip_reason() is None:
            write_config(PROBE_ARENA)
            make_info(PROBE_ARENA, None, "probe")
            used = measure_arena_use(out, twin, timeout=timeout)
            source = twin
            margin = arena_margin if arena_margin is not None else max(1024, used // 50)
        else:
            used = run_isolated(host_arena_need, model, what="measuring the arena in the host TFLM runtime",
                                timeout=timeout)
            source = "host-estimate"
            margin = arena_margin if arena_margin is not None else max(4096, used // 4)
        arena = used + margin
    arena = (arena + 15) // 16 * 16
    write_config(arena)
    return make_info(arena, used, source)


def load_project(out_dir: PathLike) -> dict:
    p = Path(out_dir) / PROJECT_FILE
    if not p.is_file():
        raise FirmwareError(f"{out_dir} is not a generated firmware project (no {PROJECT_FILE})")
    return json.loads(p.read_text())


def build(out_dir: PathLike, board: Optional[str] = None, *, selftest: bool = False,
          jobs: Optional[int] = None, timeout: float = 3600.0, extra_make_args: Sequence[str] = ()) -> Path:
    """Build a generated project (TFLM libraries first, once); returns the ELF's path.
    ``board`` defaults to the project's; another board needs the same core."""
    reason = toolchain.skip_reason(need_qemu=False, need_toolchain=True)
    if reason:
        raise FirmwareError(reason)
    out = Path(out_dir).resolve()
    proj = load_project(out)
    board = board or proj["board"]
    if board_core(board) != proj["core"]:
        raise FirmwareError(f"{board} is a Cortex-{board_core(board)}; this project was generated for "
                            f"Cortex-{proj['core']} ({proj['board']}): regenerate it for {board}")
    args = [f"BOARD={board}", f"SELFTEST={1 if selftest else 0}", *extra_make_args]
    cmd = ["make", "--no-print-directory", "-C", str(out), f"-j{jobs or os.cpu_count() or 1}", "firmware", *args]
    variant = f"{board}{'-selftest' if selftest else ''}"
    log = out / "build" / f"make-{variant}.log"
    try:
        run = progress.run_build(cmd, step=f"building firmware {proj.get('model_name', out.name)} for {variant} "
                                 "(TFLM libraries, then the app)", log=log, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"building {out} took longer than {timeout:g} s (log: {log})") from None
    if not run.ok:
        hint = ""
        if "overflowed" in run.output or "RAM overflow" in run.output:
            hint = ("\nThe image does not fit the board: a smaller model, arena (arena_size=) or stack "
                    "(stack_size=) is needed.")
        raise FirmwareError(f"building the firmware in {out} for {board} failed:\n$ {' '.join(cmd)}\n"
                            f"{run.tail()}{hint}")
    elf_out = subprocess.run(["make", "--no-print-directory", "-C", str(out), "print-elf", *args],
                             capture_output=True, text=True)
    elf = Path(elf_out.stdout.strip().splitlines()[-1])
    if not elf.is_file():
        raise FirmwareError(f"make succeeded but {elf} is missing")
    return elf


def image_sizes(elf: PathLike) -> dict:
    """Flash and RAM of an ELF (arm-none-eabi-size): text, data, bss; flash = text + data;
    ram = data + bss (static; the main stack comes on top, see stack_bytes)."""
    tool = shutil.which("arm-none-eabi-size") or "arm-none-eabi-size"
    out = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {}
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) >= 3 and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    text = sum(v for k, v in sec.items() if k in (".vectors", ".text", ".rodata", ".ARM.exidx", ".ARM.extab",
                                                 ".init_array", ".fini_array", ".preinit_array"))
    data = sec.get(".data", 0)
    bss = sec.get(".bss", 0)
    ccm = sec.get(".ccm_bss", 0)
    stack = sum(v for k, v in sec.items() if "stack" in k)
    heap = sum(v for k, v in sec.items() if "heap" in k)
    return dict(text=text, data=data, bss=bss, ccm_bss=ccm, flash=text + data, ram=data + bss,
                stack_bytes=stack, heap_bytes=heap, sections=sec)


# ------------------------------------------------------------------------------------------------
# running the self-test build
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SelftestResult:
    outputs: np.ndarray          # int8 [N, outputs]
    ops: list                    # (name, ticks) of the last inference
    reuse: dict                  # op index -> (clusters, rows, sub_matrices, passes) for TREC ops
    arena_used: int
    arena_size: int
    ticks: int                   # all inferences
    unit: str
    stdout: str


def parse_selftest(stdout: str) -> SelftestResult:
    outs, ops, reuse = {}, [], {}
    arena = (0, 0)
    ticks, unit, done = 0, "", False
    for ln in stdout.replace("\r", "").split("\n"):
        m = re.match(r"selftest-(\w+)-\[(.*)\]$", ln.strip())
        if ln.strip() == "selftest-done":
            done = True
        if not m:
            continue
        kind, body = m.group(1), m.group(2).split(",")
        if kind == "out":
            outs[int(body[0])] = [int(v) for v in body[1:]]
        elif kind == "op":
            ops.append((body[1], int(body[2])))
        elif kind == "rc":
            reuse[int(body[0])] = tuple(int(v) for v in body[1:])
        elif kind == "arena":
            arena = (int(body[0]), int(body[1]))
        elif kind == "ticks":
            ticks, unit = int(body[0]), body[1]
        elif kind == "error":
            raise FirmwareError(f"self-test failed: {ln.strip()}\n{stdout[-2000:]}")
    if not done:
        raise FirmwareError(f"the self-test did not finish; its output ends with:\n{stdout[-2000:]}")
    arr = np.asarray([outs[i] for i in sorted(outs)], dtype=np.int8) if outs else np.zeros((0, 0), np.int8)
    return SelftestResult(outputs=arr, ops=ops, reuse=reuse, arena_used=arena[0], arena_size=arena[1],
                          ticks=ticks, unit=unit, stdout=stdout)


def run_selftest(out_dir: PathLike, board: Optional[str] = None, *, timeout: float = 600.0,
                 build_timeout: float = 3600.0) -> SelftestResult:
    """Build the self-test variant for a QEMU board (default: the project board's QEMU twin), run
    it, and parse what it printed."""
    proj = load_project(out_dir)
    board = board or QEMU_TWIN.get(proj["board"], proj["board"])
    if board not in board_table.QEMU_BOARDS:
        raise FirmwareError(f"{board} is not a QEMU board")
    elf = build(out_dir, board, selftest=True, timeout=build_timeout)
    res = qemu.run_elf(elf, board, timeout=timeout)
    if res.exit_code != 0:
        raise FirmwareError(f"the self-test on {board} exited with {res.exit_code}:\n{res.stdout[-3000:]}")
    return parse_selftest(res.stdout)


_BOOT = re.compile(r"trec-tflm app: model (\S+), (\d+) operators, arena (\d+) of (\d+) bytes")


def parse_boot_line(stdout: str) -> dict:
    """The app's boot line: model name, operator count, arena used and size."""
    m = _BOOT.search(stdout)
    if not m:
        err = re.search(r"trec-tflm app: error: .*", stdout)
        if err is None:
            raise FirmwareError(f"no boot line from the app; output:\n{stdout[-2000:]}")
        # what TFLM printed before the app gave up (e.g. the arena's "Requested: N, available M")
        before = [ln.strip() for ln in stdout[:err.start()].splitlines() if ln.strip()][-6:]
        raise FirmwareError(err.group(0).strip() + ("; TFLM said: " + " | ".join(before) if before else ""))
    return dict(model=m.group(1), operators=int(m.group(2)), arena_used=int(m.group(3)),
                arena_size=int(m.group(4)))


def host_arena_need(model: bytes) -> int:
    """Arena bytes the host TFLM runtime allocates for ``model``, after one inference on a zero
    input (so a kernel that fails only in Eval is caught here, not on the board)."""
    rt = runtime.Runtime(model)
    rt.invoke(np.zeros(rt.input_shape, rt.input_dtype))
    return rt.arena_used_bytes()


def measure_arena_use(out_dir: PathLike, qemu_board: str, *, timeout: float = 3600.0) -> int:
    """Arena bytes the app uses on ``qemu_board``: builds the app, boots it in QEMU, reads the boot
    line and sends ``exit%``."""
    elf = build(out_dir, qemu_board, timeout=timeout)
    res = qemu.run_elf(elf, qemu_board, timeout=120.0, stdin_bytes=b"exit%")
    info = parse_boot_line(res.stdout)
    if res.exit_code != 0:
        raise FirmwareError(f"the app on {qemu_board} exited with {res.exit_code}:\n{res.stdout[-2000:]}")
    return info["arena_used"]

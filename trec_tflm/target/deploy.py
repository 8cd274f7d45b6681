"""``trec-tflm deploy MODEL.tflite --board B -o OUT [--build] [--flash]``: a model as firmware.

Writes a self-contained firmware project for one board (the model as a 16-byte aligned C array,
an op resolver with exactly the model's operators, the tensor arena sized from the model's need
plus a margin, a Makefile that uses boards/firmware.mk), optionally builds it with
arm-none-eabi-gcc and prints flash and RAM use against the board's memory, and optionally
flashes it (st-flash, openocd or pyocd, or a copy of the .bin to the board's ST-LINK drive).

Two ways to generate, one project layout (the app is boards/app/, see docs/BOARDS.md "Deploy
and bench"):

* ``TFLM_ROOT`` set: :func:`trec_tflm.target.firmware.generate_project`. The arena is measured: the app
  runs once on the board's QEMU twin (same core, same code) and reports what TFLM allocated; the
  margin is added on top (default max(1 KiB, 2 %)). Without qemu-system-arm the host TFLM
  runtime's need (64-bit, larger) plus 25 % is used. The Makefile records the TFLM tree.
* no ``TFLM_ROOT``: the same generated sources, written here, with the arena from
  :func:`estimate_arena` (documented below) and a Makefile that takes ``TFLM_ROOT``,
  ``FLATBUFFERS_ROOT`` and ``CMSIS_NN_ROOT`` from the environment when ``make`` runs. The
  resolver's method names come from :data:`RESOLVER_BUILTINS` (TFLM's MicroMutableOpResolver at
  the pinned commit; the TFLM-tier tests check the table against the header).

Refused: files that are not ``.tflite`` flatbuffers, TREC_CONV_2D operators with unknown options
(``trec_tflm.spec.model``), unknown boards, and an ``-o`` directory that exists and is not a
project this command wrote (a previous project is replaced). The project is written to a
temporary directory beside ``-o`` and renamed into place, so a failure leaves nothing at ``-o``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from trec_tflm import paths
from trec_tflm.spec.op import TREC_CUSTOM_CODE

REAL_BOARDS = ("nucleo_f746zg", "disco_f469ni")
QEMU_BOARDS = ("qemu_m7", "qemu_m4")
BOARDS = REAL_BOARDS + QEMU_BOARDS

#: Label of the ST-LINK mass-storage drive (drag-and-drop flashing) of each STM32 board.
DRIVE_LABELS = {"nucleo_f746zg": "NODE_F746ZG", "disco_f469ni": "DIS_F469NI"}
#: OpenOCD target script, used when the board script is not among the installed OpenOCD scripts.
OPENOCD_TARGETS = {"nucleo_f746zg": "target/stm32f7x.cfg", "disco_f469ni": "target/stm32f4x.cfg"}
#: Flashing tools, in the order they are tried.
FLASH_TOOLS = ("st-flash", "openocd", "pyocd")
FLASH_PACKAGES = ("stlink-tools (Debian: apt-get install stlink-tools; provides st-flash)",
                  "openocd (Debian: apt-get install openocd)",
                  "pyocd (pip install pyocd; then pyocd pack install <device>)")
#: Where mounted USB drives appear (Linux desktops, udisks, plain mounts, macOS).
MEDIA_ROOTS = ("/media", "/run/media", "/mnt", "/Volumes")

#: Marker file of a project this module (or trec_tflm.target.firmware) wrote.
PROJECT_FILE = "project.json"
APP_NAME = "trec_app"
DEFAULT_STACK = 16384

#: Builtin operators MicroMutableOpResolver can register at the pinned TFLM commit (88f8587b);
#: the method is ``Add`` + the CamelCase of the name, except for METHOD_EXCEPTIONS.
RESOLVER_BUILTINS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD
FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU
LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU
RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX
SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF
TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())
METHOD_EXCEPTIONS = {"BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2",
                     "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}

PathLike = Union[str, os.PathLike]


class DeployError(RuntimeError):
    """Something the user can fix: the message says what and how. ``exit_code``: 2 for bad
    input, 1 when a build, the memory budget or flashing failed."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def check_board(board: str) -> str:
    if board not in BOARDS or not (paths.boards_dir() / board / "board.mk").is_file():
        raise DeployError(f"unknown board {board!r}; boards: {', '.join(BOARDS)}")
    return board


def load_checked_model(model: Union[bytes, PathLike]) -> tuple[bytes, list]:
    """The model's bytes and operators, refusing anything TFLM or our kernel would refuse later:
    not a file / not ``.tflite``, not a TFLite flatbuffer, TREC_CONV_2D with unknown or bad options."""
    from trec_tflm.spec import model as tm

    what = "the model"
    if not isinstance(model, (bytes, bytearray, memoryview)):
        path = Path(model)
        what = str(path)
        if not path.exists():
            raise DeployError(f"{path}: no such file")
        if path.is_dir():
            raise DeployError(f"{path} is a directory, not a .tflite model")
        if path.suffix.lower() != ".tflite":
            hint = " (a Keras model: convert it first with `trec-tflm convert`)" \
                if path.suffix.lower() in (".keras", ".h5") else ""
            raise DeployError(f"{path} is not a .tflite file{hint}")
        model = path.read_bytes()
    buf = bytes(model)
    from trec_tflm.spec.validate import validate_model

    try:
        m = validate_model(buf, what)
        ops = tm.operators(m)
        for op in ops:
            if op.name == TREC_CUSTOM_CODE:
                tm.trec_op_params(m, m.subgraphs[0].operators[op.index], 0, f"{what}: operator {op.index}")
    except tm.TfliteModelError as exc:
        raise DeployError(str(exc)) from None
    if len(m.subgraphs) != 1:
        raise DeployError(f"{what} has {len(m.subgraphs)} subgraphs; the firmware app runs one")
    return buf, ops


def _project_dir_state(out: Path) -> str:
    """"absent", "project" (one we wrote: replace it) or raises DeployError."""
    if not out.exists() and not out.is_symlink():
        return "absent"
    if not out.is_dir():
        raise DeployError(f"-o {out} exists and is not a directory; choose another output directory")
    if (out / PROJECT_FILE).is_file():
        try:
            json.loads((out / PROJECT_FILE).read_text())["board"]
            return "project"
        except (ValueError, KeyError, TypeError):
            pass
    if not any(out.iterdir()):
        return "empty"
    raise DeployError(f"-o {out} exists and is not a firmware project written by trec-tflm deploy "
                      f"(no {PROJECT_FILE}); refusing to write into it: choose another output directory "
                      "or remove it")


# ------------------------------------------------------------------------------------------------
# resolver without a TFLM tree
# ------------------------------------------------------------------------------------------------
def resolver_method(builtin: str) -> str:
    """MicroMutableOpResolver method of a builtin operator (DeployError when TFLM has none)."""
    if builtin not in RESOLVER_BUILTINS:
        raise DeployError(f"the model uses operator {builtin}, which TFLM's MicroMutableOpResolver does not "
                          "have at the pinned commit (or which this table does not know: set TFLM_ROOT so "
                          "the resolver is read from TFLM's header)")
    if builtin in METHOD_EXCEPTIONS:
        return METHOD_EXCEPTIONS[builtin]
    return "Add" + "".join(p[:1].upper() + p[1:].lower() if not re.fullmatch(r"\d+D", p) else p
                           for p in builtin.split("_"))


def resolver_calls_without_tflm(op_names: Sequence[str]) -> tuple[list, list]:
    """(distinct operators in order of first use, the C++ registration statements)."""
    kinds: list = []
    for name in op_names:
        if name not in kinds:
            kinds.append(name)
    calls = []
    for name in kinds:
        if name == TREC_CUSTOM_CODE:
            calls.append("tflite::AddTrecConv2D(resolver)")
        else:
            calls.append(f"resolver.{resolver_method(name)}()")
    return kinds, calls


# ------------------------------------------------------------------------------------------------
# arena estimate (no TFLM tree)
# ------------------------------------------------------------------------------------------------
#: TFLM aligns every arena buffer to 16 bytes (MicroArenaBufferAlignment()).
ARENA_ALIGN = 16
#: Fixed persistent overhead: the MicroAllocator, subgraph and planner bookkeeping, the
#: interpreter's input/output TfLiteTensors (32-bit build). Per tensor: a TfLiteEvalTensor
#: (12 bytes) + planner bookkeeping; per operator: TfLiteNode + registration + op data.
ARENA_FIXED = 2048
ARENA_PER_TENSOR = 48
ARENA_PER_OP = 160
ARENA_PER_CHANNEL = 8      # per-channel multiplier and shift (int32 each) of conv-like operators


@dataclasses.dataclass
class ArenaEstimate:
    activations: int        # greedy placement of the activation tensors and scratch buffers
    scratch: int            # largest scratch buffer of one operator (included in activations)
    persistent: int         # bookkeeping and op data (32-bit)
    margin: int
    notes: list

    @property
    def need(self) -> int:
        return self.activations + self.persistent

    @property
    def total(self) -> int:
        return _align(self.need + self.margin, ARENA_ALIGN)

    def describe(self) -> str:
        return (f"estimate: activations+scratch {self.activations:,} B (largest scratch {self.scratch:,} B) "
                f"+ bookkeeping {self.persistent:,} B + margin {self.margin:,} B")


def _align(n: int, a: int) -> int:
    return (int(n) + a - 1) // a * a


def _greedy_plan(buffers: list) -> int:
    """Peak of a first-fit placement of (size, first, last) buffers, largest first: the same
    strategy as TFLM's GreedyMemoryPlanner (buffers live in [first, last] operator steps)."""
    placed: list = []  # (offset, size, first, last)
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], buffers[i][1]))
    peak = 0
    for i in order:
        size, first, last = buffers[i]
        busy = sorted((o, s) for o, s, f, end in placed if not (end < first or f > last))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        peak = max(peak, offset + size)
    return peak


def _trec_scratch(op) -> tuple[int, str]:
    """Scratch bytes TREC_CONV_2D requests: trec_convolve_s8_get_buffer_size through the host C
    library when it can be built here, else twice the int8 output tensor (the kernel's design
    bound, docs/OP_SPEC.md)."""
    o = op.trec_options
    out_bytes = int(math.prod(op.outputs[0].shape))
    try:
        from trec_tflm.host import kernels as native

        size, _ = native.kernels().trec_buffer_sizes(
            tuple(op.inputs[0].shape), tuple(op.inputs[1].shape), sub_vector_length=o["sub_vector_length"],
            hash_bits=o["hash_bits"], hash_center=o["hash_center"], stride=(o["stride_h"], o["stride_w"]),
            dilation=(o["dilation_h"], o["dilation_w"]), padding=o["padding"])
        return int(size) + 4, "trec_convolve_s8_get_buffer_size"
    except Exception as exc:  # noqa: BLE001 - no compiler, or an older library: fall back
        return 2 * out_bytes + 4096, f"2 x output + 4 KiB (kernel library unavailable: {type(exc).__name__})"


def estimate_arena(model: bytes, margin: Optional[int] = None) -> ArenaEstimate:
    """Tensor arena a 32-bit TFLM build needs for ``model``, without TFLM.

    Activations: every non-constant tensor lives from the operator that first touches it to the
    last one that reads it (graph inputs from the start, outputs to the end); each operator's
    scratch lives during that operator (TREC_CONV_2D: trec_convolve_s8_get_buffer_size; CONV_2D
    and DEPTHWISE_CONV_2D: CMSIS-NN's two int16 im2col columns, 4*K bytes; AVERAGE_POOL_2D: 4*C);
    the buffers, 16-byte aligned, are placed first-fit largest first like TFLM's greedy planner.
    Bookkeeping: ARENA_FIXED + ARENA_PER_TENSOR per tensor + ARENA_PER_OP per operator +
    ARENA_PER_CHANNEL per output channel of conv-like operators. ``margin``: default
    max(4 KiB, 10 %) of that sum. The TFLM-tier tests check the estimate against the arena the
    app really uses on the QEMU boards (it must not be smaller)."""
    from trec_tflm.spec import model as tm

    m = tm.load_model(model)
    ops = tm.operators(m)
    sg = m.subgraphs[0]
    n_ops = len(ops)
    life: dict = {}
    for t in list(sg.inputs if sg.inputs is not None else []):
        life[int(t)] = [0, 0]
    for op in ops:
        for t in [*op.inputs, *op.outputs]:
            if t is None or t.constant:
                continue
            span = life.setdefault(t.index, [op.index, op.index])
            span[0] = min(span[0], op.index)
            span[1] = max(span[1], op.index)
    for t in list(sg.outputs if sg.outputs is not None else []):
        life.setdefault(int(t), [n_ops - 1, n_ops - 1])[1] = max(n_ops - 1, 0)
    buffers, notes = [], []
    for idx, (first, last) in life.items():
        info = tm.tensor_info(m, idx)
        nbytes = int(math.prod(info.shape)) * tm.tensor_dtype(sg.tensors[idx]).itemsize
        buffers.append((_align(nbytes, ARENA_ALIGN), first, last))
    largest_scratch, channels = 0, 0
    for op in ops:
        scratch = 0
        if op.name == TREC_CUSTOM_CODE:
            scratch, how = _trec_scratch(op)
            if not any(how in n for n in notes):
                notes.append(f"TREC_CONV_2D scratch: {how}")
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.inputs[1] is not None:
            w = op.inputs[1].shape
            k = int(math.prod(w[1:])) if op.name == "CONV_2D" else int(math.prod(w[1:3])) * int(w[3])
            scratch = 4 * k
        elif op.name == "AVERAGE_POOL_2D":
            scratch = 4 * int(op.inputs[0].shape[-1])
        if op.name in (TREC_CUSTOM_CODE, "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") \
                and op.inputs[1] is not None:
            channels += int(op.inputs[1].shape[0] if op.name != "DEPTHWISE_CONV_2D" else op.inputs[1].shape[-1])
        if scratch:
            buffers.append((_align(scratch, ARENA_ALIGN), op.index, op.index))
            largest_scratch = max(largest_scratch, _align(scratch, ARENA_ALIGN))
    activations = _greedy_plan(buffers)
    persistent = ARENA_FIXED + ARENA_PER_TENSOR * len(sg.tensors) + ARENA_PER_OP * n_ops + ARENA_PER_CHANNEL * channels
    need = activations + persistent
    if margin is None:
        margin = max(4096, need // 10)
    return ArenaEstimate(activations, largest_scratch, persistent, int(margin), notes)


# ------------------------------------------------------------------------------------------------
# generating the project
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DeployResult:
    out_dir: Path
    board: str
    model_name: str
    operators: list
    resolver_calls: list
    arena_size: int
    arena_used: Optional[int]
    arena_source: str
    arena_note: str
    elf: Optional[Path] = None
    budget: Optional[MemoryBudget] = None
    flashed_with: Optional[str] = None
    mlperf_id: Optional[str] = None
    input_format: str = "int8"
    output_softmax: bool = False

    def summary(self) -> str:
        ops = ", ".join(self.operators)
        results = "softmax of the dequantized outputs" if self.output_softmax else "dequantized outputs"
        lines = [f"project  {self.out_dir}  ({self.board}, model {self.model_name})",
                 f"ops      {ops}",
                 f"arena    {self.arena_size:,} bytes ({self.arena_note})"]
        if self.mlperf_id:
            lines.append(f"mlperf   m-model-[{self.mlperf_id}]; input bytes {self.input_format}; m-results: {results}")
        else:
            lines.append(f"mlperf   m-model-[{self.model_name}] is not an MLPerf Tiny model ID: the MLPerf Tiny runner "
                         "will not run this firmware; deploy with --mlperf-id ic01|kws01|vww01|ad01 for it "
                         f"(input bytes {self.input_format}; m-results: {results})")
        if self.elf is not None:
            lines.append(f"elf      {self.elf}")
        if self.budget is not None:
            lines.append(self.budget.summary())
        if self.flashed_with:
            lines.append(f"flashed  with {self.flashed_with}")
        return "\n".join(lines)


def _tflm_configured() -> bool:
    return bool(os.environ.get("TFLM_ROOT", "").strip())


def generator_fingerprint() -> str:
    """Hash of the code that writes projects (this module, trec_tflm.target.firmware, the app's file
    list): a cached project written by other code is regenerated, not reused."""
    h = hashlib.sha256()
    for p in (Path(__file__), Path(__file__).with_name("firmware.py")):
        h.update(p.read_bytes())
    for p in sorted((paths.boards_dir() / "app").glob("*")):
        h.update(p.name.encode())
    return h.hexdigest()[:16]


def firmware_name(path: PathLike) -> str:
    """Model name a firmware reports for a .tflite path (its sanitized file name stem)."""
    from trec_tflm.target import firmware

    return firmware._sanitize_name(Path(path).stem)


def _model_name(name: Optional[str], source: Optional[Path], model: bytes) -> str:
    from trec_tflm.target import firmware

    if name:
        return firmware._sanitize_name(name)
    if source is not None:
        return firmware._sanitize_name(source.stem)
    return firmware._sanitize_name("model_" + hashlib.sha256(model).hexdigest()[:8])


def _portable_makefile_settings(core: str) -> dict:
    """Makefile values for a project generated without a TFLM tree: the trees come from the
    environment of ``make``, and tflm_ops/tflm.mk is asked for the build directory and flags.
    The TFLM build goes where this installation builds (runtime.build_root: never into an
    installed package), unless TREC_TFLM_BUILD_ROOT is set when make runs."""
    from trec_tflm.host import interpreter as runtime

    mk = "$(MAKE) -s --no-print-directory -f $(TREC_ROOT)/tflm_ops/tflm.mk"
    args = (f"TARGET={core} TFLM_ROOT=$(TFLM_ROOT) FLATBUFFERS_ROOT=$(FLATBUFFERS_ROOT) "
            "BUILD_ROOT=$(TFLM_BUILD_ROOT) CMSIS_NN_ROOT=$(CMSIS_NN_ROOT)")
    return dict(tflm_root="$(TFLM_ROOT)", flatbuffers_root="$(FLATBUFFERS_ROOT)", cmsis_nn_root="$(CMSIS_NN_ROOT)",
                build_root=f"$(or $(TREC_TFLM_BUILD_ROOT),{runtime.build_root()})",
                tflm_build_dir=f"$(if $(TFLM_ROOT),$(shell {mk} {args} print-build-dir 2>/dev/null))",
                app_flags=f"$(if $(TFLM_ROOT),$(shell {mk} $(TFLM_MK_ARGS) print-app-flags 2>/dev/null))",
                app_includes=f"$(if $(TFLM_ROOT),$(shell {mk} $(TFLM_MK_ARGS) print-app-includes 2>/dev/null))")


_NO_TFLM_GUARD = """
# Generated without a TFLM tree: TFLM_ROOT, FLATBUFFERS_ROOT and CMSIS_NN_ROOT (optional) come from
# the environment of make (see docs/BOARDS.md "Deploy and bench").
ifeq ($(strip $(TFLM_ROOT)),)
ifneq ($(filter-out print-elf clean,$(or $(MAKECMDGOALS),firmware)),)
$(error TFLM_ROOT is not set: set TFLM_ROOT to a tflite-micro checkout at {commit} \
(and FLATBUFFERS_ROOT to flatbuffers {fb}; \
CMSIS_NN_ROOT to CMSIS-NN {cmsis} for the CMSIS-NN kernels), e.g. TFLM_ROOT=third_party/tflite-micro make)
endif
endif
"""


def _generate_without_tflm(model: bytes, ops_info: list, board: str, out: Path, name: str, *,
                           arena_size: Optional[int], arena_margin: Optional[int], stack_size: int,
                           opt: str, mlperf_id: Optional[str] = None, input_format: Optional[str] = None) -> dict:
    """The project files of trec_tflm.target.firmware, written without a TFLM tree."""
    from trec_tflm.host import interpreter as runtime
    from trec_tflm.target import firmware

    core = firmware.board_core(board)
    kinds, calls = resolver_calls_without_tflm([op.name for op in ops_info])
    input_bytes = firmware._input_bytes(model)
    ml = firmware.mlperf_settings(model, mlperf_id, input_format)
    if arena_size is not None:
        arena, used, source, note = int(arena_size), None, "given", "given with --arena-size"
    else:
        est = estimate_arena(model, arena_margin)
        arena, used, source = est.total, est.need, "estimate"
        note = est.describe() + (f"; {'; '.join(est.notes)}" if est.notes else "") + \
            " (no TFLM_ROOT: not measured)"
    arena = _align(arena, 16)
    mk = dict(model_name=name, board=board, core=core, trec_root=paths.source_root(), stack_size=stack_size, opt=opt,
              db_capacity=input_bytes, extra_defines="", **_portable_makefile_settings(core))
    makefile = firmware._makefile(mk)
    guard = _NO_TFLM_GUARD.format(commit=runtime.TFLM_COMMIT, fb=runtime.FLATBUFFERS_TAG,
                                  cmsis=runtime.CMSIS_NN_COMMIT)
    makefile = makefile.replace("\ninclude $(TREC_ROOT)/boards/firmware.mk", guard +
                                "\ninclude $(TREC_ROOT)/boards/firmware.mk", 1)
    (out / "trec_app_model.cc").write_text(firmware._model_cc(model))
    (out / "trec_app_ops.cc").write_text(firmware._ops_cc(kinds, calls))
    (out / "trec_app_config.h").write_text(firmware._config_h(name, arena, len(kinds), 0, input_bytes,
                                                              mlperf_id=ml["mlperf_id"],
                                                              input_uint8=ml["input_format"] == "uint8",
                                                              output_softmax=ml["output_softmax"]))
    (out / "Makefile").write_text(makefile)
    info = dict(out_dir=str(out), board=board, core=core, model_name=name, model_bytes=len(model),
                model_sha256=hashlib.sha256(model).hexdigest(), operators=[op.name for op in ops_info],
                op_kinds=kinds, resolver_calls=calls, arena_size=arena, arena_used=used, arena_source=source,
                input_bytes=input_bytes, selftest_count=0, cmsis_nn=None, tflm_build_dir=None,
                arena_note=note, tflm="from the environment of make (generated without TFLM_ROOT)", **ml)
    return info


def deploy(model: Union[bytes, PathLike], board: str, out_dir: PathLike, *, name: Optional[str] = None,
           arena_size: Optional[int] = None, arena_margin: Optional[int] = None, measure_arena: bool = True,
           stack_size: int = DEFAULT_STACK, opt: str = "-O3", log=None, mlperf_id: Optional[str] = None,
           input_format: Optional[str] = None) -> DeployResult:
    """Write the firmware project of ``model`` for ``board`` into ``out_dir`` (see the module doc).
    ``mlperf_id``: the MLPerf Tiny model ID the firmware reports in ``m-model`` (ic01, kws01, vww01,
    ad01; None: the model name, which the MLPerf Tiny runner does not accept); ``input_format``:
    "int8" (``db`` bytes are the int8 input) or "uint8" (the MLPerf Tiny convention, value + 128;
    the default with ``mlperf_id``). See trec_tflm.target.mlperf."""
    from trec_tflm.target import firmware, mlperf

    check_board(board)
    source = None if isinstance(model, (bytes, bytearray, memoryview)) else Path(model)
    buf, ops_info = load_checked_model(model)
    if arena_size is not None and arena_size <= 0:
        raise DeployError(f"--arena-size must be positive, got {arena_size}")
    if arena_margin is not None and arena_margin < 0:
        raise DeployError(f"--arena-margin must be >= 0, got {arena_margin}")
    out = Path(out_dir).absolute()
    state = _project_dir_state(out)
    model_name = _model_name(name, source, buf)
    try:
        firmware.mlperf_settings(buf, mlperf_id, input_format)
    except mlperf.MlperfError as exc:
        raise DeployError(str(exc)) from None
    made_parent = None
    if not out.parent.exists():
        made_parent = next(p for p in [out.parent, *out.parent.parents] if p.parent.exists())
        out.parent.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.deploy-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        if _tflm_configured():
            try:
                info = firmware.generate_project(buf, board, tmp, name=model_name, arena_size=arena_size,
                                                 arena_margin=arena_margin, measure_arena=measure_arena,
                                                 stack_size=stack_size, opt=opt, mlperf_id=mlperf_id,
                                                 input_format=input_format).to_dict()
            except (firmware.FirmwareError, RuntimeError) as exc:
                raise DeployError(f"generating the project failed: {exc}", 1) from None
            except ValueError as exc:  # the model: refused, or TFLM crashed on it (isolate.NativeCrashError)
                raise DeployError(f"generating the project failed: {exc}", 2) from None
            # the measurement build lives in tmp/build; its paths die with the rename
            shutil.rmtree(tmp / "build", ignore_errors=True)
            src = info["arena_source"]
            if src == "given":
                info["arena_note"] = "given with --arena-size"
            elif src == "host-estimate":
                info["arena_note"] = (f"host TFLM runtime's need {info['arena_used']:,} B (64-bit, no QEMU to "
                                      f"measure on the core) + margin")
            else:
                info["arena_note"] = (f"measured on {src}: TFLM allocates {info['arena_used']:,} B, "
                                      f"+ margin {info['arena_size'] - info['arena_used']:,} B")
        else:
            info = _generate_without_tflm(buf, ops_info, board, tmp, model_name, arena_size=arena_size,
                                          arena_margin=arena_margin, stack_size=stack_size, opt=opt,
                                          mlperf_id=mlperf_id, input_format=input_format)
        info["out_dir"] = str(out)
        info["stack_size"] = stack_size
        info["generator"] = generator_fingerprint()
        info["source_model"] = None if source is None else str(source.resolve())
        (tmp / PROJECT_FILE).write_text(json.dumps(info, indent=1) + "\n")
        if state in ("project", "empty"):
            # keep the previous build (objects are keyed by absolute source paths, which stay the
            # same): a re-deploy then rebuilds only what changed
            if (out / "build").is_dir() and not (tmp / "build").exists():
                os.rename(out / "build", tmp / "build")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "p")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_parent is not None:
            shutil.rmtree(made_parent, ignore_errors=True)
        raise
    if log:
        log(f"deploy: wrote {out} for {board}")
    return DeployResult(out_dir=out, board=board, model_name=info["model_name"], operators=info["op_kinds"],
                        resolver_calls=info["resolver_calls"], arena_size=info["arena_size"],
                        arena_used=info["arena_used"], arena_source=info["arena_source"],
                        arena_note=info["arena_note"], mlperf_id=info["mlperf_id"],
                        input_format=info["input_format"], output_softmax=info["output_softmax"])


# ------------------------------------------------------------------------------------------------
# memory budget: arm-none-eabi-size -A + the linker map
# ------------------------------------------------------------------------------------------------
_NOT_LOADED = re.compile(r"^\.(debug|comment|ARM\.attributes|stab|gnu\.attributes|note)")
_FLASH_SECTIONS_ALSO = (".data",)   # in RAM, with its load image in flash


def parse_size_sysv(text: str) -> dict:
    """``arm-none-eabi-size -A`` (System V format) -> {section: (size, addr)} of loaded sections."""
    out = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() and parts[2].isdigit():
            if not _NOT_LOADED.match(parts[0]):
                out[parts[0]] = (int(parts[1]), int(parts[2]))
    if not out:
        raise DeployError("could not read the section sizes (arm-none-eabi-size -A printed no sections)", 1)
    return out


def parse_map(text: str) -> dict:
    """A GNU ld map -> {"regions": {name: (origin, length)}, "stack_size": int | None,
    "heap_min_size": int | None}."""
    regions = {}
    m = re.search(r"^Memory Configuration\s*\n\s*\nName\s+Origin\s+Length.*\n((?:.*\n)*?)\s*\n", text, re.M)
    if m:
        for ln in m.group(1).splitlines():
            parts = ln.split()
            if len(parts) >= 3 and parts[0] != "*default*":
                regions[parts[0]] = (int(parts[1], 16), int(parts[2], 16))
    res = {"regions": regions, "stack_size": None, "heap_min_size": None}
    for sym in ("stack_size", "heap_min_size"):
        s = re.search(rf"^\s+0x([0-9a-fA-F]+)\s+__{sym}\s*=", text, re.M)
        if s:
            res[sym] = int(s.group(1), 16)
    return res


def parse_linker_script_memory(text: str) -> dict:
    """MEMORY { NAME (attr) : ORIGIN = x, LENGTH = y } -> {name: (origin, length)}, and
    REGION_ALIAS targets."""
    def num(s: str) -> int:
        s = s.strip()
        mult = {"K": 1024, "M": 1024 * 1024}.get(s[-1:].upper(), 1)
        s = s[:-1] if mult > 1 else s
        return int(s, 0) * mult

    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    regions = {}
    for m in re.finditer(r"(\w+)\s*(?:\([^)]*\))?\s*:\s*ORIGIN\s*=\s*([0-9a-fA-FxX]+[KkMm]?)\s*,\s*"
                         r"LENGTH\s*=\s*([0-9a-fA-FxX]+[KkMm]?)", text):
        regions[m.group(1)] = (num(m.group(2)), num(m.group(3)))
    for m in re.finditer(r'REGION_ALIAS\(\s*"(\w+)"\s*,\s*(\w+)\s*\)', text):
        regions.setdefault(m.group(1), ("alias", m.group(2)))
    return regions


def board_memory(board: str) -> dict:
    """{"FLASH": (origin, bytes), "RAM": ..., optionally "CCMRAM"} from the board's linker script."""
    check_board(board)
    ld = paths.boards_dir() / board / f"{board}.ld"
    regions = parse_linker_script_memory(ld.read_text())
    return {k: v for k, v in regions.items() if k in ("FLASH", "RAM", "CCMRAM") and v[0] != "alias"}


_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def parse_link_overflow(text: str) -> list:
    """[(region, bytes over)] from a failed link's output (ld's "region `X' overflowed by N bytes",
    and the RAM ASSERT of boards/common/sections.ld with N unknown = -1)."""
    found = [(m.group(1), int(m.group(2))) for m in _OVERFLOW.finditer(text)]
    seen, out = set(), []
    for r in found:
        if r not in seen:
            seen.add(r)
            out.append(r)
    if not out and "RAM overflow: .data + .bss + HEAP_MIN_SIZE + STACK_SIZE" in text:
        out.append(("RAM", -1))
    return out


@dataclasses.dataclass
class RegionUse:
    region: str
    used: int
    size: int
    parts: dict

    @property
    def free(self) -> int:
        return self.size - self.used

    @property
    def fits(self) -> bool:
        return self.used <= self.size


@dataclasses.dataclass
class MemoryBudget:
    board: str
    regions: list           # RegionUse
    arena_size: Optional[int] = None

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.regions)

    def region(self, name: str) -> RegionUse:
        return next(r for r in self.regions if r.region == name)

    def summary(self) -> str:
        label = {"FLASH": "flash", "RAM": "RAM", "CCMRAM": "CCM"}
        lines = [f"memory on {self.board} (linked image; limits from boards/{self.board}/{self.board}.ld):"]
        for r in self.regions:
            pct = 100.0 * r.used / r.size if r.size else 0.0
            parts = " + ".join(f"{k} {v:,}" for k, v in r.parts.items() if v)
            state = f"free {r.free:,}" if r.fits else f"OVER BY {-r.free:,} BYTES"
            lines.append(f"  {label.get(r.region, r.region):<6}{r.used:>10,} of {r.size:>10,} B ({pct:5.1f} %)  "
                         f"{state}" + (f"   [{parts}]" if parts else ""))
        if self.arena_size:
            lines.append(f"  (RAM includes the tensor arena of {self.arena_size:,} B in .bss)")
        return "\n".join(lines)

    def failure(self) -> str:
        bad = [r for r in self.regions if not r.fits]
        return "; ".join(f"{r.region} needs {r.used:,} of {r.size:,} bytes: over by {-r.free:,}" for r in bad)


def memory_budget(sections: dict, regions: dict, *, board: str, stack_size: int, arena_size: Optional[int] = None,
                  ) -> MemoryBudget:
    """Flash / RAM / CCM use of a linked image: each loaded section counts in the region its
    address falls in (.data also in flash, its load image); RAM adds the main stack."""
    use = {name: {} for name in regions}

    def region_of(addr: int) -> Optional[str]:
        for name, (origin, length) in regions.items():
            if origin <= addr < origin + length:
                return name
        return None

    for sec, (size, addr) in sections.items():
        if size == 0:
            continue
        reg = region_of(addr)
        if reg is None:
            continue
        use[reg][sec] = use[reg].get(sec, 0) + size
        if sec in _FLASH_SECTIONS_ALSO and "FLASH" in use and reg != "FLASH":
            use["FLASH"][f"{sec} image"] = size
    if "RAM" in use:
        use["RAM"]["stack"] = int(stack_size)
    out = []
    for name in ("FLASH", "RAM", "CCMRAM"):
        if name in regions:
            parts = use[name]
            if name == "FLASH":
                code = sum(v for k, v in parts.items() if k != ".data image")
                parts = {"code+rodata": code, ".data image": parts.get(".data image", 0)}
            out.append(RegionUse(name, sum(parts.values()), regions[name][1], parts))
    return MemoryBudget(board, out, arena_size)


def elf_budget(elf: PathLike, board: str, *, arena_size: Optional[int] = None,
               stack_size: Optional[int] = None) -> MemoryBudget:
    """The budget of a linked ELF: ``arm-none-eabi-size -A``, the linker map beside it (regions,
    stack size), else the board's linker script."""
    elf = Path(elf)
    tool = shutil.which("arm-none-eabi-size")
    if tool is None:
        raise DeployError("arm-none-eabi-size is not installed (Debian: apt-get install gcc-arm-none-eabi "
                          "binutils-arm-none-eabi)", 1)
    proc = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"arm-none-eabi-size failed on {elf}: {proc.stderr.strip()}", 1)
    sections = parse_size_sysv(proc.stdout)
    regions = board_memory(board)
    mp = elf.with_suffix(".map")
    if mp.is_file():
        parsed = parse_map(mp.read_text(errors="replace"))
        regions = {k: v for k, v in parsed["regions"].items() if k in ("FLASH", "RAM", "CCMRAM")} or regions
        if stack_size is None:
            stack_size = parsed["stack_size"]
    return memory_budget(sections, regions, board=board, stack_size=stack_size or DEFAULT_STACK,
                         arena_size=arena_size)


def check_build_requirements() -> None:
    """DeployError (exit 2) when the ARM toolchain or the TFLM tree a build needs is missing."""
    from trec_tflm.host import interpreter as runtime
    from trec_tflm.target import qemu

    reason = qemu.skip_reason(need_qemu=False, need_toolchain=True)
    if reason:
        raise DeployError(f"--build needs the ARM toolchain: {reason}")
    if not _tflm_configured():
        raise DeployError(f"--build needs the TFLM tree: {runtime.TREE_HINT}; e.g. "
                          "TFLM_ROOT=third_party/tflite-micro FLATBUFFERS_ROOT=third_party/flatbuffers "
                          "CMSIS_NN_ROOT=third_party/CMSIS-NN (CMSIS-NN optional)")


def build_project(out_dir: PathLike, *, jobs: Optional[int] = None) -> tuple[Path, MemoryBudget]:
    """Build a deployed project; returns (ELF, memory budget). DeployError (exit 1) when the
    image does not fit, naming the region and by how much; (exit 2) when the toolchain or the
    TFLM tree is missing, saying what to install / set."""
    from trec_tflm.target import firmware

    out = Path(out_dir)
    proj = json.loads((out / PROJECT_FILE).read_text())
    check_build_requirements()
    try:
        elf = firmware.build(out, jobs=jobs)
    except firmware.FirmwareError as exc:
        text = str(exc)
        over = parse_link_overflow(text)
        if over:
            stack = int(proj.get("stack_size") or DEFAULT_STACK)

            def one(r, n):
                if n < 0:
                    return f"region {r} overflowed (.data + .bss + heap + the {stack:,}-byte stack)"
                extra = f" (its sections; the {stack:,}-byte main stack comes on top)" if r == "RAM" else ""
                return f"region {r} overflowed by {n:,} bytes{extra}"

            what = "; ".join(one(r, n) for r, n in over)
            tail = "\n".join(text.strip().splitlines()[-12:])
            raise DeployError(f"the firmware does not fit {proj['board']}: {what}. Arena {proj['arena_size']:,} "
                              "bytes; a smaller model, --arena-size or a board with more memory is needed.\n"
                              f"The linker said:\n{tail}", 1) from None
        raise DeployError(text, 1) from None
    budget = elf_budget(elf, proj["board"], arena_size=proj.get("arena_size"), stack_size=proj.get("stack_size"))
    return elf, budget


# ------------------------------------------------------------------------------------------------
# flashing
# ------------------------------------------------------------------------------------------------
def _board_mk_value(board: str, key: str) -> Optional[str]:
    m = re.search(rf"^{key}\s*:?=\s*(\S+)", (paths.boards_dir() / board / "board.mk").read_text(), re.M)
    return m.group(1) if m else None


def _openocd_scripts(openocd: str) -> list:
    """OpenOCD's script directory: <prefix>/share/openocd/scripts beside the executable (that is
    where a Debian or source install puts them), else the usual system places."""
    exe = Path(os.path.realpath(openocd))
    own = exe.parent.parent / "share" / "openocd" / "scripts"
    if own.is_dir():
        return [own]
    return [p for p in (Path("/usr/share/openocd/scripts"), Path("/usr/local/share/openocd/scripts")) if p.is_dir()]


def flash_command(tool: str, path: str, board: str, elf: Path, binary: Path) -> list:
    """The command line of one flashing tool for one board."""
    base = _board_mk_value(board, "BOARD_FLASH_BASE") or "0x08000000"
    if tool == "st-flash":
        return [path, "--reset", "write", str(binary), base]
    if tool == "openocd":
        cfg = _board_mk_value(board, "BOARD_OPENOCD_CFG")
        scripts = _openocd_scripts(path)
        if cfg and (not scripts or any((s / cfg).is_file() for s in scripts)):
            files = ["-f", cfg]
        else:
            files = ["-f", "interface/stlink.cfg", "-f", OPENOCD_TARGETS[board]]
        return [path, *files, "-c", f"program {elf} verify reset exit"]
    if tool == "pyocd":
        return [path, "flash", "-t", _board_mk_value(board, "BOARD_PYOCD_TARGET") or "", str(elf)]
    raise ValueError(tool)


def find_drive(board: str, roots: Optional[Sequence[PathLike]] = None) -> Optional[Path]:
    """The board's mounted ST-LINK drive (NODE_F746ZG / DIS_F469NI) under /media, /run/media, ...
    (``TREC_TFLM_MEDIA_ROOTS``, os.pathsep-separated, overrides the roots)."""
    label = DRIVE_LABELS[board]
    if roots is None:
        env = os.environ.get("TREC_TFLM_MEDIA_ROOTS")
        roots = env.split(os.pathsep) if env else MEDIA_ROOTS
    for root in roots:
        root = Path(root)
        for cand in (root / label, *root.glob(f"*/{label}"), *root.glob(f"*/*/{label}")):
            if cand.is_dir():
                return cand
    return None


_QEMU_FLASH_MESSAGE = ("--flash is for the STM32 boards (nucleo_f746zg, disco_f469ni); {board} is emulated by "
                       "QEMU, there is nothing to flash: run the firmware with `make -C OUT run` or "
                       "`trec-tflm bench --board {board} --elf OUT/build/{board}/trec_app.elf`")


def flash(elf: PathLike, board: str, *, media_roots: Optional[Sequence[PathLike]] = None,
          timeout: float = 300.0, log=print) -> str:
    """Flash a built image onto a connected STM32 board; returns what was used."""
    check_board(board)
    if board in QEMU_BOARDS:
        raise DeployError(_QEMU_FLASH_MESSAGE.format(board=board))
    elf = Path(elf)
    binary = elf.with_suffix(".bin")
    if not binary.is_file():
        raise DeployError(f"{binary} is missing: build first (--build)", 1)
    for tool in FLASH_TOOLS:
        path = shutil.which(tool)
        if path is None:
            continue
        cmd = flash_command(tool, path, board, elf, binary)
        log(f"deploy: flashing with {tool}: {' '.join(cmd)}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeployError(f"{tool} did not finish within {timeout:g} s (board connected? "
                              f"{' '.join(cmd)})", 1) from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise DeployError(f"{tool} failed (exit {proc.returncode}); is the board connected over its "
                              f"ST-LINK USB port, and do you have access to it (udev rules)?\n$ {' '.join(cmd)}\n"
                              f"{tail}", 1)
        return tool
    drive = find_drive(board, media_roots)
    if drive is not None:
        target = drive / binary.name
        log(f"deploy: copying {binary} to the ST-LINK drive {drive}")
        shutil.copyfile(binary, target)
        try:
            fd = os.open(target, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
        return f"copy to {drive}"
    roots = os.environ.get("TREC_TFLM_MEDIA_ROOTS", os.pathsep.join(MEDIA_ROOTS))
    raise DeployError(
        f"cannot flash {board}: none of {', '.join(FLASH_TOOLS)} is installed and no ST-LINK drive "
        f"{DRIVE_LABELS[board]} is mounted (looked under {roots}). Install one of: "
        + "; ".join(FLASH_PACKAGES) + f" - or connect the board and copy {binary} to its "
        f"{DRIVE_LABELS[board]} drive", 1)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]i?[bB]?|[bB])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 4096, 8K, 1M)")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * {"K": 1024, "M": 1024 * 1024}.get(unit, 1)


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the int8 .tflite (from trec-tflm convert)")
    p.add_argument("--board", required=True, help=f"one of {', '.join(BOARDS)}")
    p.add_argument("-o", "--out", required=True, help="project directory (new, or a previous deploy's: replaced)")
    p.add_argument("--build", action="store_true", help="build it with arm-none-eabi-gcc (needs TFLM_ROOT) and "
                   "print flash / RAM use against the board's memory")
    p.add_argument("--flash", action="store_true", help="build and flash it (st-flash, openocd, pyocd or the "
                   "ST-LINK drive; STM32 boards only)")
    p.add_argument("--arena-margin", type=_size, default=None, help="bytes added to the measured arena need "
                   "(default max(1 KiB, 2 %%) when measured on QEMU, 25 %% of the host need, 10 %% / 4 KiB "
                   "of the estimate without TFLM_ROOT); accepts 4096, 8K")
    p.add_argument("--arena-size", type=_size, default=None, help="tensor arena bytes, instead of measuring")
    p.add_argument("--name", help="model name the firmware reports in m-name-dut and info%% (default: the file name)")
    p.add_argument("--mlperf-id", choices=("ic01", "kws01", "vww01", "ad01"), help="MLPerf Tiny model ID the "
                   "firmware reports in m-model (profile%%), so the MLPerf Tiny runner picks its test script; "
                   "implies --input-format uint8. Without it m-model is the model name, which the runner "
                   "refuses (docs/BOARDS.md \"MLPerf Tiny runner\")")
    p.add_argument("--input-format", choices=("int8", "uint8"), help="what the db bytes are: int8 input values "
                   "(default without --mlperf-id; what trec-tflm bench adapts to either way) or uint8 = value + 128, "
                   "the MLPerf Tiny datasets' convention (default with --mlperf-id)")
    p.add_argument("--stack-size", type=_size, default=DEFAULT_STACK, help="main stack bytes (default 16K)")
    p.add_argument("--json", dest="json_path", help="write the project info and memory budget as JSON here")
    p.set_defaults(func=deploy_command)


def deploy_command(args) -> int:
    try:
        check_board(args.board)
        if args.flash and args.board in QEMU_BOARDS:
            raise DeployError(_QEMU_FLASH_MESSAGE.format(board=args.board))
        # before anything is written: a refused build must not leave a project behind
        if args.build or args.flash:
            check_build_requirements()
        if args.json_path:
            from trec_tflm.paths import check_output_file

            try:
                check_output_file(args.json_path, "--json")
            except ValueError as exc:
                raise DeployError(str(exc)) from None
        res = deploy(args.model, args.board, args.out, name=args.name, arena_size=args.arena_size,
                     arena_margin=args.arena_margin, stack_size=args.stack_size,
                     log=lambda s: print(s, file=sys.stderr), mlperf_id=args.mlperf_id,
                     input_format=args.input_format)
        if args.build or args.flash:
            print(f"deploy: building {res.out_dir} for {args.board} ...", file=sys.stderr, flush=True)
            res.elf, res.budget = build_project(res.out_dir)
        print(res.summary())
        if args.json_path:
            doc = {"project": json.loads((res.out_dir / PROJECT_FILE).read_text()),
                   "elf": None if res.elf is None else str(res.elf),
                   "budget": None if res.budget is None else {
                       r.region: {"used": r.used, "size": r.size, "parts": r.parts} for r in res.budget.regions}}
            Path(args.json_path).write_text(json.dumps(doc, indent=1) + "\n")
        if res.budget is not None and not res.budget.fits:
            print(f"deploy: error: the image does not fit {args.board}: {res.budget.failure()}", file=sys.stderr)
            return 1
        if args.flash:
            res.flashed_with = flash(res.elf, args.board, log=lambda s: print(s, file=sys.stderr))
            print(f"flashed  {args.board} with {res.flashed_with}")
        return 0
    except DeployError as exc:
        print(f"trec-tflm deploy: error: {exc}", file=sys.stderr)
        return exc.exit_code

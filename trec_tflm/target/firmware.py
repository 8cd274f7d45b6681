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

:func:`build` builds it and returns the ELF. The app speaks the EEMBC / MLPerf Tiny protocol
(``trec-tflm bench``) and reports per-operator ticks with ``ops%``; see docs/TFLM.md.

Typical use (what ``trec-tflm deploy`` calls)::

    from trec_tflm import firmware
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
from trec_tflm.spec.op import TREC_CUSTOM_CODE

APP_NAME = "trec_app"

#: The QEMU board with the same core (and so the same TFLM build and arena use) as each board.
QEMU_TWIN = {"qemu_m7": "qemu_m7", "qemu_m4": "qemu_m4", "nucleo_f746zg": "qemu_m7", "disco_f469ni": "qemu_m4"}

#: Arena size the measurement build uses (the app then reports what it really needs).
PROBE_ARENA = 256 * 1024

PathLike = Union[str, os.PathLike]


class FirmwareError(RuntimeError):
    """A project could not be generated or built."""


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
# boards and operators
# ------------------------------------------------------------------------------------------------
def boards() -> list[str]:
    return sorted(p.parent.name for p in paths.boards_dir().glob("*/board.mk"))


def board_core(board: str) -> str:
    """tflm.mk core target (m4, m7, ...) of a board, from its board.mk's -mcpu."""
    mk = paths.boards_dir() / board / "board.mk"
    if not mk.is_file():
        raise FirmwareError(f"unknown board {board!r}; boards: {', '.join(boards())}")
    m = re.search(r"-mcpu=cortex-(m0plus|m3|m4|m7|m33|m55)\b", mk.read_text())
    if not m:
        raise FirmwareError(f"{mk} has no -mcpu=cortex-m... in BOARD_CPU_FLAGS")
    return m.group(1)


def resolver_methods(tflm_root: Optional[PathLike] = None) -> tuple[dict, dict]:
    """(builtin name -> AddXxx method, custom code -> AddXxx method) of TFLM's
    MicroMutableOpResolver, read from the TFLM tree's header."""
    root = runtime.check_tflm_tree(None if tflm_root is None else Path(tflm_root))
    text = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    builtin, custom = {}, {}
    for name, body in re.findall(r"TfLiteStatus\s+(Add\w+)\s*\([^{]*\)\s*\{(.*?)\n  \}", text, re.S):
        b = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body)
        c = re.search(r'AddCustom\(\s*"([^"]+)"', body)
        if b and name not in ("AddBuiltin", "AddCustom"):
            builtin.setdefault(b.group(1), name)
        elif c:
            custom.setdefault(c.group(1), name)
    custom[TREC_CUSTOM_CODE] = "tflite::AddTrecConv2D"
    return builtin, custom


def resolver_calls(model: bytes, tflm_root: Optional[PathLike] = None) -> tuple[list, list]:
    """(distinct operators in order of first use, the C++ statements that register them)."""
    builtin, custom = resolver_methods(tflm_root)
    custom_codes = runtime._is_custom(model)
    kinds: list = []
    for op in runtime.model_operators(model):
        if op not in kinds:
            kinds.append(op)
    calls = []
    for op in kinds:
        if op == TREC_CUSTOM_CODE:
            calls.append("tflite::AddTrecConv2D(resolver)")
        elif op in custom_codes:
            if op not in custom:
                raise FirmwareError(f"the model uses custom operator {op!r}, which TFLM's resolver does not know")
            calls.append(f"resolver.{custom[op]}()")
        elif op in builtin:
            calls.append(f"resolver.{builtin[op]}()")
        else:
            raise FirmwareError(f"the model uses operator {op}, for which TFLM has no MicroMutableOpResolver "
                                "method at this commit")
    return kinds, calls


# ------------------------------------------------------------------------------------------------
# generated sources
# ------------------------------------------------------------------------------------------------
_HEADER = "/* Generated by trec_tflm.target.firmware.generate_project. Do not edit: regenerate. */\n"


def c_array(data: bytes, name: str, *, align: int = 16, ctype: str = "unsigned char",
            section: Optional[str] = None) -> str:
    """``alignas(align) const <ctype> name[] = {...};`` with 16 bytes a line."""
    attr = f' __attribute__((section("{section}")))' if section else ""
    lines = [f"alignas({align}) const {ctype} {name}[]{attr} = {{"]
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    lines.append("};")
    return "\n".join(lines) + "\n"


def _sanitize_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:48]
    return s or "model"


def _config_h(model_name: str, arena: int, op_count: int, selftest_count: int, input_bytes: int, *,
              mlperf_id: Optional[str] = None, input_uint8: bool = False, output_softmax: bool = False) -> str:
    return (_HEADER + "#ifndef TREC_APP_CONFIG_H_\n#define TREC_APP_CONFIG_H_\n\n"
            f'#define TREC_APP_MODEL_NAME "{model_name}"\n'
            f"#define TREC_APP_ARENA_SIZE {arena}u\n"
            f"#define TREC_APP_OP_COUNT {op_count}\n"
            f"#define TREC_APP_SELFTEST_COUNT {selftest_count}\n"
            f"#define TREC_APP_INPUT_BYTES {input_bytes}u\n"
            "/* m-model of profile% (\"\": the model name), db bytes = int8 value + 128, m-results = softmax */\n"
            f'#define TREC_APP_MLPERF_ID "{mlperf_id or ""}"\n'
            f"#define TREC_APP_INPUT_UINT8 {int(bool(input_uint8))}\n"
            f"#define TREC_APP_OUTPUT_SOFTMAX {int(bool(output_softmax))}\n\n#endif\n")


def mlperf_settings(model: bytes, mlperf_id: Optional[str], input_format: Optional[str]) -> dict:
    """What the app reports to the MLPerf Tiny runner (trec_tflm.target.mlperf): the checked model ID,
    the input byte convention (default uint8 with an ID, int8 without) and whether m-results
    is the softmax of the outputs (models ending in logits)."""
    from trec_tflm.target import mlperf

    if mlperf_id is not None:
        mlperf.check_mlperf_id(mlperf_id, model)
    fmt = input_format or ("uint8" if mlperf_id else "int8")
    if fmt not in mlperf.INPUT_FORMATS:
        raise mlperf.MlperfError(f"input format {fmt!r}: choose one of {', '.join(mlperf.INPUT_FORMATS)}")
    return dict(mlperf_id=mlperf_id, input_format=fmt, output_softmax=mlperf.output_is_logits(model))


def _ops_cc(kinds: Sequence[str], calls: Sequence[str]) -> str:
    body = "".join(f"  TF_LITE_ENSURE_STATUS({c});  // {k}\n" for k, c in zip(kinds, calls))
    return (_HEADER + '#include <new>\n\n#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
            '#include "trec_app.h"\n#include "trec_app_config.h"\n#include "trec_conv.h"\n\n'
            "TfLiteStatus TrecAppRegisterOps(tflite::MicroMutableOpResolver<TREC_APP_OP_COUNT>& resolver) {\n"
            + body + "  return kTfLiteOk;\n}\n\n"
            "// The resolver, built on first use (not at static initialisation).\n"
            "tflite::MicroOpResolver* TrecAppResolver() {\n"
            "  using Resolver = tflite::MicroMutableOpResolver<TREC_APP_OP_COUNT>;\n"
            "  alignas(Resolver) static unsigned char mem[sizeof(Resolver)];\n"
            "  static Resolver* resolver = nullptr;\n"
            "  if (resolver == nullptr) {\n"
            "    resolver = new (mem) Resolver();\n"
            "    if (TrecAppRegisterOps(*resolver) != kTfLiteOk) return nullptr;\n"
            "  }\n"
            "  return resolver;\n}\n")


def _model_cc(model: bytes) -> str:
    return (_HEADER + '#include "trec_app.h"\n\n' + c_array(model, "g_trec_app_model")
            + f"const unsigned int g_trec_app_model_len = {len(model)}u;\n")


def _selftest_cc(inputs: np.ndarray) -> str:
    data = np.ascontiguousarray(inputs, dtype=np.int8).tobytes()
    return (_HEADER + '#include <stdint.h>\n\nextern "C" const int8_t g_trec_app_selftest_inputs[];\n'
            + c_array(data, "g_trec_app_selftest_inputs", align=16, ctype="int8_t").replace("0x", "(int8_t)0x"))


def _makefile(info: dict) -> str:
    q = {k: str(v) for k, v in info.items()}
    return f"""# Generated by trec_tflm.target.firmware.generate_project: {q['model_name']} for {q['board']}.
#   make                build the TFLM libraries (once) and the app -> build/$(BOARD)/{APP_NAME}.elf
#   make run            run the app in QEMU (QEMU boards; type name% ... or use trec-tflm bench)
#   make SELFTEST=1     the self-test variant (runs the built-in inputs, prints, exits)
#   make size           flash / RAM use
# Boards with the same core ({q['core']}) can be chosen with BOARD=...; regenerate for another core.
TREC_ROOT        := {q['trec_root']}
PROJECT_DIR      := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BOARD            ?= {q['board']}
TFLM_CORE        := {q['core']}
# The trees and the TFLM build this project was generated with (regenerate to change them).
TFLM_ROOT        := {q['tflm_root']}
FLATBUFFERS_ROOT := {q['flatbuffers_root']}
CMSIS_NN_ROOT    := {q['cmsis_nn_root']}
TFLM_BUILD_ROOT  := {q['build_root']}
TFLM_BUILD_DIR   := {q['tflm_build_dir']}
TFLM_LIB_FILES   := $(TFLM_BUILD_DIR)/libtrec_app.a $(TFLM_BUILD_DIR)/libtflm_kernels.a $(TFLM_BUILD_DIR)/libtflm_core.a
TFLM_MK_ARGS     := -f $(TREC_ROOT)/tflm_ops/tflm.mk TARGET=$(TFLM_CORE) TFLM_ROOT=$(TFLM_ROOT) \\
                    FLATBUFFERS_ROOT=$(FLATBUFFERS_ROOT) BUILD_ROOT=$(TFLM_BUILD_ROOT) \\
                    CMSIS_NN_ROOT=$(CMSIS_NN_ROOT)

APP          := {APP_NAME}
SELFTEST     ?= 0
# The model-independent app is built once per core by tflm_ops/tflm.mk into libtrec_app.a:
#   boards/app/main.cc boards/app/trec_app_profiler.cc tflm_ops/tflm/trec_conv.cc tflm_ops/src/*.c
# The project compiles the per-model part only.
APP_SRCS     := $(TREC_ROOT)/boards/app/trec_app_project.cc $(TREC_ROOT)/boards/common/eembc/ee_protocol.c \\
                $(PROJECT_DIR)/trec_app_model.cc $(PROJECT_DIR)/trec_app_ops.cc \\
                $(wildcard $(PROJECT_DIR)/trec_app_selftest.cc)
INCLUDE_DIRS := $(PROJECT_DIR) $(TREC_ROOT)/boards/app $(TREC_ROOT)/boards/common/eembc \\
                {q['app_includes']}
APP_FLAGS    := {q['app_flags']}
EXTRA_CFLAGS   += $(APP_FLAGS)
EXTRA_CXXFLAGS += $(APP_FLAGS) -Wno-unused-parameter
DEFINES      += EE_DB_CAPACITY={q['db_capacity']}u {q['extra_defines']}
# A scratch budget changes the kernel glue: compile it here (it then takes precedence over the library's).
APP_SRCS     += $(if $(filter TREC_SCRATCH_BUDGET=%,$(DEFINES)),$(TREC_ROOT)/tflm_ops/tflm/trec_conv.cc)
LIBS         += -Wl,--start-group $(TFLM_LIB_FILES) -Wl,--end-group
STACK_SIZE   ?= {q['stack_size']}
OPT          ?= {q['opt']}
ifeq ($(SELFTEST),1)
DEFINES      += TREC_APP_SELFTEST
BUILD_DIR    ?= $(PROJECT_DIR)/build/$(BOARD)-selftest
else
BUILD_DIR    ?= $(PROJECT_DIR)/build/$(BOARD)
endif

include $(TREC_ROOT)/boards/firmware.mk

ifeq ($(filter -mcpu=cortex-$(TFLM_CORE),$(BOARD_CPU_FLAGS)),)
$(error BOARD=$(BOARD) is not a Cortex-$(TFLM_CORE) board: this project's TFLM libraries are for \
$(TFLM_CORE); regenerate it for $(BOARD))
endif

# The TFLM libraries first (a no-op once built), then the app.
.DEFAULT_GOAL := firmware
.PHONY: firmware tflm-libs
firmware: tflm-libs
\t+@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) all
tflm-libs:
\t+@$(MAKE) --no-print-directory $(TFLM_MK_ARGS) lib
$(TFLM_LIB_FILES):
\t+@$(MAKE) --no-print-directory $(TFLM_MK_ARGS) lib
$(ELF): $(TFLM_LIB_FILES)
"""


# ------------------------------------------------------------------------------------------------
# generate / build
# ------------------------------------------------------------------------------------------------
def _tree_settings(core: str, cmsis_nn: bool) -> dict:
    root = runtime.check_tflm_tree()
    cmsis = os.environ.get("CMSIS_NN_ROOT", "") if cmsis_nn else ""
    extra: list = []
    bdir = runtime.target_build_dir(core, cmsis_nn=bool(cmsis), extra=extra)
    flags = runtime.run_make(core, "print-app-flags", cmsis_nn=bool(cmsis), extra=extra).strip().splitlines()[-1]
    incs = runtime.run_make(core, "print-app-includes", cmsis_nn=bool(cmsis), extra=extra).strip().splitlines()[-1]
    flat = next((Path(p).parent for p in incs.split() if p.endswith("/include") and "flatbuffers" in p), None)
    return dict(tflm_root=str(root), cmsis_nn_root=cmsis,
                flatbuffers_root=os.environ.get("FLATBUFFERS_ROOT") or (str(flat) if flat else ""),
                build_root=str(runtime.build_root()), tflm_build_dir=str(bdir), app_flags=flags,
                app_includes=incs, cmsis_nn=bool(cmsis))


def _input_bytes(model: bytes) -> int:
    schema = runtime._schema()
    m = schema.Model.GetRootAsModel(model, 0)
    sg = m.Subgraphs(0)
    t = sg.Tensors(sg.Inputs(0))
    n = int(np.prod([t.Shape(i) for i in range(t.ShapeLength())])) if t.ShapeLength() else 1
    size = {schema.TensorType.INT8: 1, schema.TensorType.UINT8: 1, schema.TensorType.INT16: 2,
            schema.TensorType.FLOAT32: 4, schema.TensorType.INT32: 4}.get(t.Type(), 1)
    return n * size


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
    from trec_tflm.spec.validate import ModelValidationError, validate_model

    try:
        validate_model(model)  # what the board's TFLM will read without checking
    except ModelValidationError as exc:
        raise FirmwareError(str(exc)) from None
    core = board_core(board)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kinds, calls = resolver_calls(model)
    operators = runtime.model_operators(model)
    settings = _tree_settings(core, cmsis_nn)
    input_bytes = _input_bytes(model)
    model_name = _sanitize_name(name or "model_" + hashlib.sha256(model).hexdigest()[:8])
    ml = mlperf_settings(model, mlperf_id, input_format)

    selftest_count = 0
    if selftest_inputs is not None:
        x = np.asarray(selftest_inputs)
        if x.dtype != np.int8:
            raise FirmwareError(f"selftest_inputs must be int8, got {x.dtype}")
        if x.size % input_bytes:
            raise FirmwareError(f"selftest_inputs ({x.size} values) are not a whole number of "
                                f"{input_bytes}-byte inputs")
        selftest_count = x.size // input_bytes
        (out / "trec_app_selftest.cc").write_text(_selftest_cc(x.reshape(selftest_count, input_bytes)))
    else:
        (out / "trec_app_selftest.cc").unlink(missing_ok=True)

    defines = []
    if scratch_budget is not None:
        defines.append(f"TREC_SCRATCH_BUDGET={int(scratch_budget)}")
    mk = dict(model_name=model_name, board=board, core=core, trec_root=paths.source_root(), stack_size=stack_size,
              opt=opt, db_capacity=input_bytes, extra_defines=" ".join(defines), **settings)
    (out / "trec_app_model.cc").write_text(_model_cc(model))
    (out / "trec_app_ops.cc").write_text(_ops_cc(kinds, calls))
    (out / "Makefile").write_text(_makefile(mk))

    def write_config(arena: int):
        (out / "trec_app_config.h").write_text(_config_h(model_name, arena, len(kinds), selftest_count, input_bytes,
                                                         input_uint8=ml["input_format"] == "uint8",
                                                         mlperf_id=ml["mlperf_id"],
                                                         output_softmax=ml["output_softmax"]))

    def make_info(arena: int, used: Optional[int], source: str) -> ProjectInfo:
        info = ProjectInfo(out_dir=out, board=board, core=core, model_name=model_name, model_bytes=len(model),
                           model_sha256=hashlib.sha256(model).hexdigest(), operators=operators, op_kinds=kinds,
                           resolver_calls=calls, arena_size=arena, arena_used=used, arena_source=source,
                           input_bytes=input_bytes, selftest_count=selftest_count,
                           cmsis_nn=settings["cmsis_nn"], tflm_build_dir=settings["tflm_build_dir"], **ml)
        (out / "project.json").write_text(json.dumps(info.to_dict(), indent=1) + "\n")
        return info

    used: Optional[int] = None
    if arena_size is not None:
        arena, source = int(arena_size), "given"
    else:
        twin = QEMU_TWIN.get(board)
        from trec_tflm.target import qemu

        if measure_arena and twin is not None and qemu.skip_reason() is None:
            write_config(PROBE_ARENA)
            make_info(PROBE_ARENA, None, "probe")
            used = measure_arena_use(out, twin, timeout=timeout)
            source = twin
            margin = arena_margin if arena_margin is not None else max(1024, used // 50)
        else:
            from trec_tflm.host.isolate import run_isolated

            used = run_isolated(host_arena_need, model, what="measuring the arena in the host TFLM runtime",
                                timeout=timeout)
            source = "host-estimate"
            margin = arena_margin if arena_margin is not None else max(4096, used // 4)
        arena = used + margin
    arena = (arena + 15) // 16 * 16
    write_config(arena)
    return make_info(arena, used, source)


def load_project(out_dir: PathLike) -> dict:
    p = Path(out_dir) / "project.json"
    if not p.is_file():
        raise FirmwareError(f"{out_dir} is not a generated firmware project (no project.json)")
    return json.loads(p.read_text())


def build(out_dir: PathLike, board: Optional[str] = None, *, selftest: bool = False,
          jobs: Optional[int] = None, timeout: float = 3600.0, extra_make_args: Sequence[str] = ()) -> Path:
    """Build a generated project (TFLM libraries first, once); returns the ELF's path.
    ``board`` defaults to the project's; another board needs the same core."""
    from trec_tflm.target import qemu

    reason = qemu.skip_reason(need_qemu=False, need_toolchain=True)
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
    from trec_tflm.target import qemu

    proj = load_project(out_dir)
    board = board or QEMU_TWIN.get(proj["board"], proj["board"])
    if board not in qemu.QEMU_BOARDS:
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
    from trec_tflm.target import qemu

    elf = build(out_dir, qemu_board, timeout=timeout)
    res = qemu.run_elf(elf, qemu_board, timeout=120.0, stdin_bytes=b"exit%")
    info = parse_boot_line(res.stdout)
    if res.exit_code != 0:
        raise FirmwareError(f"the app on {qemu_board} exited with {res.exit_code}:\n{res.stdout[-2000:]}")
    return info["arena_used"]

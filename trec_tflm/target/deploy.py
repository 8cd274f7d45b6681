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
  :func:`trec_tflm.target.arena.estimate_arena` and a Makefile that takes ``TFLM_ROOT``,
  ``FLATBUFFERS_ROOT`` and ``CMSIS_NN_ROOT`` from the environment when ``make`` runs. The
  resolver's method names come from :data:`trec_tflm.target.resolver.RESOLVER_BUILTINS` (TFLM's
  MicroMutableOpResolver at the pinned commit; the TFLM-tier tests check the table against the header).

Refused: files that are not ``.tflite`` flatbuffers, TREC_CONV_2D operators with unknown options
(``trec_tflm.spec.model``), unknown boards, and an ``-o`` directory that exists and is not a
project this command wrote (a previous project is replaced). The project is written to a
temporary directory beside ``-o`` and renamed into place, so a failure leaves nothing at ``-o``.

This module is the command and the orchestration; the parts are trec_tflm.target.boards (the board
table), .resolver, .arena, .sources and .firmware (generation), .memory (the memory budget) and .flash
(build and flash). Their public names stay importable from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

from trec_tflm import paths
from trec_tflm.host.interpreter import Runtime
from trec_tflm.spec import model as tm
from trec_tflm.spec.op import TREC_CUSTOM_CODE
from trec_tflm.spec.validate import validate_model
from trec_tflm.target import arena as arena_mod
from trec_tflm.target import firmware, mlperf, sources

# The parts deploy is made of: their public names stay importable from here (the API before the split).
from trec_tflm.target.arena import (  # noqa: F401
    ARENA_ALIGN,
    ARENA_FIXED,
    ARENA_PER_CHANNEL,
    ARENA_PER_OP,
    ARENA_PER_TENSOR,
    ArenaEstimate,
    align,
    estimate_arena,
)
from trec_tflm.target.boards import QEMU_BOARDS, REAL_BOARDS, check_board  # noqa: F401
from trec_tflm.target.errors import DeployError  # noqa: F401
from trec_tflm.target.flash import (  # noqa: F401
    FLASH_PACKAGES,
    FLASH_TOOLS,
    MEDIA_ROOTS,
    QEMU_FLASH_MESSAGE,
    build_project,
    check_build_requirements,
    find_drive,
    flash,
    flash_command,
    tflm_configured,
)
from trec_tflm.target.memory import (  # noqa: F401
    MemoryBudget,
    RegionUse,
    board_memory,
    elf_budget,
    memory_budget,
    parse_link_overflow,
    parse_linker_script_memory,
    parse_map,
    parse_size_sysv,
)
from trec_tflm.target.resolver import (  # noqa: F401
    METHOD_EXCEPTIONS,
    RESOLVER_BUILTINS,
    resolver_calls_without_tflm,
    resolver_method,
)
from trec_tflm.target.sources import APP_NAME, DEFAULT_STACK, PROJECT_FILE, sanitize_name  # noqa: F401

#: The board names (the table is trec_tflm.target.boards.BOARDS).
BOARDS = REAL_BOARDS + QEMU_BOARDS

#: The modules whose code decides what a generated project contains: a project cached by
#: trec-tflm bench is regenerated when any of them changes (generator_fingerprint).
GENERATOR_MODULES = ("deploy.py", "firmware.py", "sources.py", "resolver.py", "arena.py", "boards.py", "mlperf.py")

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def load_checked_model(model: Union[bytes, PathLike]) -> tuple[bytes, list]:
    """The model's bytes and operators, refusing anything TFLM or our kernel would refuse later:
    not a file / not ``.tflite``, not a TFLite flatbuffer, TREC_CONV_2D with unknown or bad options."""
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
    grown: Optional[dict] = None  # --grow-scratch: {TREC layer: (scratch before, after)}

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
        if self.grown is not None:
            grown = ", ".join(f"{layer} grown {a:,} -> {b:,} B" for layer, (a, b) in self.grown.items())
            lines.append(f"scratch  {grown or 'no TREC layer has room to grow'} (--grow-scratch)")
        if self.elf is not None:
            lines.append(f"elf      {self.elf}")
        if self.budget is not None:
            lines.append(self.budget.summary())
        if self.flashed_with:
            lines.append(f"flashed  with {self.flashed_with}")
        return "\n".join(lines)


def generator_fingerprint() -> str:
    """Hash of the code that writes projects (:data:`GENERATOR_MODULES`, the app's file list): a cached
    project written by other code is regenerated, not reused."""
    h = hashlib.sha256()
    for name in GENERATOR_MODULES:
        h.update((Path(__file__).parent / name).read_bytes())
    for p in sorted((paths.boards_dir() / "app").glob("*")):
        h.update(p.name.encode())
    return h.hexdigest()[:16]


def firmware_name(path: PathLike) -> str:
    """Model name a firmware reports for a .tflite path (its sanitized file name stem)."""
    return sanitize_name(Path(path).stem)


def _model_name(name: Optional[str], source: Optional[Path], model: bytes) -> str:
    if name:
        return sanitize_name(name)
    if source is not None:
        return sanitize_name(source.stem)
    return sanitize_name("model_" + hashlib.sha256(model).hexdigest()[:8])


def _generate_without_tflm(model: bytes, ops_info: list, board: str, out: Path, name: str, *,
                           arena_size: Optional[int], arena_margin: Optional[int], stack_size: int,
                           opt: str, mlperf_id: Optional[str] = None, input_format: Optional[str] = None) -> dict:
    """The project files of trec_tflm.target.firmware, written without a TFLM tree."""
    core = firmware.board_core(board)
    kinds, calls = resolver_calls_without_tflm([op.name for op in ops_info])
    input_bytes = firmware.input_bytes(model)
    ml = firmware.mlperf_settings(model, mlperf_id, input_format)
    if arena_size is not None:
        arena, used, source, note = int(arena_size), None, "given", "given with --arena-size"
    else:
        est = estimate_arena(model, arena_margin)
        arena, used, source = est.total, est.need, "estimate"
        note = est.describe() + (f"; {'; '.join(est.notes)}" if est.notes else "") + \
            " (no TFLM_ROOT: not measured)"
    arena = align(arena, 16)
    mk = dict(model_name=name, board=board, core=core, trec_root=paths.source_root(), stack_size=stack_size, opt=opt,
              db_capacity=input_bytes, extra_defines="", **sources.portable_makefile_settings(core))
    (out / "trec_app_model.cc").write_text(sources.model_cc(model))
    (out / "trec_app_ops.cc").write_text(sources.ops_cc(kinds, calls))
    (out / "trec_app_config.h").write_text(sources.config_h(name, arena, len(kinds), 0, input_bytes,
                                                            mlperf_id=ml["mlperf_id"],
                                                            input_uint8=ml["input_format"] == "uint8",
                                                            output_softmax=ml["output_softmax"]))
    (out / "Makefile").write_text(sources.makefile(mk, preamble=sources.no_tflm_guard()))
    info = dict(out_dir=str(out), board=board, core=core, model_name=name, model_bytes=len(model),
                model_sha256=hashlib.sha256(model).hexdigest(), operators=[op.name for op in ops_info],
                op_kinds=kinds, resolver_calls=calls, arena_size=arena, arena_used=used, arena_source=source,
                input_bytes=input_bytes, selftest_count=0, cmsis_nn=None, tflm_build_dir=None,
                arena_note=note, tflm="from the environment of make (generated without TFLM_ROOT)", **ml)
    return info


def deploy(model: Union[bytes, PathLike], board: str, out_dir: PathLike, *, name: Optional[str] = None,
           arena_size: Optional[int] = None, arena_margin: Optional[int] = None, measure_arena: bool = True,
           stack_size: int = DEFAULT_STACK, opt: str = "-O3", log=None, mlperf_id: Optional[str] = None,
           input_format: Optional[str] = None, grow_scratch: bool = False) -> DeployResult:
    """Write the firmware project of ``model`` for ``board`` into ``out_dir`` (see the module doc).
    ``mlperf_id``: the MLPerf Tiny model ID the firmware reports in ``m-model`` (ic01, kws01, vww01,
    ad01; None: the model name, which the MLPerf Tiny runner does not accept); ``input_format``:
    "int8" (``db`` bytes are the int8 input) or "uint8" (the MLPerf Tiny convention, value + 128;
    the default with ``mlperf_id``). See trec_tflm.target.mlperf. ``grow_scratch``: embed the model
    with its TREC layers grown into the arena's free room (trec_tflm.target.arena.grow_scratch:
    faster plans, the same outputs; the arena as the host TFLM lays it out, or the estimate without
    a TFLM tree, unchanged)."""
    check_board(board)
    source = None if isinstance(model, (bytes, bytearray, memoryview)) else Path(model)
    buf, ops_info = load_checked_model(model)
    grown = None
    if grow_scratch:
        g = arena_mod.grow_scratch(buf, arena=_host_arena if tflm_configured() else None)
        buf, grown = g.tflite, g.layers
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
        if tflm_configured():
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
                        input_format=info["input_format"], output_softmax=info["output_softmax"], grown=grown)


def _host_arena(buf: bytes) -> int:
    return Runtime(buf).arena_used_bytes()


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
    p.add_argument("--grow-scratch", action="store_true", help="give TREC layers off the arena's peak the room "
                   "beside them (their scratch_budget option): faster plans, the same outputs, the same arena "
                   "(docs/BENCHMARKS.md \"Scratch in the arena's free room\")")
    p.add_argument("--json", dest="json_path", help="write the project info and memory budget as JSON here")
    p.set_defaults(func=deploy_command)


def deploy_command(args) -> int:
    try:
        check_board(args.board)
        if args.flash and args.board in QEMU_BOARDS:
            raise DeployError(QEMU_FLASH_MESSAGE.format(board=args.board))
        # before anything is written: a refused build must not leave a project behind
        if args.build or args.flash:
            check_build_requirements()
        if args.json_path:
            try:
                paths.check_output_file(args.json_path, "--json")
            except ValueError as exc:
                raise DeployError(str(exc)) from None
        res = deploy(args.model, args.board, args.out, name=args.name, arena_size=args.arena_size,
                     arena_margin=args.arena_margin, stack_size=args.stack_size,
                     log=lambda s: print(s, file=sys.stderr), mlperf_id=args.mlperf_id,
                     input_format=args.input_format, grow_scratch=args.grow_scratch)
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

"""Building a deployed project (with its memory budget) and flashing it onto an STM32 board:
st-flash, openocd or pyocd, else a copy of the .bin to the board's ST-LINK drive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from trec_tflm.host import tflm_build
from trec_tflm.target import boards, firmware, toolchain
from trec_tflm.target.boards import QEMU_BOARDS
from trec_tflm.target.errors import DeployError, FirmwareError
from trec_tflm.target.memory import MemoryBudget, elf_budget, parse_link_overflow
from trec_tflm.target.sources import DEFAULT_STACK, PROJECT_FILE

#: Flashing tools, in the order they are tried.
FLASH_TOOLS = ("st-flash", "openocd", "pyocd")
FLASH_PACKAGES = ("stlink-tools (Debian: apt-get install stlink-tools; provides st-flash)",
                  "openocd (Debian: apt-get install openocd)",
                  "pyocd (pip install pyocd; then pyocd pack install <device>)")
#: Where mounted USB drives appear (Linux desktops, udisks, plain mounts, macOS).
MEDIA_ROOTS = ("/media", "/run/media", "/mnt", "/Volumes")

PathLike = Union[str, os.PathLike]


def tflm_configured() -> bool:
    """A TFLM tree is named (``TFLM_ROOT``): projects are generated and built against it."""
    return bool(os.environ.get("TFLM_ROOT", "").strip())


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------
def check_build_requirements() -> None:
    """DeployError (exit 2) when the ARM toolchain or the TFLM tree a build needs is missing."""
    reason = toolchain.skip_reason(need_qemu=False, need_toolchain=True)
    if reason:
        raise DeployError(f"--build needs the ARM toolchain: {reason}")
    if not tflm_configured():
        raise DeployError(f"--build needs the TFLM tree: {tflm_build.TREE_HINT}; e.g. "
                          "TFLM_ROOT=third_party/tflite-micro FLATBUFFERS_ROOT=third_party/flatbuffers "
                          "CMSIS_NN_ROOT=third_party/CMSIS-NN (CMSIS-NN optional)")


def build_project(out_dir: PathLike, *, jobs: Optional[int] = None) -> tuple[Path, MemoryBudget]:
    """Build a deployed project; returns (ELF, memory budget). DeployError (exit 1) when the
    image does not fit, naming the region and by how much; (exit 2) when the toolchain or the
    TFLM tree is missing, saying what to install / set."""
    out = Path(out_dir)
    proj = json.loads((out / PROJECT_FILE).read_text())
    check_build_requirements()
    try:
        elf = firmware.build(out, jobs=jobs)
    except FirmwareError as exc:
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
    base = boards.board_mk_value(board, "BOARD_FLASH_BASE") or "0x08000000"
    if tool == "st-flash":
        return [path, "--reset", "write", str(binary), base]
    if tool == "openocd":
        cfg = boards.board_mk_value(board, "BOARD_OPENOCD_CFG")
        scripts = _openocd_scripts(path)
        if cfg and (not scripts or any((s / cfg).is_file() for s in scripts)):
            files = ["-f", cfg]
        else:
            files = ["-f", "interface/stlink.cfg", "-f", boards.BOARDS[board].openocd_target]
        return [path, *files, "-c", f"program {elf} verify reset exit"]
    if tool == "pyocd":
        return [path, "flash", "-t", boards.board_mk_value(board, "BOARD_PYOCD_TARGET") or "", str(elf)]
    raise ValueError(tool)


def find_drive(board: str, roots: Optional[Sequence[PathLike]] = None) -> Optional[Path]:
    """The board's mounted ST-LINK drive (NODE_F746ZG / DIS_F469NI) under /media, /run/media, ...
    (``TREC_TFLM_MEDIA_ROOTS``, os.pathsep-separated, overrides the roots)."""
    label = boards.BOARDS[board].drive_label
    if roots is None:
        env = os.environ.get("TREC_TFLM_MEDIA_ROOTS")
        roots = env.split(os.pathsep) if env else MEDIA_ROOTS
    for root in roots:
        root = Path(root)
        for cand in (root / label, *root.glob(f"*/{label}"), *root.glob(f"*/*/{label}")):
            if cand.is_dir():
                return cand
    return None


QEMU_FLASH_MESSAGE = ("--flash is for the STM32 boards (nucleo_f746zg, disco_f469ni); {board} is emulated by "
                       "QEMU, there is nothing to flash: run the firmware with `make -C OUT run` or "
                       "`trec-tflm bench --board {board} --elf OUT/build/{board}/trec_app.elf`")


def flash(elf: PathLike, board: str, *, media_roots: Optional[Sequence[PathLike]] = None,
          timeout: float = 300.0, log=print) -> str:
    """Flash a built image onto a connected STM32 board; returns what was used."""
    boards.check_board(board)
    if board in QEMU_BOARDS:
        raise DeployError(QEMU_FLASH_MESSAGE.format(board=board))
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
        f"{boards.BOARDS[board].drive_label} is mounted (looked under {roots}). Install one of: "
        + "; ".join(FLASH_PACKAGES) + f" - or connect the board and copy {binary} to its "
        f"{boards.BOARDS[board].drive_label} drive", 1)

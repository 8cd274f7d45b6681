"""The ARM toolchain and QEMU: are they installed (what to install when not), and building firmware
for any board with ``boards/firmware.mk`` (:func:`build_firmware`). Running it is trec_tflm.target.qemu.

Typical use::

    from trec_tflm.target import qemu, toolchain
    ops = paths.tflm_ops_dir()
    elf = toolchain.build_firmware("qemu_m7", ["app/main.c", *sorted((ops / "src").glob("*.c"))],
                                   include_dirs=[ops / "include", ops / "src"], defines=["N=3"])
    res = qemu.run_elf(elf, "qemu_m7")
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Optional, Union

from trec_tflm import paths, progress
from trec_tflm.errors import TrecTflmError
from trec_tflm.target import boards
from trec_tflm.target.boards import BOARDS, QEMU_BOARDS

#: Debian packages that provide everything trec_tflm.target needs to build and run firmware.
DEBIAN_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
QEMU_BINARY = "qemu-system-arm"
CROSS_COMPILE = "arm-none-eabi-"

PathLike = Union[str, os.PathLike]


def as_text(b: Union[bytes, str, None]) -> str:
    """Process output as text (UTF-8, errors replaced); None -> ""."""
    if b is None:
        return ""
    if isinstance(b, bytes):
        return b.decode("utf-8", errors="replace")
    return b


# --------------------------------------------------------------------------- errors


class QemuError(TrecTflmError, RuntimeError):
    """Base class of the errors of trec_tflm.target.toolchain and trec_tflm.target.qemu."""


class ToolMissing(QemuError):
    """The ARM toolchain, newlib-nano or qemu-system-arm is not installed."""


class FirmwareBuildError(QemuError):
    """make failed; ``output`` holds what the compiler/linker said."""

    def __init__(self, message: str, output: str = "", command: Sequence[str] = ()):
        super().__init__(message)
        self.output = output
        self.command = list(command)


# --------------------------------------------------------------------------- availability


def _which(tool: str) -> Optional[str]:
    return shutil.which(tool)


@cache
def toolchain_available() -> bool:
    """arm-none-eabi-gcc/g++ with newlib-nano for hard-float Cortex-M, and make."""
    return _toolchain_problem() is None


@cache
def _toolchain_problem() -> Optional[str]:
    for tool in (CROSS_COMPILE + "gcc", CROSS_COMPILE + "g++", "make"):
        if not _which(tool):
            return f"{tool} not found"
    try:
        out = subprocess.run(
            [CROSS_COMPILE + "gcc", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb",
             "-print-file-name=libc_nano.a"],
            capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:  # pragma: no cover - broken install
        return f"{CROSS_COMPILE}gcc does not run: {e}"
    if not os.path.isabs(out):
        return "newlib-nano (libc_nano.a) for arm-none-eabi not found"
    return None


@cache
def qemu_available() -> bool:
    """qemu-system-arm that knows the mps2-an500 and mps2-an386 machines."""
    return _qemu_problem() is None


@cache
def _qemu_problem() -> Optional[str]:
    if not _which(QEMU_BINARY):
        return f"{QEMU_BINARY} not found"
    try:
        machines = subprocess.run([QEMU_BINARY, "-M", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:  # pragma: no cover
        return f"{QEMU_BINARY} does not run: {e}"
    missing = [BOARDS[b].qemu_machine for b in QEMU_BOARDS if BOARDS[b].qemu_machine not in machines]
    if missing:
        return f"{QEMU_BINARY} lacks machine(s) {', '.join(missing)}"
    return None


def skip_reason(need_qemu: bool = True, need_toolchain: bool = True) -> Optional[str]:
    """None when everything needed is installed, else why not and what to install
    (for ``pytest.skip``)."""
    problems = []
    if need_toolchain and _toolchain_problem():
        problems.append(_toolchain_problem())
    if need_qemu and _qemu_problem():
        problems.append(_qemu_problem())
    if not problems:
        return None
    return ("; ".join(problems) + ": install the Debian packages " + " ".join(DEBIAN_PACKAGES)
            + " (apt-get install " + " ".join(DEBIAN_PACKAGES) + ", or `make system-deps`)")


def require(need_qemu: bool, need_toolchain: bool) -> None:
    """ToolMissing (what to install) unless the tools needed are installed."""
    reason = skip_reason(need_qemu=need_qemu, need_toolchain=need_toolchain)
    if reason:
        raise ToolMissing(reason)


# --------------------------------------------------------------------------- build

_MAKE_UNSAFE = re.compile(r"[\s:=#$%;\"'\\]")


def _make_path(p: PathLike, what: str) -> str:
    s = str(Path(p).resolve())
    if _MAKE_UNSAFE.search(s):
        raise ValueError(f"{what} {s!r}: make cannot handle paths with spaces or any of : = # $ % ; quotes")
    return s


def _define_list(defines: Union[Iterable[str], Mapping[str, object], None]) -> list:
    if not defines:
        return []
    if isinstance(defines, Mapping):
        items = [k if v is None else f"{k}={v}" for k, v in defines.items()]
    else:
        items = [str(d) for d in defines]
    for d in items:
        # the value reaches a shell through make: allow only characters that need no quoting
        if not re.match(r"^[A-Za-z_]\w*(=[\w.+\-/,:@%]*)?$", d):
            raise ValueError(f"define {d!r}: use NAME or NAME=VALUE with letters, digits and _ . + - / , : @ %"
                             " only (pass anything else, shell-quoted, through extra_cflags)")
    return items


def build_firmware(board: str,
                   app_srcs: Iterable[PathLike],
                   include_dirs: Iterable[PathLike] = (),
                   defines: Union[Iterable[str], Mapping[str, object]] = (),
                   build_dir: Optional[PathLike] = None,
                   opt: str = "-O3",
                   *,
                   app: Optional[str] = None,
                   extra_cflags: Sequence[str] = (),
                   extra_cxxflags: Sequence[str] = (),
                   extra_ldflags: Sequence[str] = (),
                   libs: Sequence[str] = (),
                   stack_size: Optional[int] = None,
                   heap_min_size: Optional[int] = None,
                   printf_float: bool = True,
                   jobs: Optional[int] = None,
                   timeout: float = 900.0) -> Path:
    """Build an ELF for ``board`` with ``boards/firmware.mk`` and return its path.

    ``app_srcs``: C (.c, C11), C++ (.cc/.cpp, C++17) and assembly (.S) files, anywhere.
    ``defines``: ``["N=3", "USE_DSP"]`` or ``{"N": 3, "USE_DSP": None}``.
    ``build_dir``: output directory; default ``fw/<board>/<app>-<hash of the configuration>``
    under :func:`trec_tflm.paths.build_dir` (the checkout's build/, else the user cache), so
    different configurations never share one. The make output is kept in ``build_dir/build.log``.
    Rebuilds incrementally; a change of flags rebuilds everything.
    Raises FirmwareBuildError (with the compiler's output) when make fails, e.g. when the
    image does not fit the board ("region `FLASH' overflowed").
    """
    require(need_qemu=False, need_toolchain=True)
    boards.board(board)
    srcs = [_make_path(s, "source") for s in app_srcs]
    if not srcs:
        raise ValueError("app_srcs is empty")
    for s in srcs:
        if not os.path.isfile(s):
            raise FileNotFoundError(f"firmware source not found: {s}")
    incs = [_make_path(i, "include dir") for i in include_dirs]
    defs = _define_list(defines)
    if app is None:
        app = Path(srcs[0]).parent.name if Path(srcs[0]).stem == "main" else Path(srcs[0]).stem
    if not re.match(r"^[A-Za-z0-9_.+-]+$", app):
        raise ValueError(f"app name {app!r}: use letters, digits, _ . + -")

    variables = {
        "BOARD": board,
        "APP": app,
        "APP_SRCS": " ".join(srcs),
        "INCLUDE_DIRS": " ".join(incs),
        "DEFINES": " ".join(defs),
        "OPT": opt,
        "EXTRA_CFLAGS": " ".join(extra_cflags),
        "EXTRA_CXXFLAGS": " ".join(extra_cxxflags),
        "EXTRA_LDFLAGS": " ".join(extra_ldflags),
        "LIBS": " ".join(libs),
        "PRINTF_FLOAT": "1" if printf_float else "0",
    }
    if stack_size is not None:
        variables["STACK_SIZE"] = str(int(stack_size))
    if heap_min_size is not None:
        variables["HEAP_MIN_SIZE"] = str(int(heap_min_size))
    if build_dir is None:
        digest = hashlib.sha1(repr(sorted(variables.items())).encode()).hexdigest()[:10]
        build_dir = paths.build_dir("fw", board, f"{app}-{digest}")
    bdir = _make_path(build_dir, "build_dir")
    variables["BUILD_DIR"] = bdir
    os.makedirs(bdir, exist_ok=True)

    cmd = ["make", "--no-print-directory", "-f", str(paths.boards_dir() / "firmware.mk"),
           f"-j{jobs or os.cpu_count() or 1}"]
    cmd += [f"{k}={v}" for k, v in variables.items()]
    log = Path(bdir) / "build.log"
    # One build at a time per directory (parallel pytest workers may share a default dir).
    with open(os.path.join(bdir, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            run = progress.run_build(cmd, step=f"building firmware {app} for {board}", log=log, cwd=bdir,
                                     timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise FirmwareBuildError(f"firmware build for {board} timed out after {timeout}s (log: {log})",
                                     output=as_text(e.output), command=cmd) from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    elf = Path(bdir) / f"{app}.elf"
    if not run.ok or not elf.is_file():
        raise FirmwareBuildError(_build_failure_message(board, app, run.output) + f"\n(full build log: {log})",
                                 output=run.output, command=cmd)
    return elf


def _build_failure_message(board: str, app: str, output: str) -> str:
    hints = []
    m = re.search(r"region `(\w+)' overflowed by (\d+) bytes", output)
    if m:
        b = BOARDS.get(board)
        limit = ""
        if b and b.is_qemu:
            limit = {"FLASH": f" ({b.flash_bytes // 1024} KB on {b.real_board})",
                     "RAM": f" ({b.ram_bytes // 1024} KB on {b.real_board})",
                     "CCMRAM": f" ({b.ccm_bytes // 1024} KB on {b.real_board})"}.get(m.group(1), "")
        hints.append(f"the image does not fit: region {m.group(1)}{limit} overflowed by {m.group(2)} bytes")
    if "RAM overflow" in output:
        hints.append("RAM overflow: .data + .bss + heap minimum + stack do not fit")
    errors = [ln for ln in output.splitlines() if "error" in ln.lower()][:15]
    msg = f"firmware build of {app!r} for {board} failed"
    if hints:
        msg += ": " + "; ".join(hints)
    if errors:
        msg += "\n" + "\n".join(errors)
    return msg

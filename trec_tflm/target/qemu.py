"""Run firmware in QEMU: to the end (:func:`run_elf`), or with UART0 on a TCP port or a pseudo-terminal.

The boards (see docs/BOARDS.md):

* ``qemu_m7``: ``qemu-system-arm -M mps2-an500`` (Cortex-M7), stands in for NUCLEO_F746ZG
* ``qemu_m4``: ``qemu-system-arm -M mps2-an386`` (Cortex-M4), stands in for DISCO_F469NI

Typical use::

    from trec_tflm.target import qemu, toolchain
    ops = paths.tflm_ops_dir()
    elf = toolchain.build_firmware("qemu_m7", ["app/main.c", *sorted((ops / "src").glob("*.c"))],
                                   include_dirs=[ops / "include", ops / "src"], defines=["N=3"])
    res = qemu.run_elf(elf, "qemu_m7")          # deterministic: -icount shift=0
    print(res.exit_code, res.stdout)

    with qemu.start_qemu_serial(elf, "qemu_m7") as q:   # UART0 on a TCP port
        ser = serial.serial_for_url(q.url)              # "socket://127.0.0.1:PORT"
        ...

With ``icount=True`` (the default) QEMU executes one instruction per nanosecond of virtual
time, so ``board_ticks()`` in the firmware counts executed instructions and the same ELF
gives the same counts on every run. Whether the tools are installed, and building firmware, is
trec_tflm.target.toolchain (its names stay importable from here).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

from trec_tflm.target import boards
from trec_tflm.target.boards import Board as QemuBoard  # noqa: F401 - the old name of a board entry
from trec_tflm.target.toolchain import (  # noqa: F401 - re-exported: their home before toolchain.py
    CROSS_COMPILE,
    DEBIAN_PACKAGES,
    QEMU_BINARY,
    FirmwareBuildError,
    QemuError,
    ToolMissing,
    as_text,
    build_firmware,
    qemu_available,
    require,
    skip_reason,
    toolchain_available,
)

#: Printed by the firmware's fault handler / stack check (boards/common/board_extra.h).
FAULT_MARKER = "*** HARD FAULT"
STACK_OVERFLOW_MARKER = "*** STACK OVERFLOW"
FAULT_EXIT_CODE = 134

#: -icount shift=0: 1 instruction = 1 ns of virtual time; align/sleep off: run as fast as
#: possible and never let host time leak into the guest -> deterministic counts.
ICOUNT_ARGS = ("-icount", "shift=0,align=off,sleep=off")

PathLike = Union[str, os.PathLike]

#: The QEMU boards (entries of trec_tflm.target.boards.BOARDS).
QEMU_BOARDS: Mapping[str, QemuBoard] = {n: boards.BOARDS[n] for n in boards.QEMU_BOARDS}


class QemuTimeout(QemuError):
    """QEMU did not exit in time (it was killed); ``stdout`` is what the firmware printed."""

    def __init__(self, message: str, elf: Path, timeout: float, stdout: str = ""):
        super().__init__(message)
        self.elf = elf
        self.timeout = timeout
        self.stdout = stdout


class QemuHardFault(QemuError):
    """The firmware took a fault (or overflowed its stack); ``report`` is its fault line."""

    def __init__(self, message: str, elf: Path, report: str, stdout: str, exit_code: Optional[int]):
        super().__init__(message)
        self.elf = elf
        self.report = report
        self.stdout = stdout
        self.exit_code = exit_code


def _board(board: str) -> QemuBoard:
    return boards.qemu_board(board)


# --------------------------------------------------------------------------- run


@dataclasses.dataclass
class QemuResult:
    """Outcome of :func:`run_elf`."""
    exit_code: int
    stdout: str  # the firmware's console (UART0) output, decoded as UTF-8 (errors replaced)
    stdout_bytes: bytes
    stderr: str  # QEMU's own messages (its "nic has no peer" warning removed)
    elf: Path
    board: str
    command: list
    icount: bool

    @property
    def lines(self) -> list:
        return self.stdout.replace("\r\n", "\n").split("\n")


def qemu_command(elf: PathLike, board: str, *, icount: bool = True, serial: str = "stdio",
                 extra_args: Sequence[str] = ()) -> list:
    """The qemu-system-arm command line for ``elf`` on ``board`` with UART0 on ``serial``
    (a QEMU chardev spec: ``stdio``, ``tcp:127.0.0.1:PORT,server=on,wait=on``, ...).

    UART1 gets a ``null`` backend: the firmware reads it to wake QEMU's main loop so that
    UART0 input is delivered under -icount (boards/common/mps2.c, uart_rx_kick)."""
    b = _board(board)
    cmd = [QEMU_BINARY, "-M", b.machine, "-nodefaults", "-display", "none", "-monitor", "none",
           "-serial", serial, "-serial", "null", "-semihosting-config", "enable=on,target=native"]
    if icount:
        cmd += list(ICOUNT_ARGS)
    cmd += list(extra_args)
    cmd += ["-kernel", str(Path(elf).resolve())]
    return cmd


def _clean_stderr(s: str) -> str:
    return "\n".join(ln for ln in s.splitlines() if "has no peer" not in ln)


def _symbolize(elf: Path, addr: int) -> str:
    tool = CROSS_COMPILE + "addr2line"
    if not shutil.which(tool):
        return ""
    try:
        out = subprocess.run([tool, "-f", "-C", "-e", str(elf), hex(addr & ~1)], capture_output=True,
                             text=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return ""
    if len(out) >= 2 and out[0] and out[0] != "??":
        return f"{out[0]} ({out[1]})"
    return ""


def _check_fault(elf: Path, board: str, stdout: str, exit_code: Optional[int]) -> None:
    report = ""
    for ln in stdout.replace("\r", "").split("\n"):
        if ln.startswith(FAULT_MARKER) or ln.startswith(STACK_OVERFLOW_MARKER):
            report = ln.strip()
            break
    if not report:
        return
    msg = f"{elf.name} on {board}: {report}"
    for reg in ("pc", "lr"):
        m = re.search(rf"\b{reg}=0x([0-9a-f]+)", report)
        if m:
            where = _symbolize(elf, int(m.group(1), 16))
            if where:
                msg += f"\n  {reg} is in {where}"
    if report.startswith(STACK_OVERFLOW_MARKER):
        msg += "\n  the main stack overflowed: build with a larger STACK_SIZE (stack_size=...)" \
               " or use less stack"
    msg += f"\n  ELF: {elf}"
    raise QemuHardFault(msg, elf=elf, report=report, stdout=stdout, exit_code=exit_code)


def run_elf(elf: PathLike, board: str, timeout: float = 60.0, icount: bool = True,
            stdin_bytes: Optional[bytes] = None, *, extra_args: Sequence[str] = (),
            check_fault: bool = True) -> QemuResult:
    """Run ``elf`` on ``board`` until the firmware exits (semihosting) and return its exit
    code and console output. ``stdin_bytes`` is fed to UART0's receiver (board_getc / stdin).

    Raises QemuTimeout (QEMU killed) when it runs longer than ``timeout`` seconds of wall time,
    and QemuHardFault when the firmware reported a fault or a stack overflow (unless
    ``check_fault`` is false). A non-zero exit code is not an error: see ``.exit_code``.
    """
    require(need_qemu=True, need_toolchain=False)
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise FileNotFoundError(f"ELF not found: {elf}")
    cmd = qemu_command(elf, board, icount=icount, serial="stdio", extra_args=extra_args)
    try:
        proc = subprocess.run(cmd, input=stdin_bytes if stdin_bytes is not None else b"",
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = as_text(e.stdout)
        try:
            _check_fault(elf, board, out, None)
        except QemuHardFault as fault:
            raise fault from None
        tail = "\n".join(out.replace("\r", "").split("\n")[-10:])
        raise QemuTimeout(
            f"QEMU ({board}) did not finish {elf} within {timeout:g} s of wall time and was killed. "
            "Check that the firmware ends (return from main / board_exit), that it does not wait in "
            "board_getc() for input that never comes, and that it is not stuck after a fault in the "
            "fault handler (CPU lockup). Last output:\n" + tail,
            elf=elf, timeout=timeout, stdout=out) from None
    stdout = as_text(proc.stdout)
    if check_fault:
        _check_fault(elf, board, stdout, proc.returncode)
    return QemuResult(exit_code=proc.returncode, stdout=stdout, stdout_bytes=proc.stdout,
                      stderr=_clean_stderr(as_text(proc.stderr)), elf=elf, board=board, command=cmd,
                      icount=icount)


# --------------------------------------------------------------------------- serial over TCP


def proc_alive(proc):
    """A liveness check bound to this process (a lambda in the retry loop would see the last one)."""
    return lambda: proc.poll() is None


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collector(threading.Thread):
    """Reads a pipe to the end so QEMU never blocks on it; keeps the text."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks = []
        self.cond = threading.Condition()

    def run(self):
        for line in iter(self.pipe.readline, b""):
            with self.cond:
                self.chunks.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def text(self) -> str:
        with self.cond:
            return as_text(b"".join(self.chunks))

    def wait_for(self, needle: str, deadline: float, alive) -> bool:
        with self.cond:
            while needle not in as_text(b"".join(self.chunks)):
                if not alive() or time.monotonic() >= deadline:
                    return needle in as_text(b"".join(self.chunks))
                self.cond.wait(timeout=0.05)
            return True


class QemuSerialProcess:
    """A running QEMU whose UART0 is a TCP server on 127.0.0.1:``port``.

    QEMU waits for the first client before it starts the firmware, so nothing the firmware
    prints is lost. Connect with pyserial (``serial.serial_for_url(proc.url)``) or
    :meth:`connect`. Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, elf: Path, board: str, port: int, command: list, proc: subprocess.Popen,
                 out: _Collector, err: _Collector):
        self.elf = elf
        self.board = board
        self.port = port
        self.command = command
        self.proc = proc
        self._out = out
        self._err = err

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll()

    @property
    def stderr(self) -> str:
        return _clean_stderr(self._err.text())

    @property
    def stdout(self) -> str:
        """QEMU's own stdout (not the UART): normally empty."""
        return self._out.text()

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A TCP connection to the UART (the firmware starts once it is made)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the firmware to exit; its exit code. QemuTimeout (QEMU left running) on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise QemuTimeout(f"QEMU ({self.board}) running {self.elf} on port {self.port} did not exit "
                              f"within {timeout:g} s", elf=self.elf, timeout=timeout or 0.0) from None

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """End QEMU (SIGTERM, then SIGKILL after ``timeout`` s); its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for c in (self._out, self._err):
            c.join(timeout=timeout)
        for p in (self.proc.stdout, self.proc.stderr):
            if p:
                p.close()
        return self.proc.returncode

    def __enter__(self) -> QemuSerialProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):
        try:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        except Exception:
            pass


def start_qemu_serial(elf: PathLike, board: str, port: Optional[int] = None, *, icount: bool = True,
                      extra_args: Sequence[str] = (), startup_timeout: float = 30.0) -> QemuSerialProcess:
    """Start QEMU with ``elf`` on ``board``, UART0 served on TCP 127.0.0.1:``port`` (a free
    port when None). Returns once QEMU listens; the firmware starts when a client connects.
    The process ends when the firmware exits (``wait()`` gives its exit code) or on ``stop()``.
    """
    require(need_qemu=True, need_toolchain=False)
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise FileNotFoundError(f"ELF not found: {elf}")
    attempts = 3 if port is None else 1
    last_err = ""
    for _ in range(attempts):
        p = port if port is not None else free_tcp_port()
        serial = f"tcp:127.0.0.1:{p},server=on,wait=on"
        cmd = qemu_command(elf, board, icount=icount, serial=serial, extra_args=extra_args)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = _Collector(proc.stdout), _Collector(proc.stderr)
        out.start()
        err.start()
        q = QemuSerialProcess(elf, board, p, cmd, proc, out, err)
        # QEMU says "QEMU waiting for connection on: ..." once it listens, then blocks.
        if err.wait_for("waiting for connection", time.monotonic() + startup_timeout,
                        alive=proc_alive(proc)):
            return q
        last_err = q.stderr
        q.stop()
        if "Address already in use" not in last_err:
            break
    raise QemuError(f"QEMU ({board}) did not start listening on a TCP port for {elf}:\n{last_err}")


class QemuPtyProcess(QemuSerialProcess):
    """A running QEMU whose UART0 is a pseudo-terminal (``path``, e.g. /dev/pts/5), for serial
    tools that open a device path rather than a URL (the MLPerf Tiny runner: trec_tflm.bench.mlperf_runner).

    The firmware starts at once; QEMU drops what it prints while no program has the terminal
    open (the boot banner), and reads commands once one does."""

    def __init__(self, elf: Path, board: str, path: str, command: list, proc: subprocess.Popen,
                 out: _Collector, err: _Collector):
        super().__init__(elf, board, 0, command, proc, out, err)
        self.path = path

    @property
    def url(self) -> str:
        return self.path

    def connect(self, timeout: float = 10.0):  # pragma: no cover - not a TCP server
        raise QemuError("UART0 is a pseudo-terminal here: open QemuPtyProcess.path with pyserial")


_PTY_LINE = re.compile(r"char device redirected to (/dev/\S+)")


def start_qemu_pty(elf: PathLike, board: str, *, icount: bool = True, extra_args: Sequence[str] = (),
                   startup_timeout: float = 30.0) -> QemuPtyProcess:
    """Start QEMU with ``elf`` on ``board`` and UART0 on a new pseudo-terminal; returns once QEMU
    has said which (``.path``). ``stop()`` ends it."""
    require(need_qemu=True, need_toolchain=False)
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise FileNotFoundError(f"ELF not found: {elf}")
    cmd = qemu_command(elf, board, icount=icount, serial="pty", extra_args=extra_args)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = _Collector(proc.stdout), _Collector(proc.stderr)
    out.start()
    err.start()
    deadline = time.monotonic() + startup_timeout
    while True:
        m = _PTY_LINE.search(err.text() + out.text())
        if m:
            return QemuPtyProcess(elf, board, m.group(1), cmd, proc, out, err)
        if proc.poll() is not None or time.monotonic() >= deadline:
            q = QemuPtyProcess(elf, board, "", cmd, proc, out, err)
            text = q.stderr + q.stdout
            q.stop()
            raise QemuError(f"QEMU ({board}) did not report a pseudo-terminal for UART0 of {elf}:\n{text}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m trec_tflm.target.qemu BOARD ELF [--no-icount] [--timeout S] [--port P]``:
    run an ELF, print its console output, exit with its exit code (or serve UART0 on a port)."""
    ap = argparse.ArgumentParser(prog="python -m trec_tflm.target.qemu", description=main.__doc__)
    ap.add_argument("board", choices=sorted(QEMU_BOARDS))
    ap.add_argument("elf")
    ap.add_argument("--no-icount", action="store_true", help="run without -icount (not deterministic)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--port", type=int, help="serve UART0 on this TCP port and wait for the firmware to exit")
    ap.add_argument("--pty", action="store_true", help="UART0 on a pseudo-terminal (printed), for tools that "
                    "open a device path, e.g. the MLPerf Tiny runner "
                    "(python -m trec_tflm.bench.mlperf_runner run --port PTY)")
    args = ap.parse_args(argv)
    if args.pty or args.port is not None:
        if args.pty:
            q = start_qemu_pty(args.elf, args.board, icount=not args.no_icount)
        else:
            q = start_qemu_serial(args.elf, args.board, port=args.port, icount=not args.no_icount)
        where = q.path if args.pty else q.url
        print(f"UART0 of {args.board} on {where} (pid {q.pid}); Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            return q.wait()
        except KeyboardInterrupt:
            return q.stop() or 130
        finally:
            q.stop()
    try:
        res = run_elf(args.elf, args.board, timeout=args.timeout, icount=not args.no_icount,
                      stdin_bytes=None if sys.stdin.isatty() else sys.stdin.buffer.read())
    except QemuHardFault as e:
        sys.stdout.write(e.stdout)
        print(str(e), file=sys.stderr)
        return e.exit_code if e.exit_code is not None else FAULT_EXIT_CODE
    sys.stdout.write(res.stdout)
    if res.stderr:
        sys.stderr.write(res.stderr + "\n")
    return res.exit_code


if __name__ == "__main__":
    raise SystemExit(main())

"""Run a long build (make, a compiler) with visible progress and a kept log.

Every build trec_tflm drives goes through :func:`run_build`: the TFLM libraries and the op library
(trec_tflm.host.interpreter), firmware projects (trec_tflm.target.firmware, so also ``deploy --build``), test and
benchmark firmware (trec_tflm.target.qemu) and the host kernel library (trec_tflm.host.kernels).

What it shows on stderr, for a build that has work to do:

* on a terminal, one line redrawn in place: the step, a bar with the objects compiled of the
  total, and the elapsed time;
* otherwise (CI logs, pipes): a line when the build starts, one every ``interval`` seconds
  (default 30) with the count, and one when it ends.

The total comes from a dry run of the same ``make`` command (``make -n``): the compile lines the
makefiles echo (``  CC      file``, ``  CXX     file``, ``  AS      file``) are counted, each file once.
A build with nothing to compile stays silent unless it takes longer than ``quiet_for`` seconds.
``TREC_TFLM_PROGRESS=plain`` forces the plain lines, ``TREC_TFLM_PROGRESS=off`` silences both.

The whole output (stdout and stderr, interleaved) is written to ``log`` as it arrives; a failed
build's message shows its last lines (:meth:`BuildRun.tail`) and names the log.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Optional, Union

PathLike = Union[str, os.PathLike]

#: A compile line as the makefiles echo it (tflm_ops/tflm.mk, boards/firmware.mk).
COMPILE_LINE = re.compile(r"^\s+(CC|CXX|AS)\s+(\S.*?)\s*$")
# The same line as `make -n` prints the echo command that would write it.
_DRY_ECHO = re.compile(r"""^echo\s+(["']?)(.*)\1\s*$""")

BAR_WIDTH = 24


@dataclasses.dataclass
class BuildRun:
    """What :func:`run_build` saw: ``output`` is stdout and stderr interleaved."""
    command: list
    returncode: int
    output: str
    log: Optional[Path]
    built: int                  # compile lines seen
    total: Optional[int]        # compile lines the dry run announced (None: no dry run)
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the output, and where the full log is."""
        text = "\n".join(self.output.rstrip().splitlines()[-lines:])
        return text + (f"\n(full build log: {self.log})" if self.log else "")


def compile_key(line: str) -> Optional[str]:
    """The file a compile line names (``  CXX     kernels/add.cc`` -> ``CXX kernels/add.cc``), or None."""
    m = COMPILE_LINE.match(line)
    return f"{m.group(1)} {m.group(2)}" if m else None


def count_planned(dry_run_output: str) -> int:
    """Distinct files a ``make -n`` transcript would compile. Recursive makes that a dry run
    visits more than once (a library named by several rules) announce the same files again:
    each counts once."""
    keys = set()
    for ln in dry_run_output.splitlines():
        m = _DRY_ECHO.match(ln.strip())
        if m:
            key = compile_key(m.group(2))
            if key:
                keys.add(key)
    return len(keys)


def _is_make(cmd: Sequence[str]) -> bool:
    return bool(cmd) and os.path.basename(str(cmd[0])) in ("make", "gmake")


def plan(cmd: Sequence[str], *, cwd: Optional[PathLike] = None, env: Optional[Mapping[str, str]] = None,
         timeout: float = 120.0) -> Optional[int]:
    """Files ``cmd`` (a make command) would compile, from ``make -n``; None when that cannot be told."""
    if not _is_make(cmd):
        return None
    try:
        proc = subprocess.run([cmd[0], "-n", *cmd[1:]], cwd=cwd, env=None if env is None else dict(env),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return count_planned(proc.stdout) if proc.returncode == 0 else None


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Display:
    """The progress display of one build (see the module doc)."""

    def __init__(self, step: str, total: Optional[int], stream: IO, mode: str, interval: float,
                 quiet_for: float, log: Optional[Path]):
        self.step, self.total, self.stream, self.mode = step, total, stream, mode
        self.interval, self.quiet_for, self.log = interval, quiet_for, log
        self.shown = False
        self.last_plain = 0.0
        self.last_draw = 0.0

    def _count(self, built: int) -> str:
        if self.total is None:
            return f"{built} files compiled"
        total = max(self.total, built)
        return f"{built}/{total} files"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream must not fail the build
            self.mode = "off"

    def update(self, built: int, elapsed: float, force: bool = False) -> None:
        if self.mode == "off":
            return
        if not self.shown:
            if not (self.total or elapsed >= self.quiet_for or built):
                return
            self.shown = True
            if self.mode == "plain":
                todo = "" if self.total is None else f": {self.total} files to compile"
                where = f" (log: {self.log})" if self.log else ""
                self._write(f"{self.step}{todo}{where}\n")
                self.last_plain = elapsed
                return
        if self.mode == "plain":
            if elapsed - self.last_plain >= self.interval:
                self.last_plain = elapsed
                self._write(f"{self.step}: {self._count(built)}, {_clock(elapsed)} elapsed\n")
            return
        if not force and elapsed - self.last_draw < 0.2:
            return
        self.last_draw = elapsed
        if self.total:
            total = max(self.total, built)
            filled = BAR_WIDTH * built // total
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
        else:
            bar = ""
        self._write(f"\r\x1b[K{self.step}  {bar}{self._count(built)}  {_clock(elapsed)}")

    def finish(self, built: int, elapsed: float, ok: bool) -> None:
        if self.mode == "off" or not (self.shown or not ok):
            return
        state = "done" if ok else "FAILED"
        where = "" if ok or not self.log else f" (log: {self.log})"
        end = f"{self.step}: {state}, {built} files compiled in {_clock(elapsed)}{where}\n"
        self._write(("\r\x1b[K" if self.mode == "tty" and self.shown else "") + end)


def _mode(stream: IO) -> str:
    env = os.environ.get("TREC_TFLM_PROGRESS", "").strip().lower()
    if env in ("off", "0", "no"):
        return "off"
    if env == "plain":
        return "plain"
    try:
        return "tty" if stream.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def _kill(proc: subprocess.Popen) -> None:
    """Stop the build and everything it started (make's compilers run in its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_build(cmd: Sequence[PathLike], *, step: str, log: Optional[PathLike] = None,
              cwd: Optional[PathLike] = None, env: Optional[Mapping[str, str]] = None,
              timeout: float = 3600.0, dry_run: bool = True, stream: Optional[IO] = None,
              interval: float = 30.0, quiet_for: float = 2.0) -> BuildRun:
    """Run ``cmd``, showing ``step`` with its progress on ``stream`` (default stderr), writing the
    whole output to ``log`` (parent directories created). ``dry_run``: count the work first with
    ``make -n`` (make commands only). Returns a :class:`BuildRun` whatever the exit status; raises
    ``FileNotFoundError`` when the program is missing and ``subprocess.TimeoutExpired`` (with the
    output so far) after ``timeout`` seconds, the build stopped."""
    cmd = [str(c) for c in cmd]
    env = dict(os.environ if env is None else env)
    if _is_make(cmd):
        # a calling make's flags (-n, -s, a jobserver this process does not hold) must not leak in
        env.pop("MAKEFLAGS", None)
        env.pop("MFLAGS", None)
    stream = sys.stderr if stream is None else stream
    log_path = Path(log) if log is not None else None
    start = time.monotonic()
    total = plan(cmd, cwd=cwd, env=env) if dry_run else None
    display = _Display(step, total, stream, _mode(stream), interval, quiet_for, log_path)
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # line-buffered: the log can be followed (tail -f) while the build runs
        log_file = open(log_path, "w", encoding="utf-8", errors="replace", buffering=1)
        log_file.write("$ " + " ".join(cmd) + "\n")
    lines: list = []
    seen: set = set()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                start_new_session=True)
    except BaseException:
        if log_file:
            log_file.close()
        raise
    pipe: queue.Queue[Optional[str]] = queue.Queue()

    def read() -> None:
        for ln in proc.stdout:
            pipe.put(ln)
        pipe.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ok = False
    try:
        eof = False
        while not eof:
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                _kill(proc)
                raise subprocess.TimeoutExpired(cmd, timeout, output="".join(lines))
            try:
                ln = pipe.get(timeout=min(1.0, max(0.05, timeout - elapsed)))
            except queue.Empty:
                display.update(len(seen), time.monotonic() - start)
                continue
            while ln is not None:
                lines.append(ln)
                if log_file:
                    log_file.write(ln)
                key = compile_key(ln)
                if key:
                    seen.add(key)
                try:
                    ln = pipe.get_nowait()
                except queue.Empty:
                    break
            else:
                eof = True
            display.update(len(seen), time.monotonic() - start, force=eof)
        returncode = proc.wait()
        ok = returncode == 0
    except BaseException:
        # Ctrl-C or a timeout: the build runs in its own session, so it must be stopped here
        if proc.poll() is None:
            _kill(proc)
        display.finish(len(seen), time.monotonic() - start, False)
        raise
    finally:
        if log_file:
            log_file.close()
    elapsed = time.monotonic() - start
    display.finish(len(seen), elapsed, ok)
    return BuildRun(command=cmd, returncode=returncode, output="".join(lines), log=log_path, built=len(seen),
                    total=total, seconds=elapsed)

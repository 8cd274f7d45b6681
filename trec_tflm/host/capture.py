"""Capturing what native code prints: TFLM's ``MicroPrintf`` (-> ``DebugLog`` -> C stderr), the wheel's
chatter on Python's stdout, TensorFlow's converter on C stderr.

Captures go to :func:`trec_tflm.host.isolate.capture_file`, so inside an isolated child a crash does not
lose what was printed before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import sys
import threading

from trec_tflm.host import isolate

_capture_lock = threading.RLock()
#: The wheel prints this on every interpreter; it is noise.
_NOISE = re.compile(r"^Number of resource variables the model uses = .*$")


@contextlib.contextmanager
def capture_native_output():
    """Redirect the C-level stderr (fd 2) and Python's stdout into a buffer; yields a list that
    receives the captured text when the block ends."""
    out: list = []
    with _capture_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        with isolate.capture_file() as tmp:
            os.dup2(tmp.fileno(), 2)
            py_out = io.StringIO()
            try:
                with contextlib.redirect_stdout(py_out):
                    yield out
            finally:
                try:
                    libc = ctypes.CDLL(None)
                    libc.fflush(None)
                except OSError:  # pragma: no cover
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
                lines = [ln for ln in (text + py_out.getvalue()).splitlines() if not _NOISE.match(ln)]
                out.append("\n".join(lines))


@contextlib.contextmanager
def capture_fds(fds: tuple = (1, 2)):
    """Capture what native code writes to the file descriptors ``fds`` (C-level stdout and stderr by
    default; TFLM and TensorFlow's converter print through them) into a list of one string."""
    out: list = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with isolate.capture_file() as tmp:
        for fd in fds:
            os.dup2(tmp.fileno(), fd)
        try:
            yield out
        finally:
            try:
                ctypes.CDLL(None).fflush(None)
            except OSError:  # pragma: no cover
                pass
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, keep in zip(fds, saved):
                os.dup2(keep, fd)
                os.close(keep)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))

"""Run native code that may crash on a hostile model in a child process.

TFLM does not verify what it reads: :mod:`trec_tflm.spec.validate` refuses every model that breaks the
schema or OP_SPEC.md before TFLM sees it, but a builtin kernel can still fault on a model that is
valid by those rules. :func:`run_isolated` runs such work (building and invoking TFLM
interpreters) in a forked child: a crash (SIGSEGV, SIGABRT, ...) or a hang becomes a
:class:`NativeCrashError` naming the signal, with what TFLM printed before it died (the child's
stderr goes to ours as it is written, and output a capture block held is recovered from its file).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from trec_tflm.spec.model import TfliteModelError

#: Set in the child: where capture blocks keep their files, so a crash does not lose them.
CAPTURE_DIR_ENV = "TREC_TFLM_CAPTURE_DIR"


class NativeCrashError(TfliteModelError):
    """Native code died (a signal) or hung on a model; ``log`` holds what it printed."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def capture_file():
    """A temporary file for capturing native output: named inside the child's capture directory
    when running isolated (the parent reads it if the child dies), else anonymous."""
    d = os.environ.get(CAPTURE_DIR_ENV)
    if d and os.path.isdir(d):
        return tempfile.NamedTemporaryFile(mode="w+b", dir=d, prefix="capture-", delete=True)
    return tempfile.TemporaryFile(mode="w+b")


def _child(conn, capture_dir, fn, args, kwargs):
    # the parent reports a crash in one clear message; a Python stack dump here would only add noise
    faulthandler.disable()
    os.environ[CAPTURE_DIR_ENV] = capture_dir
    try:
        out = ("ok", fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)
            out = ("raise", exc)
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling
            out = ("error", (type(exc).__name__, str(exc), isinstance(exc, ValueError),
                             "".join(traceback.format_exception(exc))))
    try:
        conn.send(out)
    except Exception as exc:  # noqa: BLE001
        conn.send(("error", (type(exc).__name__, f"the result could not be sent back: {exc}", False, "")))
    finally:
        conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_isolated(fn, *args, what: str, timeout: float | None = None, **kwargs):
    """``fn(*args, **kwargs)`` in a forked child; returns its result or re-raises its exception.
    A child killed by a signal, or still running after ``timeout`` seconds, raises
    :class:`NativeCrashError` saying ``what`` failed and showing the captured output."""
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - not Linux
        return fn(*args, **kwargs)
    ctx = multiprocessing.get_context("fork")
    capture_dir = tempfile.mkdtemp(prefix="trec-tflm-native-")
    recv, send = ctx.Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    proc = ctx.Process(target=_child, args=(send, capture_dir, fn, args, kwargs), daemon=True)
    try:
        proc.start()
        send.close()
        reply = None
        if recv.poll(timeout):
            try:
                reply = recv.recv()
            except (EOFError, OSError):
                reply = None
        if reply is None and proc.is_alive() and not recv.poll(0):
            proc.kill()
            proc.join()
            log = _captured(capture_dir)
            raise NativeCrashError(f"{what} did not finish within {timeout:g} s (stopped)" + _said(log), log)
        proc.join()
        if reply is None:
            code = proc.exitcode
            log = _captured(capture_dir)
            how = _signal_name(code) if code is not None and code < 0 else f"exit status {code}"
            raise NativeCrashError(f"{what} crashed in native code ({how}); the model passed validation, so this "
                                   "is a TFLM limit the validator does not know: please report it with the model"
                                   + _said(log), log)
        kind, value = reply
        if kind == "ok":
            return value
        if kind == "raise":
            raise value
        name, message, is_value_error, tb = value
        cls = ValueError if is_value_error else RuntimeError
        raise cls(f"{name}: {message}")
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        recv.close()
        shutil.rmtree(capture_dir, ignore_errors=True)


def _captured(capture_dir: str) -> str:
    parts = []
    for p in sorted(Path(capture_dir).glob("capture-*")):
        try:
            parts.append(p.read_bytes().decode("utf-8", "replace"))
        except OSError:
            pass
    return "\n".join(t.strip() for t in parts if t.strip())


def _said(log: str) -> str:
    return f"\nTFLM said before it stopped:\n{log}" if log else ""

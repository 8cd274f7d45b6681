"""trec_tflm.host.isolate: native work in a forked child; a crash or a hang becomes a clear error that
shows what the child printed (also what a capture block held when it died)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from trec_tflm.host import capture, isolate
from trec_tflm.host import interpreter as runtime


def _crash_inside_a_capture(sig):
    # what runtime.Runtime does around TFLM: fd 2 into a capture file; then the "native" fault
    with capture.capture_native_output():
        os.write(2, b"Node TREC_CONV_2D (number 1f) failed to prepare with status 1\n")
        os.kill(os.getpid(), sig)


def test_a_signal_becomes_an_error_with_the_captured_output():
    with pytest.raises(isolate.NativeCrashError) as err:
        isolate.run_isolated(_crash_inside_a_capture, signal.SIGSEGV, what="measuring the arena")
    msg = str(err.value)
    assert msg.startswith("measuring the arena crashed in native code (SIGSEGV)")
    assert "failed to prepare with status 1" in msg and "failed to prepare" in err.value.log
    assert isinstance(err.value, ValueError)  # the CLI's exit 2: the model is the problem


def test_abort_is_named():
    with pytest.raises(isolate.NativeCrashError, match=r"\(SIGABRT\)"):
        isolate.run_isolated(os.abort, what="x")


def test_a_hang_is_stopped():
    with pytest.raises(isolate.NativeCrashError, match="did not finish within 1 s"):
        isolate.run_isolated(time.sleep, 60, what="x", timeout=1)


def _raise(exc):
    raise exc


def test_results_and_exceptions_come_back():
    assert isolate.run_isolated(divmod, 17, 5, what="x") == (3, 2)
    with pytest.raises(ValueError, match="bad zero point"):
        isolate.run_isolated(_raise, ValueError("bad zero point"), what="x")
    # an exception that cannot be pickled back keeps its type name and message
    with pytest.raises(RuntimeError, match="UnsupportedOpError: no kernel"):
        isolate.run_isolated(_raise, runtime.UnsupportedOpError("no kernel", ["FOO"]), what="x")


def test_captures_outside_a_child_leave_no_files(tmp_path, monkeypatch):
    monkeypatch.setenv(isolate.CAPTURE_DIR_ENV, str(tmp_path))
    with capture.capture_native_output() as log:
        os.write(2, b"hello\n")
    assert log == ["hello"] and list(tmp_path.iterdir()) == []

"""The tflite-micro wheel's own interpreter (TFLM's reference kernels, no custom registerers), quietly.

It runs models without ``TREC_CONV_2D`` (``trec-tflm eval``'s tflm route for them, the golden route's
segments, ``inspect``'s arena measurement); :class:`RunnerUnavailable` says why a route cannot run a
model here.
"""

from __future__ import annotations

import contextlib
import io

from trec_tflm.errors import TrecTflmError


class RunnerUnavailable(TrecTflmError, RuntimeError):
    """A route cannot run this model here; the message says why."""


@contextlib.contextmanager
def _quiet_stdout():
    """The wheel prints 'Number of resource variables ...' on every interpreter: drop it."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def wheel_interpreter(model_bytes: bytes, arena_size: int | None = None):
    """A tflite-micro interpreter (TFLM reference kernels, no custom registerers)."""
    # lazy: the wheel is an optional native dependency (`trec-tflm eval --help` must not load it)
    from tflite_micro.python.tflite_micro import runtime as tflm_runtime

    arena = arena_size or max(1 << 20, 10 * len(model_bytes))
    with _quiet_stdout():
        try:
            return tflm_runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)
        except RuntimeError as exc:
            raise RunnerUnavailable(f"the TFLM interpreter refused the model: {exc}") from None

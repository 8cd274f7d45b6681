"""What TFLM allocates in its tensor arena for a model on this host (``trec-tflm inspect``'s arena line).

Models with ``TREC_CONV_2D`` are measured in :class:`trec_tflm.host.interpreter.Runtime` (TFLM with the op
registered), others in the wheel's own interpreter; both report through TFLM's RecordingMicroAllocator.
The numbers are the host's (64-bit pointers); a Cortex-M needs somewhat less (docs/TFLM.md).
"""

from __future__ import annotations

from trec_tflm.host import isolate
from trec_tflm.host.capture import capture_fds
from trec_tflm.host.interpreter import ALLOC_TOTAL, Runtime, TflmError
from trec_tflm.host.wheel import RunnerUnavailable, wheel_interpreter


def measure_arena(buf: bytes, has_trec: bool) -> dict:
    """``{"bytes": int | None, "how": str}``: what TFLM allocates for the model on this host.
    TFLM runs in a child process: a crash there raises isolate.NativeCrashError."""
    return isolate.run_isolated(_measure_arena_here, buf, has_trec, what="measuring the TFLM arena", timeout=600)


def _measure_arena_here(buf: bytes, has_trec: bool) -> dict:
    if has_trec:
        try:
            rt = Runtime(buf)
            return {"bytes": int(rt.arena_used_bytes()),
                    "how": "TFLM with TREC_CONV_2D registered (trec_tflm.host.interpreter), "
                           "host build (64-bit pointers)"}
        except (TflmError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {"bytes": None, "how": f"not measured: TFLM cannot run TREC_CONV_2D here ({first})"}
    try:
        interp = wheel_interpreter(buf, max(16 << 20, 10 * len(buf)))
    except RunnerUnavailable as exc:
        return {"bytes": None, "how": f"not measured: {exc}"}
    with capture_fds() as log:
        interp.print_allocations()
    found = ALLOC_TOTAL.search(log[0] if log else "")
    if not found:
        return {"bytes": None, "how": "not measured: the TFLM interpreter did not report its allocations"}
    return {"bytes": int(found.group(1)),
            "how": "tflite-micro interpreter (RecordingMicroAllocator), host build (64-bit pointers)"}

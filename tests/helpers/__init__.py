"""Helpers the test modules share (tests never import each other), and the test tiers.

A tier is a pytest marker for tests that need something beyond the Python packages:
``tflm`` the pinned TFLM trees (TFLM_ROOT, FLATBUFFERS_ROOT, CMSIS_NN_ROOT: `make deps`),
``qemu`` qemu-system-arm and the ARM toolchain, ``toolchain`` the ARM toolchain alone.
conftest.py skips a marked test when its tier is missing, saying what to set, and with
TREC_TFLM_REQUIRE_TIERS=1 (CI) turns every skip into a failure.
Kept free of TensorFlow imports: sanitizer children import test modules without it.
"""

from __future__ import annotations

import os

TIERS = {
    "tflm": "needs the pinned TFLM trees (TFLM_ROOT, FLATBUFFERS_ROOT, CMSIS_NN_ROOT; `make deps` fetches them)",
    "qemu": "needs qemu-system-arm and arm-none-eabi-gcc (Debian: qemu-system-arm gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi)",
    "toolchain": "needs arm-none-eabi-gcc (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi)",
}
LABELS = {"slow": "takes minutes (a firmware build, a training run, an emulated model)"}


def tflm_skip_message() -> str:
    from trec_tflm.host import tflm_build

    return (f"TFLM_ROOT is not set: run `make deps` (clones tflite-micro {tflm_build.TFLM_COMMIT}, flatbuffers "
            f"v25.9.23 and CMSIS-NN {tflm_build.CMSIS_NN_COMMIT} into third_party/), or set TFLM_ROOT, "
            "FLATBUFFERS_ROOT and CMSIS_NN_ROOT to those trees; see README 'TFLM tree'")


def missing(tier: str) -> str | None:
    """Why ``tier`` cannot run here (and what fixes it), or None."""
    if tier == "tflm":
        if not os.environ.get("TFLM_ROOT", "").strip():
            return tflm_skip_message()
        import importlib.util

        if importlib.util.find_spec("tflite_micro") is None:
            return "the tflite-micro wheel is not installed: pip install -e '.[dev]' (or `make test`)"
        return None
    from trec_tflm.target import qemu

    if tier == "qemu":
        return qemu.skip_reason(need_qemu=True, need_toolchain=True)
    if tier == "toolchain":
        return qemu.skip_reason(need_qemu=False, need_toolchain=True)
    raise KeyError(tier)


def unusable(tier: str) -> str | None:
    """A tier that is configured but broken (a TFLM tree at another commit): a failure, not a skip."""
    if tier != "tflm":
        return None
    from trec_tflm.host import tflm_build

    try:
        tflm_build.check_tflm_tree()
    except tflm_build.TflmTreeMissing as exc:
        return str(exc)
    return None

"""The TREC_CONV_2D operator's facts: its custom code, option keys and limits, and the options codec.

Everything that names the op or checks its options takes it from here (docs/OP_SPEC.md is the prose
version): the converter writes these options, the validator and the host runtime read them, firmware
generation registers the code, and the C side (tflm_ops/tflm/trec_conv.cc) checks the same limits.
"""

from __future__ import annotations

import numpy as np
from flatbuffers import flexbuffers

from trec_tflm.errors import TrecTflmError

TREC_CUSTOM_CODE = "TREC_CONV_2D"
#: The TREC_CONV_2D option format this code reads and writes (docs/OP_SPEC.md "Versioning").
TREC_OP_VERSION = 1
#: Name of our entry in the model's ``metadata`` table, and the version of its JSON document.
METADATA_NAME = "trec_tflm"
METADATA_FORMAT_VERSION = 1

PADDINGS = ("SAME", "VALID")
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
HASH_CENTERS = ("mean", "none")
MAX_HASH_BITS = 16
#: key -> (python type, description of the allowed values); every key is required.
TREC_OPTION_KEYS = {
    "version": (int, "1"),
    "sub_vector_length": (int, ">= 1"),
    "hash_bits": (int, f"1..{MAX_HASH_BITS}"),
    "hash_center": (str, '"mean" or "none"'),
    "stride_h": (int, ">= 1"),
    "stride_w": (int, ">= 1"),
    "dilation_h": (int, ">= 1"),
    "dilation_w": (int, ">= 1"),
    "padding": (str, '"SAME" or "VALID"'),
    "activation": (str, '"NONE", "RELU", "RELU6" or "RELU_N1_TO_1"'),
}
#: The largest per-op scratch budget: the TFLM op keeps scratch sizes in int32.
MAX_SCRATCH_BUDGET = 2**31 - 1
#: Optional keys of version 1: absent means the op's default (docs/OP_SPEC.md "Options"). A reader
#: that does not know one ignores it, so an optional key may never change the op's numerics.
TREC_OPTIONAL_KEYS = {
    "scratch_budget": (int, f"bytes, 1..{MAX_SCRATCH_BUDGET}, and at least the layer's minimum scratch"),
}


class TfliteModelError(TrecTflmError, ValueError):
    """The bytes are not a usable TFLite model, or a TREC_CONV_2D operator in it is malformed."""


# ------------------------------------------------------------------------------------------------
# TREC_CONV_2D options
# ------------------------------------------------------------------------------------------------
def check_trec_options(opts: dict, where: str = "TREC_CONV_2D") -> dict:
    """Validate an option map per docs/OP_SPEC.md; returns a clean copy (the required keys, and the
    optional ones present). Raises TfliteModelError naming the key for an unknown version, a missing
    key, a wrong type or a value out of range. Keys this version does not define are dropped."""
    if not isinstance(opts, dict):
        raise TfliteModelError(f"{where}: the custom options must be a flexbuffer map, got {type(opts).__name__}")
    if "version" not in opts:
        raise TfliteModelError(f"{where}: custom option 'version' is missing (docs/OP_SPEC.md lists the keys)")
    version = opts["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise TfliteModelError(f"{where}: custom option 'version' must be an int, got {type(version).__name__}")
    if version != TREC_OP_VERSION:
        raise TfliteModelError(f"{where}: unknown TREC_CONV_2D version {version}; this build supports "
                               f"{TREC_OP_VERSION}")
    clean = {}
    for key, (typ, allowed) in TREC_OPTION_KEYS.items():
        if key not in opts:
            raise TfliteModelError(f"{where}: custom option '{key}' is missing (docs/OP_SPEC.md lists the keys)")
        v = opts[key]
        if typ is int and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise TfliteModelError(f"{where}: custom option '{key}' must be an int ({allowed}), got "
                                   f"{type(v).__name__} {v!r}")
        if typ is str:
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if not isinstance(v, str):
                raise TfliteModelError(f"{where}: custom option '{key}' must be a string ({allowed}), got "
                                       f"{type(v).__name__} {v!r}")
        clean[key] = int(v) if typ is int else v
    budget = opts.get("scratch_budget")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise TfliteModelError(f"{where}: custom option 'scratch_budget' must be an int "
                                   f"({TREC_OPTIONAL_KEYS['scratch_budget'][1]}), got {type(budget).__name__} "
                                   f"{budget!r}")
        if not 1 <= int(budget) <= MAX_SCRATCH_BUDGET:
            raise TfliteModelError(f"{where}: custom option 'scratch_budget' = {int(budget)} is not allowed "
                                   f"({TREC_OPTIONAL_KEYS['scratch_budget'][1]})")
        clean["scratch_budget"] = int(budget)
    bad = None
    if not clean["sub_vector_length"] >= 1:
        bad = "sub_vector_length"
    elif not 1 <= clean["hash_bits"] <= MAX_HASH_BITS:
        bad = "hash_bits"
    elif clean["hash_center"] not in HASH_CENTERS:
        bad = "hash_center"
    elif clean["padding"] not in PADDINGS:
        bad = "padding"
    elif clean["activation"] not in ACTIVATIONS:
        bad = "activation"
    else:
        for key in ("stride_h", "stride_w", "dilation_h", "dilation_w"):
            if clean[key] < 1:
                bad = key
                break
    if bad:
        raise TfliteModelError(f"{where}: custom option '{bad}' = {clean[bad]!r} is not allowed "
                               f"({TREC_OPTION_KEYS[bad][1]})")
    return clean


def encode_trec_options(opts: dict) -> bytes:
    """The flexbuffer map of docs/OP_SPEC.md (validated first)."""
    return bytes(flexbuffers.Dumps(check_trec_options(dict(opts), "encode_trec_options")))


def decode_trec_options(data: bytes, where: str = "TREC_CONV_2D") -> dict:
    """Decode and validate TREC_CONV_2D custom options (bytes of a flexbuffer map)."""
    if not data:
        raise TfliteModelError(f"{where}: the TREC_CONV_2D operator has no custom options (expected a flexbuffer "
                               "map with version, sub_vector_length, hash_bits, ...; see docs/OP_SPEC.md)")
    try:
        opts = flexbuffers.Loads(bytes(data))
    except Exception as exc:  # noqa: BLE001 - flexbuffers raises anything on garbage
        raise TfliteModelError(f"{where}: the custom options ({len(data)} bytes) are not a valid flexbuffer "
                               f"({type(exc).__name__}: {exc})") from None
    return check_trec_options(opts, where)


# ------------------------------------------------------------------------------------------------
# the int8 clamp of a fused activation, as TFLM's Prepare computes it
# ------------------------------------------------------------------------------------------------
def _round_half_away_f32(v: np.float32) -> int:
    v = np.float32(v)
    return int(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))


def activation_range_tflm(activation: str, output_scale: float, output_zero_point: int) -> tuple[int, int]:
    """int8 clamp exactly as TFLite's CalculateActivationRangeQuantized: ``zp + TfLiteRound(f / scale)``
    with the float32 scale, rounding half away from zero."""
    scale = np.float32(output_scale)

    def q(f: float) -> int:
        return int(output_zero_point) + _round_half_away_f32(np.float32(f) / scale)

    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, q(0.0)), 127
    if activation == "RELU6":
        return max(-128, q(0.0)), min(127, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, q(-1.0)), min(127, q(1.0))
    raise TfliteModelError(f"unsupported fused activation {activation!r}")

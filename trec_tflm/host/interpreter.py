"""Run ``.tflite`` models in TensorFlow Lite Micro on the host, with ``TREC_CONV_2D`` registered.

The interpreter is the tflite-micro wheel's (TFLM's reference kernels, built at commit 88f8587b);
TREC_CONV_2D comes from our op library ``libtrec_tflm_ops.so`` (tflm_ops/tflm/ + tflm_ops/src/),
built from the TFLM tree in ``TFLM_ROOT`` by ``tflm_ops/tflm.mk`` and loaded with
``ctypes.CDLL(path, RTLD_GLOBAL)`` before the interpreter looks up ``TrecRegisterer``::

    from trec_tflm.host.interpreter import Runtime
    rt = Runtime("model.tflite")             # or the model's bytes; arena_size=None: generous
    y = rt.invoke(x_int8)                    # [1, ...] or a batch [N, ...] (one inference per image)
    rt.input_scale, rt.input_zero_point, rt.output_scale, rt.output_zero_point
    rt.arena_used_bytes()                    # what TFLM allocated in the arena (host, 64-bit)

Errors (all :class:`TflmError`, a ``RuntimeError``): :class:`TflmTreeMissing` (the model needs the
op library and ``TFLM_ROOT`` is unset or wrong), :class:`OpLibraryBuildError` (both from
:mod:`trec_tflm.host.tflm_build`, which builds and loads the op library),
:class:`UnsupportedOpError` (the model has an operator the interpreter lacks),
:class:`ArenaTooSmallError` (says how many bytes the model needs), :class:`InvokeError`.
Messages include what TFLM printed (``MicroPrintf``, captured by :mod:`trec_tflm.host.capture`).
The model's operators are read with the package's one flatbuffer reader, :mod:`trec_tflm.spec.model`.

Environment: ``TFLM_ROOT`` (required for models with TREC_CONV_2D), ``FLATBUFFERS_ROOT``,
``TREC_TFLM_OPS_LIB`` (a prebuilt ``libtrec_tflm_ops.so``; no TFLM tree needed then),
``TREC_TFLM_BUILD_ROOT`` (where builds go; default ``build/tflm`` of a source checkout, else the user
cache, see trec_tflm.paths), ``TREC_TFLM_SKIP_VERSION_CHECK=1`` (accept a TFLM tree at another commit).
Builds show their progress and keep their log (trec_tflm.progress).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trec_tflm.host.capture import capture_native_output
from trec_tflm.host.tflm_build import TflmError, TflmTreeMissing, load_ops_library
from trec_tflm.spec import model as tm
from trec_tflm.spec import quant
from trec_tflm.spec.op import TREC_CUSTOM_CODE
from trec_tflm.spec.validate import validate_model

#: The symbol of the op library that registers TREC_CONV_2D with the wheel's interpreter.
REGISTERER = "TrecRegisterer"

#: Custom operators the wheel's resolver registers (python_ops_resolver.cc at 88f8587b), besides ours.
WHEEL_CUSTOM_OPS = ("CIRCULAR_BUFFER", "TFLite_Detection_PostProcess", "TFLM_DECODE",
                    "SignalDelay", "SignalEnergy", "SignalFftAutoScale", "SignalFilterBank",
                    "SignalFilterBankLog", "SignalFilterBankSquareRoot",
                    "SignalFilterBankSpectralSubtraction", "SignalFramer", "SignalIrfft",
                    "SignalOverlapAdd", "SignalPCAN", "SignalRfft", "SignalStacker", "SignalWindow")

PathLike = Union[str, os.PathLike]


class UnsupportedOpError(TflmError):
    """The model uses an operator the interpreter does not have."""

    def __init__(self, message: str, ops: Sequence[str], log: str = ""):
        super().__init__(message, log)
        self.ops = list(ops)


class ArenaTooSmallError(TflmError):
    """The tensor arena cannot hold the model; ``needed`` is what this model allocates."""

    def __init__(self, message: str, given: int, needed: Optional[int], log: str = ""):
        super().__init__(message, log)
        self.given = given
        self.needed = needed


class InvokeError(TflmError):
    """An inference failed (e.g. a kernel returned an error)."""


# model_operators was part of this module's API: the reading itself is spec.model's
model_operators = tm.model_operators


# ------------------------------------------------------------------------------------------------
# the runtime
# ------------------------------------------------------------------------------------------------
DEFAULT_MIN_ARENA = 16 * 1024 * 1024

ALLOC_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"[Rr]equested:?\s*(\d+),\s*available\s*(\d+),\s*missing:?\s*(\d+)")


class Runtime:
    """One TFLM interpreter for one model, on the host.

    ``model``: the ``.tflite`` bytes or a path. ``arena_size``: tensor arena bytes (None: at least
    16 MiB, which fits any model this project makes; ask :meth:`arena_used_bytes` for the real need).
    ``register_trec``: load the op library and register TREC_CONV_2D (default: when the model has
    that operator). ``preserve_all_tensors``: TFLM's kPreserveAllTensors allocation (intermediate
    tensors readable with :meth:`tensor`; arena use is then not recorded). ``validate``: run
    :func:`trec_tflm.spec.validate.validate_model` first (default; TFLM itself does not verify the
    flatbuffer). Only tests of TFLM's own refusals pass False, to reach the kernel's Prepare.
    """

    def __init__(self, model: Union[bytes, bytearray, memoryview, PathLike], arena_size: Optional[int] = None,
                 *, register_trec: Optional[bool] = None, preserve_all_tensors: bool = False,
                 validate: bool = True):
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.model = bytes(model)
            self.model_path = None
        else:
            self.model_path = Path(model)
            self.model = self.model_path.read_bytes()
        if validate:
            m = validate_model(self.model, str(self.model_path) if self.model_path else "the model")
        elif len(self.model) < 8 or self.model[4:8] != b"TFL3":
            raise ValueError("not a .tflite flatbuffer (no TFL3 identifier)")
        else:
            m = tm.load_model(self.model)
        self.operators = tm.operator_names(m)
        custom = tm.custom_codes(m)
        known = {TREC_CUSTOM_CODE, *WHEEL_CUSTOM_OPS}
        unknown = sorted(custom - known)
        if unknown:
            raise UnsupportedOpError(
                f"the model uses custom operator(s) {', '.join(unknown)} that the TFLM interpreter does not "
                f"have (custom operators available: {', '.join(sorted(known))})", unknown)
        self.uses_trec = TREC_CUSTOM_CODE in custom
        if register_trec is None:
            register_trec = self.uses_trec
        elif not register_trec and self.uses_trec:
            raise UnsupportedOpError("the model has TREC_CONV_2D operators but register_trec=False",
                                     [TREC_CUSTOM_CODE])
        registerers = []
        if register_trec:
            try:
                load_ops_library()
            except TflmTreeMissing as exc:
                raise TflmTreeMissing(
                    f"this model has TREC_CONV_2D operators, which need the TREC op library built "
                    f"against a TFLM tree: {exc}") from None
            registerers = [REGISTERER]
        self.registered_trec = bool(register_trec)
        self.arena_size = int(arena_size) if arena_size is not None else max(DEFAULT_MIN_ARENA, 10 * len(self.model))
        if self.arena_size <= 0:
            raise ValueError(f"arena_size must be positive, got {arena_size}")
        self.preserve_all_tensors = preserve_all_tensors
        self._registerers = registerers
        self._interp = self._make(self.arena_size)
        self._used = None
        self._in = [self._interp.get_input_details(0)]
        n_out = len(m.subgraphs[0].outputs) if m.subgraphs[0].outputs is not None else 0
        self._out = [self._interp.get_output_details(i) for i in range(n_out)]

    # --------------------------------------------------------------------------------------------
    def _make(self, arena_size: int, *, check: bool = True):
        # lazy: the wheel is an optional native dependency (`trec-tflm eval --help` must not load it)
        from tflite_micro import runtime as tflm_runtime

        cfg = (tflm_runtime.InterpreterConfig.kPreserveAllTensors if self.preserve_all_tensors
               else tflm_runtime.InterpreterConfig.kAllocationRecording)
        with capture_native_output() as log:
            try:
                interp = tflm_runtime.Interpreter.from_bytes(
                    self.model, custom_op_registerers=list(self._registerers), arena_size=arena_size,
                    intrepreter_config=cfg)
                err = None
            except RuntimeError as exc:
                interp, err = None, exc
        text = log[0] if log else ""
        if err is None:
            return interp
        if not check:
            raise TflmError(str(err), text)
        self._raise_for(err, text, arena_size)

    def _raise_for(self, err: Exception, text: str, arena_size: int):
        low = text.lower()
        if "failed to get registration" in low or "didn't find op" in low or "not supported" in low and \
                "op" in low:
            missing = sorted({ln.strip() for ln in text.splitlines() if "registration" in ln.lower()
                              or "didn't find op" in ln.lower()})
            ops = sorted(set(self.operators))
            raise UnsupportedOpError(
                f"TFLM cannot run this model: an operator has no kernel in the interpreter "
                f"(model operators: {', '.join(ops)}; TREC_CONV_2D registered: {self.registered_trec}).\n"
                f"TFLM said:\n{text.strip()}", missing, text) from None
        if ("failed to allocate" in low or "arena size is too small" in low or "missing:" in low
                or "unable to allocate" in low):
            needed = self._measure_need()
            need = f"it needs {needed} bytes (arena_used_bytes on this host)" if needed else \
                "and even a 256 MiB arena was not enough"
            raise ArenaTooSmallError(
                f"the tensor arena of {arena_size} bytes is too small for this model: {need}; pass "
                f"arena_size={needed or 'larger'} or more.\nTFLM said:\n{text.strip()}",
                arena_size, needed, text) from None
        raise TflmError(f"TFLM could not prepare the model ({err}).\nTFLM said:\n{text.strip()}", text) from None

    def _measure_need(self) -> Optional[int]:
        """Arena bytes the model really uses, from an interpreter with a large arena."""
        if self.preserve_all_tensors:
            saved, self.preserve_all_tensors = True, False
        else:
            saved = False
        try:
            probe = self._make(max(256 * 1024 * 1024, 4 * len(self.model)), check=False)
            return self._used_bytes(probe)
        except TflmError:
            return None
        finally:
            self.preserve_all_tensors = saved

    @staticmethod
    def _used_bytes(interp) -> Optional[int]:
        with capture_native_output() as log:
            interp.print_allocations()
        m = ALLOC_TOTAL.search(log[0] if log else "")
        return int(m.group(1)) if m else None

    # --------------------------------------------------------------------------------------------
    def arena_used_bytes(self) -> int:
        """Bytes of the arena TFLM allocated (head + tail; the wheel's RecordingMicroAllocator).
        This is the host's (64-bit) number; on a Cortex-M the same model needs somewhat less, see
        docs/TFLM.md."""
        if self._used is None:
            if self.preserve_all_tensors:
                self._used = self._measure_need()
            else:
                self._used = self._used_bytes(self._interp)
            if self._used is None:
                raise TflmError("TFLM did not report its arena use")
        return self._used

    def allocations_report(self) -> str:
        """TFLM's RecordingMicroAllocator report (what each allocation type took)."""
        if self.preserve_all_tensors:
            raise TflmError("allocations are not recorded with preserve_all_tensors=True")
        with capture_native_output() as log:
            self._interp.print_allocations()
        return log[0] if log else ""

    # --------------------------------------------------------------------------------------------
    @property
    def input_details(self) -> dict:
        return self._in[0]

    @property
    def output_details(self) -> list:
        return list(self._out)

    @staticmethod
    def _qparams(d: dict) -> tuple[float, int]:
        q = d.get("quantization_parameters") or {}
        scales, zps = q.get("scales"), q.get("zero_points")
        if scales is None or len(scales) == 0:
            return 0.0, 0
        return float(scales[0]), int(zps[0]) if zps is not None and len(zps) else 0

    @property
    def input_shape(self) -> tuple:
        return tuple(int(v) for v in self._in[0]["shape"])

    @property
    def input_dtype(self):
        return np.dtype(self._in[0]["dtype"])

    @property
    def output_shape(self) -> tuple:
        return tuple(int(v) for v in self._out[0]["shape"])

    @property
    def output_dtype(self):
        return np.dtype(self._out[0]["dtype"])

    @property
    def input_scale(self) -> float:
        return self._qparams(self._in[0])[0]

    @property
    def input_zero_point(self) -> int:
        return self._qparams(self._in[0])[1]

    @property
    def output_scale(self) -> float:
        return self._qparams(self._out[0])[0]

    @property
    def output_zero_point(self) -> int:
        return self._qparams(self._out[0])[1]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float inputs -> the input tensor's int8 (round half to even, clip), like bench.quantize_inputs."""
        scale, zp = self._qparams(self._in[0])
        if scale <= 0:
            raise ValueError("the model's input is not quantized")
        return quant.quantize_input(x, scale, zp, self.input_dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        scale, zp = self._qparams(self._out[0])
        return (np.asarray(y, np.float32) - zp) * np.float32(scale)

    # --------------------------------------------------------------------------------------------
    def _invoke_one(self, x: np.ndarray) -> list:
        with capture_native_output() as log:
            try:
                self._interp.set_input(x, 0)
                self._interp.invoke()
                err = None
            except (RuntimeError, ValueError) as exc:
                err = exc
        if err is not None:
            text = log[0] if log else ""
            raise InvokeError(f"TFLM inference failed ({err}).\nTFLM said:\n{text.strip()}", text) from None
        return [self._interp.get_output(i) for i in range(len(self._out))]

    def invoke_all(self, x: np.ndarray) -> list:
        """Run one input; every output tensor, as arrays."""
        shape = self.input_shape
        x = np.asarray(x)
        if x.dtype != self.input_dtype:
            raise TypeError(f"input must be {self.input_dtype} (the model's input type), got {x.dtype}: "
                            "quantize first (Runtime.quantize_input)")
        if x.shape != shape:
            if x.size != int(np.prod(shape)):
                raise ValueError(f"input has shape {x.shape}, the model takes {shape}")
            x = x.reshape(shape)
        return self._invoke_one(np.ascontiguousarray(x))

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Output 0 for one input, or for a batch: with the model's batch 1, an input with a
        leading dimension N (shape [N, ...] matching the rest) runs N inferences and stacks them."""
        x = np.asarray(x)
        shape = self.input_shape
        per = int(np.prod(shape))
        if x.size == per:
            return self.invoke_all(x)[0]
        if shape and shape[0] == 1 and x.ndim >= 1 and x.shape[0] > 1 and x.size == x.shape[0] * per:
            return np.concatenate([self.invoke_all(xi.reshape(shape))[0] for xi in x], axis=0)
        raise ValueError(f"input has shape {x.shape}, the model takes {shape} (or [N, ...] for N inferences)")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch [N, ...] (N inferences), shape [N, ...output without batch]."""
        x = np.asarray(x)
        shape = self.input_shape
        per = int(np.prod(shape))
        if x.size % per:
            raise ValueError(f"input of {x.size} values is not a whole number of {shape} inputs")
        n = x.size // per
        outs = [self.invoke_all(xi.reshape(shape))[0] for xi in x.reshape(n, per)]
        return np.stack([o.reshape(o.shape[1:]) if o.shape and o.shape[0] == 1 else o for o in outs])

    def reset(self) -> None:
        self._interp.reset()

    def tensor(self, index: int, subgraph: int = 0) -> np.ndarray:
        """A tensor's data (needs preserve_all_tensors=True)."""
        if not self.preserve_all_tensors:
            raise TflmError("tensor() needs Runtime(..., preserve_all_tensors=True)")
        d = self._interp.GetTensor(index, subgraph)
        data = np.asarray(d["tensor_data"])
        shape = tuple(int(v) for v in np.ravel(d["shape"]))
        return data.reshape(shape) if data.size == int(np.prod(shape)) else data

    def __repr__(self) -> str:
        src = str(self.model_path) if self.model_path else f"{len(self.model)} bytes"
        return (f"Runtime({src}, arena_size={self.arena_size}, ops={len(self.operators)}, "
                f"trec={'registered' if self.registered_trec else 'no'})")


def run_model(model: Union[bytes, PathLike], inputs: np.ndarray, arena_size: Optional[int] = None) -> np.ndarray:
    """Outputs of ``model`` for a batch of int8 inputs [N, ...] (one TFLM inference each)."""
    return Runtime(model, arena_size).predict(inputs)

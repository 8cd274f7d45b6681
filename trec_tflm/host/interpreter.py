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
op library and ``TFLM_ROOT`` is unset or wrong), :class:`OpLibraryBuildError`,
:class:`UnsupportedOpError` (the model has an operator the interpreter lacks),
:class:`ArenaTooSmallError` (says how many bytes the model needs), :class:`InvokeError`.
Messages include what TFLM printed (``MicroPrintf``).

Environment: ``TFLM_ROOT`` (required for models with TREC_CONV_2D), ``FLATBUFFERS_ROOT``,
``TREC_TFLM_OPS_LIB`` (a prebuilt ``libtrec_tflm_ops.so``; no TFLM tree needed then),
``TREC_TFLM_BUILD_ROOT`` (where builds go; default ``build/tflm`` of a source checkout, else the user
cache, see trec_tflm.paths), ``TREC_TFLM_SKIP_VERSION_CHECK=1`` (accept a TFLM tree at another commit).
Builds show their progress and keep their log (trec_tflm.progress).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trec_tflm import deps, paths, progress
from trec_tflm.host import isolate
from trec_tflm.spec import quant
from trec_tflm.spec.op import TREC_CUSTOM_CODE

#: The tflite-micro commit the pinned wheel (0.dev20260203175027-g88f8587) was built from.
TFLM_COMMIT = deps.TFLM.commit
FLATBUFFERS_TAG = deps.FLATBUFFERS.ref
CMSIS_NN_COMMIT = deps.CMSIS_NN.commit
WHEEL_VERSION = "0.dev20260203175027"

REGISTERER = "TrecRegisterer"
OPS_LIB_NAME = "libtrec_tflm_ops.so"

#: Custom operators the wheel's resolver registers (python_ops_resolver.cc at 88f8587b), besides ours.
WHEEL_CUSTOM_OPS = ("CIRCULAR_BUFFER", "TFLite_Detection_PostProcess", "TFLM_DECODE",
                    "SignalDelay", "SignalEnergy", "SignalFftAutoScale", "SignalFilterBank",
                    "SignalFilterBankLog", "SignalFilterBankSquareRoot",
                    "SignalFilterBankSpectralSubtraction", "SignalFramer", "SignalIrfft",
                    "SignalOverlapAdd", "SignalPCAN", "SignalRfft", "SignalStacker", "SignalWindow")

TREE_HINT = (f"set TFLM_ROOT to a tflite-micro checkout at {TFLM_COMMIT[:8]}... "
             f"({TFLM_COMMIT}); see README 'TFLM tree'")

PathLike = Union[str, os.PathLike]


class TflmError(RuntimeError):
    """Base class: something TFLM refused; ``log`` holds what TFLM printed."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class TflmTreeMissing(TflmError):
    """The op library is needed but no usable TFLM tree is configured."""


class OpLibraryBuildError(TflmError):
    """Building libtrec_tflm_ops.so failed (compiler output in ``log``)."""


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


# ------------------------------------------------------------------------------------------------
# the TFLM tree and the op library
# ------------------------------------------------------------------------------------------------
def tflm_root() -> Optional[Path]:
    """``$TFLM_ROOT`` as a Path, or None when unset."""
    v = os.environ.get("TFLM_ROOT", "").strip()
    return Path(v).expanduser() if v else None


def check_tflm_tree(root: Optional[Path] = None) -> Path:
    """The configured TFLM tree, checked: it exists, looks like tflite-micro and (when it is a git
    checkout) sits at the commit the wheel was built from. Raises TflmTreeMissing otherwise."""
    root = tflm_root() if root is None else Path(root)
    if root is None:
        raise TflmTreeMissing(f"TFLM_ROOT is not set: {TREE_HINT}")
    if not (root / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise TflmTreeMissing(f"TFLM_ROOT={root} is not a tflite-micro tree (no "
                              f"tensorflow/lite/micro/micro_interpreter.h): {TREE_HINT}")
    head = deps.git_head(root)
    if head is not None and head != TFLM_COMMIT and os.environ.get("TREC_TFLM_SKIP_VERSION_CHECK") != "1":
        raise TflmTreeMissing(
            f"TFLM_ROOT={root} is at commit {head}, but the tflite-micro wheel {WHEEL_VERSION} was built "
            f"from {TFLM_COMMIT}; kernels compiled against other headers can corrupt memory. "
            f"Run `git -C {root} checkout {TFLM_COMMIT}` (or set TREC_TFLM_SKIP_VERSION_CHECK=1 "
            "if you know the ABI matches); see README 'TFLM tree'")
    return root


def wheel_dir() -> Path:
    """Directory of the tflite-micro wheel's ``_runtime.so`` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("tflite_micro")
    if spec is None or not spec.origin:
        raise TflmError(f"the tflite-micro wheel is not installed: pip install tflite-micro=={WHEEL_VERSION}")
    d = Path(spec.origin).resolve().parent / "python" / "tflite_micro"
    if not (d / "_runtime.so").is_file():
        raise TflmError(f"tflite-micro is installed but {d / '_runtime.so'} is missing; reinstall "
                        f"tflite-micro=={WHEEL_VERSION}")
    return d


def build_root() -> Path:
    """Where tflm_ops/tflm.mk puts its builds: $TREC_TFLM_BUILD_ROOT, else build/tflm of a source
    checkout or the user cache (trec_tflm.paths.build_dir)."""
    env = os.environ.get("TREC_TFLM_BUILD_ROOT")
    if env:
        return Path(env).expanduser()
    return paths.build_dir("tflm")


def tflm_mk() -> Path:
    return paths.tflm_ops_dir() / "tflm.mk"


def make_command(target: str, goal: str = "lib", *, cmsis_nn: bool = True,
                 extra: Sequence[str] = ()) -> list:
    """The ``make -f tflm_ops/tflm.mk`` command for ``target`` (host, host-core, host-ops, m4, m7...)
    with the trees from the environment (TFLM_ROOT, FLATBUFFERS_ROOT, CMSIS_NN_ROOT)."""
    root = check_tflm_tree()
    cmd = ["make", "--no-print-directory", "-f", str(tflm_mk()), f"TARGET={target}",
           f"TFLM_ROOT={root}", f"BUILD_ROOT={build_root()}"]
    for var in ("FLATBUFFERS_ROOT", "GEMMLOWP_ROOT", "RUY_ROOT"):
        if os.environ.get(var):
            cmd.append(f"{var}={os.environ[var]}")
    # always on the command line: an exported CMSIS_NN_ROOT must not leak into a build without it
    cmd.append(f"CMSIS_NN_ROOT={os.environ.get('CMSIS_NN_ROOT', '') if cmsis_nn else ''}")
    if target == "host-ops":
        cmd.append(f"TFLM_WHEEL_DIR={wheel_dir()}")
    cmd += list(extra)
    cmd.append(goal)
    return cmd


#: What a build goal of tflm.mk is called in the progress display.
_GOAL_STEPS = {"lib": "TFLM libraries", "kernel-runner": "TFLM kernel runner"}


def run_make(target: str, goal: str = "lib", *, cmsis_nn: bool = True, extra: Sequence[str] = (),
             jobs: Optional[int] = None, timeout: float = 3600.0) -> str:
    """Run tflm.mk for ``target``; returns its output. Raises OpLibraryBuildError on failure.
    Goals that compile (``lib``, ``kernel-runner``) show their progress and keep their log in
    ``<build root>/logs/`` (trec_tflm.progress); ``print-*`` goals just answer."""
    cmd = make_command(target, goal, cmsis_nn=cmsis_nn, extra=extra)
    if goal in _GOAL_STEPS:
        if goal == "lib":
            cmd.insert(1, f"-j{jobs or os.cpu_count() or 1}")
        step = ("building the TREC op library for TFLM (host)" if target == "host-ops"
                else f"building {_GOAL_STEPS[goal]} ({target})")
        log = build_root() / "logs" / f"{target}-{goal}.log"
        try:
            run = progress.run_build(cmd, step=step, log=log, timeout=timeout)
        except FileNotFoundError:
            raise OpLibraryBuildError("`make` is not installed (Debian: apt-get install make)") from None
        except subprocess.TimeoutExpired:
            raise OpLibraryBuildError(f"building TFLM ({target}) took longer than {timeout:g} s "
                                      f"(log: {log})") from None
        if not run.ok:
            raise OpLibraryBuildError(f"building TFLM target {target!r} failed:\n$ {' '.join(cmd)}\n{run.tail()}",
                                      log=run.output)
        return run.output
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise OpLibraryBuildError("`make` is not installed (Debian: apt-get install make)") from None
    except subprocess.TimeoutExpired:
        raise OpLibraryBuildError(f"`make {goal}` for TFLM ({target}) took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-40:])
        raise OpLibraryBuildError(f"building TFLM target {target!r} failed:\n$ {' '.join(cmd)}\n{tail}",
                                  log=proc.stdout + proc.stderr)
    return proc.stdout


def target_build_dir(target: str, *, cmsis_nn: bool = True, extra: Sequence[str] = ()) -> Path:
    """Output directory of a tflm.mk configuration (without building it)."""
    return Path(run_make(target, "print-build-dir", cmsis_nn=cmsis_nn, extra=extra).strip().splitlines()[-1])


_lib_lock = threading.Lock()


@functools.cache
def ops_library_path(rebuild: bool = False) -> Path:
    """Path of ``libtrec_tflm_ops.so``: ``$TREC_TFLM_OPS_LIB``, or built (incrementally) with
    tflm_ops/tflm.mk from ``$TFLM_ROOT``. Raises TflmTreeMissing / OpLibraryBuildError."""
    env = os.environ.get("TREC_TFLM_OPS_LIB")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise TflmTreeMissing(f"TREC_TFLM_OPS_LIB={env} does not exist")
        return p
    with _lib_lock:
        if rebuild:
            run_make("host-ops", "clean-target")
        run_make("host-ops")
        path = target_build_dir("host-ops") / OPS_LIB_NAME
    if not path.is_file():
        raise OpLibraryBuildError(f"tflm.mk reported success but {path} is missing")
    return path


_loaded: dict = {}


def load_ops_library() -> ctypes.CDLL:
    """Load the op library into the process (RTLD_GLOBAL, so the interpreter finds TrecRegisterer)."""
    with _lib_lock:
        if "lib" in _loaded:
            return _loaded["lib"]
    path = ops_library_path()
    import tflite_micro  # noqa: F401  (its _runtime.so first: the op library links against it)

    with _lib_lock:
        if "lib" not in _loaded:
            _loaded["lib"] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            _loaded["path"] = path
        return _loaded["lib"]


# ------------------------------------------------------------------------------------------------
# reading a model's operators
# ------------------------------------------------------------------------------------------------
def _schema():
    try:
        from tflite_micro.tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - the wheel ships it
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


@functools.lru_cache(maxsize=1)
def _builtin_names() -> dict:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def model_operators(model: bytes) -> list[str]:
    """Operator names of every operator in every subgraph, in order (builtin names such as
    ``CONV_2D``, custom codes such as ``TREC_CONV_2D``)."""
    schema = _schema()
    m = schema.Model.GetRootAsModel(model, 0)
    names = _builtin_names()
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            codes.append((oc.CustomCode() or b"?").decode("utf-8", "replace"))
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    ops = []
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for j in range(sg.OperatorsLength()):
            idx = sg.Operators(j).OpcodeIndex()
            ops.append(codes[idx] if idx < len(codes) else f"OPCODE_{idx}")
    return ops


def _is_custom(model: bytes) -> set:
    schema = _schema()
    m = schema.Model.GetRootAsModel(model, 0)
    out = set()
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        if max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode())) == schema.BuiltinOperator.CUSTOM:
            out.add((oc.CustomCode() or b"?").decode("utf-8", "replace"))
    return out


# ------------------------------------------------------------------------------------------------
# capturing what TFLM prints (MicroPrintf -> DebugLog -> C stderr)
# ------------------------------------------------------------------------------------------------
_capture_lock = threading.RLock()


@contextlib.contextmanager
def _capture_native_output():
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
                # the wheel prints this on every interpreter; it is noise
                noise = re.compile(r"^Number of resource variables the model uses = .*$")
                lines = [ln for ln in (text + py_out.getvalue()).splitlines() if not noise.match(ln)]
                out.append("\n".join(lines))


# ------------------------------------------------------------------------------------------------
# the runtime
# ------------------------------------------------------------------------------------------------
DEFAULT_MIN_ARENA = 16 * 1024 * 1024

_ALLOC_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
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
            from trec_tflm.spec.validate import validate_model

            validate_model(self.model, str(self.model_path) if self.model_path else "the model")
        elif len(self.model) < 8 or self.model[4:8] != b"TFL3":
            raise ValueError("not a .tflite flatbuffer (no TFL3 identifier)")
        self.operators = model_operators(self.model)
        custom = _is_custom(self.model)
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
        sg = _schema().Model.GetRootAsModel(self.model, 0).Subgraphs(0)
        self._out = [self._interp.get_output_details(i) for i in range(sg.OutputsLength())]

    # --------------------------------------------------------------------------------------------
    def _make(self, arena_size: int, *, check: bool = True):
        from tflite_micro import runtime as tflm_runtime

        cfg = (tflm_runtime.InterpreterConfig.kPreserveAllTensors if self.preserve_all_tensors
               else tflm_runtime.InterpreterConfig.kAllocationRecording)
        with _capture_native_output() as log:
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
        with _capture_native_output() as log:
            interp.print_allocations()
        m = _ALLOC_TOTAL.search(log[0] if log else "")
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
        with _capture_native_output() as log:
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
        with _capture_native_output() as log:
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

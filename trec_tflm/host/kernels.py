"""ctypes binding to the C kernel library (tflm_ops/): the same kernels the MCU runs, built for the host.

The host library is built on demand with gcc (with the flags of ``tflm_ops/flags.mk``, which
``tflm_ops/Makefile`` includes) when it is missing or older than any source, from the sources
:func:`trec_tflm.paths.tflm_ops_dir` finds (the checkout's, or the installed package's copy) into
``native/<variant>/`` under :func:`trec_tflm.paths.build_dir` (the checkout's build/, else the user cache
``$TREC_TFLM_CACHE``, default ``~/.cache/trec_tflm``). Variants:

- ``"host"``        the DSP code path (SXTB16/SMLAD structure, intrinsics emulated in C): what M4/M7 run;
- ``"host-plain"``  the plain C path (what cores without the DSP extension run);
- ``"host-asan"`` / ``"host-asan-plain"``: the same with ``-fsanitize=address,undefined``. Such a library
  can only be loaded into a process started with ``LD_PRELOAD`` of libasan: see :func:`sanitizer_env`.

Usage::

    from trec_tflm.host import kernels
    out = kernels.conv2d_s8(x, w, b, input_zero_point=..., ...)  # same arguments as golden.conv2d_s8
    lib = kernels.kernels("host-plain")                          # another variant
    lib.conv2d_s8(...)

Adding a kernel: declare its prototype in :data:`_PROTOTYPES` and add a method to :class:`Kernels`
(see ``conv2d_s8``: argument checks, ctypes structs, call, status check).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from trec_tflm import paths, progress
from trec_tflm.errors import TrecTflmError
from trec_tflm.spec import golden

VARIANTS = ("host", "host-plain", "host-asan", "host-asan-plain")
LIB_NAME = "libtrec_nn.so"

FLAGS_FILE = "flags.mk"


def _flags_file(root: Path) -> dict[str, list[str]]:
    """tflm_ops/flags.mk's ``NAME := flags`` lines: the compiler flags' one home, shared with the Makefile."""
    path = root / FLAGS_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise NativeBuildError(f"cannot read the kernel flags {path} ({exc}): reinstall trec-tflm "
                               "or run from a source checkout") from None
    flags = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":=")
        if sep and not line.lstrip().startswith("#"):
            flags[name.strip()] = value.split()
    return flags


def _flags(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """(flags of every variant, each variant's own), as the Makefile composes them."""
    f = _flags_file(root)
    try:
        dsp, opt, san = f["TREC_CFLAGS_EMULATE_DSP"], f["TREC_CFLAGS_HOST_OPT"], f["TREC_CFLAGS_SANITIZE"]
        base = f["TREC_CFLAGS_BASE"] + f["TREC_CFLAGS_HOST"]
    except KeyError as exc:
        raise NativeBuildError(f"{root / FLAGS_FILE} lacks {exc.args[0]}: restore it from the source "
                               "checkout") from None
    return base, {"host": opt + dsp, "host-plain": opt, "host-asan": san + dsp, "host-asan-plain": san}


def __getattr__(name: str):
    # _BASE_FLAGS / _VARIANT_FLAGS (what tests compile their own probes with) come from flags.mk,
    # read when asked for: importing this module reads no files
    if name == "_BASE_FLAGS":
        return _flags(source_root())[0]
    if name == "_VARIANT_FLAGS":
        return _flags(source_root())[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NativeBuildError(TrecTflmError, RuntimeError):
    """The host kernel library could not be built (a compile error, or see NativeToolMissing)."""


class NativeToolMissing(NativeBuildError):
    """A tool the host build needs is not installed (gcc, libasan): tests skip on this only."""


# ------------------------------------------------------------------------------------------------
# locating sources and building
# ------------------------------------------------------------------------------------------------
def source_root() -> Path:
    """tflm_ops/ (trec_tflm.paths: the checkout's, or the installed package's copy)."""
    root = paths.tflm_ops_dir()
    if not (root / "src").is_dir() or not (root / "include" / "trec").is_dir():
        raise NativeBuildError(f"kernel sources not found at {root} (expected src/ and include/trec/): "
                               "reinstall trec-tflm or run from a source checkout")
    return root


def _sources(root: Path) -> tuple[list[Path], list[Path]]:
    c_files = sorted((root / "src").glob("*.c"))
    headers = sorted((root / "src").glob("*.h")) + sorted((root / "include" / "trec").glob("*.h"))
    if not c_files:
        raise NativeBuildError(f"no C sources in {root / 'src'}")
    return c_files, headers


def _compiler() -> str:
    cc = os.environ.get("CC", "gcc")
    path = shutil.which(cc)
    if path is None:
        raise NativeToolMissing(
            f"C compiler {cc!r} not found: the native kernels need gcc on the host "
            "(Debian: apt-get install gcc), or set CC to a compatible compiler")
    return path


def _build_dir(variant: str) -> Path:
    d = paths.build_dir("native", variant)
    d.mkdir(parents=True, exist_ok=True)
    return d


_build_lock = threading.Lock()


def library_path(variant: str = "host", *, rebuild: bool = False) -> Path:
    """Path of the host library for ``variant``, (re)built first when missing or stale."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    root = source_root()
    c_files, headers = _sources(root)
    base, variant_flags = _flags(root)
    out = _build_dir(variant) / LIB_NAME
    newest = max(p.stat().st_mtime for p in c_files + headers + [root / FLAGS_FILE])
    with _build_lock:
        if not rebuild and out.exists() and out.stat().st_mtime >= newest:
            return out
        cmd = [_compiler(), *base, f"-I{root / 'include'}", f"-I{root / 'src'}", *variant_flags[variant]]
        # build into a temporary file, then rename: concurrent builders never see a partial library
        fd, tmp = tempfile.mkstemp(prefix=".libtrec_nn.", suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            run = progress.run_build([*cmd, "-o", tmp, *map(str, c_files)], log=out.parent / "build.log",
                                     step=f"building the host kernels ({variant})", dry_run=False, timeout=600.0)
            if not run.ok:
                raise NativeBuildError(f"building {out} failed:\n$ {' '.join(cmd)} ...\n{run.tail()}")
            os.replace(tmp, out)
        except subprocess.TimeoutExpired:
            raise NativeBuildError(f"building {out} took longer than 600 s (log: {out.parent}/build.log)") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def sanitizer_env(base: dict | None = None) -> dict:
    """Environment for a subprocess that loads a ``host-asan*`` library (LD_PRELOAD of libasan)."""
    env = dict(os.environ if base is None else base)
    cc = _compiler()
    asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not asan or not os.path.isabs(asan) or not os.path.exists(asan):
        raise NativeToolMissing("libasan.so not found next to the compiler (Debian: apt-get install libasan8)")
    env["LD_PRELOAD"] = asan
    # CPython's allocations are not leaks we care about; stop at the first error
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1:exitcode=87"
    return env


# ------------------------------------------------------------------------------------------------
# ctypes mirrors of tflm_ops/include/trec/trec_nn_types.h
# ------------------------------------------------------------------------------------------------
TREC_SUCCESS = 0
TREC_ARG_ERROR = -1
TREC_NO_IMPL_ERROR = -2
TREC_BUFFER_ERROR = -3
STATUS_NAMES = {TREC_SUCCESS: "TREC_SUCCESS", TREC_ARG_ERROR: "TREC_ARG_ERROR",
                TREC_NO_IMPL_ERROR: "TREC_NO_IMPL_ERROR", TREC_BUFFER_ERROR: "TREC_BUFFER_ERROR"}


class TrecTile(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int32), ("h", ctypes.c_int32)]


class TrecActivation(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int32), ("max", ctypes.c_int32)]


class TrecDims(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int32), ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("c", ctypes.c_int32)]

    @classmethod
    def of(cls, shape) -> TrecDims:
        n, h, w, c = (int(v) for v in shape)
        return cls(n, h, w, c)


class TrecContext(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("size", ctypes.c_int32)]


class TrecConvParams(ctypes.Structure):
    _fields_ = [("input_offset", ctypes.c_int32), ("output_offset", ctypes.c_int32),
                ("stride", TrecTile), ("padding", TrecTile), ("dilation", TrecTile),
                ("activation", TrecActivation)]


class TrecPerChannelQuantParams(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.POINTER(ctypes.c_int32)), ("shift", ctypes.POINTER(ctypes.c_int32))]


class TrecHashParams(ctypes.Structure):
    _fields_ = [("sub_vector_length", ctypes.c_int32), ("hash_bits", ctypes.c_int32),
                ("hash_center", ctypes.c_int32)]


class TrecReuseStats(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_int32), ("sub_matrices", ctypes.c_int32), ("clusters", ctypes.c_int32),
                ("passes", ctypes.c_int32), ("chunk", ctypes.c_int32), ("plan", ctypes.c_int32),
                ("scatter_tenths", ctypes.c_int32), ("sums_block", ctypes.c_int32)]

    @property
    def remaining_ratio(self) -> float:
        return self.clusters / float(self.rows * self.sub_matrices)


HASH_CENTER_CODES = {"none": 0, "mean": 1}


_P = ctypes.POINTER
_i8p, _i32p = _P(ctypes.c_int8), _P(ctypes.c_int32)

# name -> (restype, argtypes); every kernel in the library is declared here
_PROTOTYPES = {
    "trec_dense_convolve_s8": (ctypes.c_int, [
        _P(TrecContext), _P(TrecConvParams), _P(TrecPerChannelQuantParams),
        _P(TrecDims), _i8p, _P(TrecDims), _i8p, _P(TrecDims), _i32p, _P(TrecDims), _i8p]),
    "trec_dense_convolve_s8_get_buffer_size": (ctypes.c_int32, [_P(TrecDims), _P(TrecDims)]),
    "trec_convolve_s8": (ctypes.c_int, [
        _P(TrecContext), _P(TrecConvParams), _P(TrecHashParams), _P(TrecPerChannelQuantParams),
        _P(TrecDims), _i8p, _P(TrecDims), _i8p, _i8p, _P(TrecDims), _i32p, _P(TrecDims), _i8p,
        _P(TrecReuseStats)]),
    "trec_convolve_s8_get_buffer_size": (ctypes.c_int32, [
        _P(TrecConvParams), _P(TrecHashParams), _P(TrecDims), _P(TrecDims), _P(TrecDims)]),
    "trec_convolve_s8_get_min_buffer_size": (ctypes.c_int32, [
        _P(TrecConvParams), _P(TrecHashParams), _P(TrecDims), _P(TrecDims), _P(TrecDims)]),
    "trec_convolve_s8_get_max_buffer_size": (ctypes.c_int32, [
        _P(TrecConvParams), _P(TrecHashParams), _P(TrecDims), _P(TrecDims), _P(TrecDims)]),
}


def ptr(array: np.ndarray | None, ctype):
    """ctypes pointer to a C-contiguous NumPy array's data (None -> NULL)."""
    if array is None:
        return None
    assert array.flags["C_CONTIGUOUS"], "arrays passed to C must be C-contiguous"
    return array.ctypes.data_as(_P(ctype))


def check_status(status: int, what: str) -> None:
    if status == TREC_SUCCESS:
        return
    name = STATUS_NAMES.get(status, f"unknown status {status}")
    if status == TREC_ARG_ERROR:
        raise ValueError(f"{what}: {name} (a NULL pointer, mismatched dims or a parameter out of range)")
    if status == TREC_BUFFER_ERROR:
        raise RuntimeError(f"{what}: {name} (scratch buffer too small)")
    if status == TREC_NO_IMPL_ERROR:
        raise ValueError(f"{what}: {name} (valid request that the kernel does not implement)")
    raise RuntimeError(f"{what}: {name}")


def _as_int8(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.int8:
        raise ValueError(f"{name} must be int8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _as_int32(name: str, a, shape) -> np.ndarray:
    arr = np.asarray(a)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < -2**31 or arr.max() > 2**31 - 1)):
        raise ValueError(f"{name} must hold int32 values")
    return np.ascontiguousarray(arr, dtype=np.int32)


class Kernels:
    """One loaded variant of the kernel library, with NumPy-level wrappers."""

    def __init__(self, path: Path | str, variant: str = "host"):
        self.path = Path(path)
        self.variant = variant
        self.lib = ctypes.CDLL(str(self.path))
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(self.lib, name, None)
            if fn is None:
                continue  # a library built from an older tree; calls raise AttributeError
            fn.restype = restype
            fn.argtypes = argtypes

    def __repr__(self) -> str:
        return f"Kernels({self.variant!r}, {str(self.path)!r})"

    # --------------------------------------------------------------------------------------------
    def dense_buffer_size(self, input_shape, filter_shape) -> int:
        size = self.lib.trec_dense_convolve_s8_get_buffer_size(
            ctypes.byref(TrecDims.of(input_shape)), ctypes.byref(TrecDims.of(filter_shape)))
        if size < 0:
            check_status(size, "trec_dense_convolve_s8_get_buffer_size")
        return int(size)

    def conv2d_s8(self, input, filter, bias, *, input_zero_point: int, output_zero_point: int,
                  output_multiplier, output_shift, stride=1, dilation=1, padding="SAME",
                  activation_min: int = -128, activation_max: int = 127) -> np.ndarray:
        """TFLite int8 CONV_2D by the C kernel; same arguments and result as golden.conv2d_s8."""
        x = _as_int8("input", input)
        w = _as_int8("filter", filter)
        if x.ndim != 4 or w.ndim != 4:
            raise ValueError("input must be int8 [N, H, W, Cin] and filter int8 [Cout, kh, kw, Cin]")
        if w.shape[3] != x.shape[3]:
            raise ValueError(f"filter Cin {w.shape[3]} != input Cin {x.shape[3]}")
        cout, kh, kw, _ = w.shape
        b = None if bias is None else _as_int32("bias", bias, (cout,))
        mult = _as_int32("output_multiplier", output_multiplier, (cout,))
        shift = _as_int32("output_shift", output_shift, (cout,))
        sh, sw = golden._pair(stride)
        dh, dw = golden._pair(dilation)
        (ho, wo), (pt, pl) = golden.conv_geometry(x.shape[1:3], (kh, kw), (sh, sw), (dh, dw), padding)

        params = TrecConvParams(
            input_offset=-int(input_zero_point), output_offset=int(output_zero_point),
            stride=TrecTile(sw, sh), padding=TrecTile(pl, pt), dilation=TrecTile(dw, dh),
            activation=TrecActivation(int(activation_min), int(activation_max)))
        quant = TrecPerChannelQuantParams(ptr(mult, ctypes.c_int32), ptr(shift, ctypes.c_int32))
        out = np.empty((x.shape[0], ho, wo, cout), np.int8)
        scratch = np.empty(max(self.dense_buffer_size(x.shape, w.shape), 1), np.uint8)
        ctx = TrecContext(scratch.ctypes.data, scratch.size)
        status = self.lib.trec_dense_convolve_s8(
            ctypes.byref(ctx), ctypes.byref(params), ctypes.byref(quant),
            ctypes.byref(TrecDims.of(x.shape)), ptr(x, ctypes.c_int8),
            ctypes.byref(TrecDims.of(w.shape)), ptr(w, ctypes.c_int8),
            ctypes.byref(TrecDims(1, 1, 1, cout)), ptr(b, ctypes.c_int32),
            ctypes.byref(TrecDims.of(out.shape)), ptr(out, ctypes.c_int8))
        check_status(status, "trec_dense_convolve_s8")
        return out


    # --------------------------------------------------------------------------------------------
    def _trec_args(self, x_shape, w_shape, *, input_zero_point, output_zero_point, sub_vector_length,
                   hash_bits, hash_center, stride, dilation, padding, activation_min, activation_max):
        cout, kh, kw, _ = w_shape
        sh, sw = golden._pair(stride)
        dh, dw = golden._pair(dilation)
        (ho, wo), (pt, pl) = golden.conv_geometry(x_shape[1:3], (kh, kw), (sh, sw), (dh, dw), padding)
        if hash_center not in HASH_CENTER_CODES:
            raise ValueError(f"hash_center must be one of {tuple(HASH_CENTER_CODES)}, got {hash_center!r}")
        params = TrecConvParams(
            input_offset=-int(input_zero_point), output_offset=int(output_zero_point),
            stride=TrecTile(sw, sh), padding=TrecTile(pl, pt), dilation=TrecTile(dw, dh),
            activation=TrecActivation(int(activation_min), int(activation_max)))
        hp = TrecHashParams(int(sub_vector_length), int(hash_bits), HASH_CENTER_CODES[hash_center])
        out_shape = (x_shape[0], ho, wo, cout)
        dims = (TrecDims.of(x_shape), TrecDims.of(w_shape), TrecDims.of(out_shape))
        return params, hp, dims, out_shape

    def trec_buffer_sizes(self, input_shape, filter_shape, **layer) -> tuple[int, int]:
        """(get_buffer_size, get_min_buffer_size) of trec_convolve_s8 for one layer (``layer``:
        sub_vector_length, hash_bits and optionally hash_center, stride, dilation, padding)."""
        size, least = self._trec_sizes(input_shape, filter_shape, ("get_buffer_size", "get_min_buffer_size"), **layer)
        return size, least

    def trec_max_buffer_size(self, input_shape, filter_shape, **layer) -> int | None:
        """get_max_buffer_size of trec_convolve_s8 for one layer: the most scratch any plan uses;
        None when that exceeds INT32_MAX (the kernel's TREC_NO_IMPL_ERROR: no cap in practice)."""
        (most,) = self._trec_sizes(input_shape, filter_shape, ("get_max_buffer_size",), **layer, too_large_is_none=True)
        return most

    def _trec_sizes(self, input_shape, filter_shape, queries, *, sub_vector_length, hash_bits, hash_center="mean",
                    stride=1, dilation=1, padding="SAME", too_large_is_none: bool = False) -> list:
        params, hp, (di, df, do), _ = self._trec_args(
            input_shape, filter_shape, input_zero_point=0, output_zero_point=0,
            sub_vector_length=sub_vector_length, hash_bits=hash_bits, hash_center=hash_center, stride=stride,
            dilation=dilation, padding=padding, activation_min=-128, activation_max=127)
        args = [ctypes.byref(v) for v in (params, hp, di, df, do)]
        out = []
        for what in queries:
            v = getattr(self.lib, f"trec_convolve_s8_{what}")(*args)
            if v == TREC_NO_IMPL_ERROR and too_large_is_none:
                out.append(None)
                continue
            if v < 0:
                check_status(v, f"trec_convolve_s8_{what}")
            out.append(int(v))
        return out

    def trec_conv2d_s8(self, input, filter, bias, hash, *, input_zero_point: int, output_zero_point: int,
                       output_multiplier, output_shift, sub_vector_length: int, hash_bits: int,
                       hash_center: str = "mean", stride=1, dilation=1, padding="SAME",
                       activation_min: int = -128, activation_max: int = 127, return_stats: bool = False,
                       scratch_bytes: int | None = None):
        """TREC_CONV_2D by the C kernel; same arguments and output as golden.trec_conv2d_s8.

        ``scratch_bytes`` overrides the scratch size (default: get_buffer_size), to run the plans a
        smaller budget selects. ``return_stats`` returns (output, TrecReuseStats summed over the batch).
        """
        x = _as_int8("input", input)
        w = _as_int8("filter", filter)
        r = _as_int8("hash", hash)
        if x.ndim != 4 or w.ndim != 4 or r.ndim != 2:
            raise ValueError("input must be int8 [N,H,W,Cin], filter int8 [Cout,kh,kw,Cin], hash int8 [L,H]")
        cout = w.shape[0]
        b = None if bias is None else _as_int32("bias", bias, (cout,))
        mult = _as_int32("output_multiplier", output_multiplier, (cout,))
        shift = _as_int32("output_shift", output_shift, (cout,))
        if r.shape != (sub_vector_length, hash_bits):
            raise ValueError(f"hash must be int8 [L={sub_vector_length}, H={hash_bits}], got {r.shape}")
        params, hp, (di, df, do), out_shape = self._trec_args(
            x.shape, w.shape, input_zero_point=input_zero_point, output_zero_point=output_zero_point,
            sub_vector_length=sub_vector_length, hash_bits=hash_bits, hash_center=hash_center, stride=stride,
            dilation=dilation, padding=padding, activation_min=activation_min, activation_max=activation_max)
        if scratch_bytes is None:
            size = self.lib.trec_convolve_s8_get_buffer_size(*(ctypes.byref(v) for v in (params, hp, di, df, do)))
            if size < 0:
                check_status(size, "trec_convolve_s8_get_buffer_size")
            scratch_bytes = int(size)
        scratch = np.empty(max(int(scratch_bytes), 1), np.uint8)
        ctx = TrecContext(scratch.ctypes.data, int(scratch_bytes))
        quant = TrecPerChannelQuantParams(ptr(mult, ctypes.c_int32), ptr(shift, ctypes.c_int32))
        out = np.empty(out_shape, np.int8)
        stats = TrecReuseStats()
        status = self.lib.trec_convolve_s8(
            ctypes.byref(ctx), ctypes.byref(params), ctypes.byref(hp), ctypes.byref(quant),
            ctypes.byref(di), ptr(x, ctypes.c_int8), ctypes.byref(df), ptr(w, ctypes.c_int8),
            ptr(r, ctypes.c_int8), ctypes.byref(TrecDims(1, 1, 1, cout)), ptr(b, ctypes.c_int32),
            ctypes.byref(do), ptr(out, ctypes.c_int8), ctypes.byref(stats))
        check_status(status, "trec_convolve_s8")
        return (out, stats) if return_stats else out


@functools.cache
def kernels(variant: str = "host") -> Kernels:
    """The loaded library for ``variant`` (built on first use, then cached for the process)."""
    return Kernels(library_path(variant), variant)


def load_library(variant: str = "host") -> ctypes.CDLL:
    """The raw ctypes library (prototypes set), for bindings of kernels added elsewhere."""
    return kernels(variant).lib


def conv2d_s8(input, filter, bias, *, input_zero_point: int, output_zero_point: int,
              output_multiplier, output_shift, stride=1, dilation=1, padding="SAME",
              activation_min: int = -128, activation_max: int = 127) -> np.ndarray:
    """TFLite int8 CONV_2D by the C kernel (default host variant); same contract as golden.conv2d_s8."""
    return kernels("host").conv2d_s8(
        input, filter, bias, input_zero_point=input_zero_point, output_zero_point=output_zero_point,
        output_multiplier=output_multiplier, output_shift=output_shift, stride=stride,
        dilation=dilation, padding=padding, activation_min=activation_min,
        activation_max=activation_max)


def trec_conv2d_s8(input, filter, bias, hash, **kwargs):
    """TREC_CONV_2D by the C kernel (default host variant); same contract as golden.trec_conv2d_s8."""
    return kernels("host").trec_conv2d_s8(input, filter, bias, hash, **kwargs)

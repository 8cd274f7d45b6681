"""Fused TensorFlow CPU ops for TRECConv2D training, built from source on first use.

The ops only speed training up (they multiply only the centroids, trec_tflm.training.primitives); the
layer computes the same values on plain TF ops when this library cannot be built (no C++
compiler, no TF headers), when ``TREC_TFLM_DISABLE_TRAIN_OPS=1``, when a GPU is present (the
ops are CPU-only) or for dtypes other than float32/float64, and says so in a one-line notice.
The build goes to ``$TREC_TFLM_CACHE`` (default ``~/.cache/trec_tflm``), keyed by the source
hash, the TensorFlow version and the host.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from trec_tflm import paths

_SOURCE = Path(__file__).with_name("trec_train_ops.cc")
_lock = threading.Lock()
_module = None
_failed: str | None = None
_notices: set[str] = set()
FUSED_DTYPES = ("float32", "float64")


def cache_dir() -> Path:
    return paths.cache_dir()


def _library_path() -> Path:
    import tensorflow as tf

    # Built with -march=native for the machine that runs it: the host name in the key keeps a
    # home directory shared between machines from loading another CPU's build.
    key = _SOURCE.read_bytes() + tf.__version__.encode() + platform.node().encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return cache_dir() / f"trec_train_ops-{digest}.so"


# -march=native first; TensorFlow's bundled Eigen does not compile for AVX512-FP16 with GCC 12
# ("expected initializer before '<' token" in PacketMathFP16.h), so on such CPUs (Sapphire Rapids
# and later) the same build without that extension; last, a build for the baseline ISA.
_ARCH_FLAGS = (["-march=native"], ["-march=native", "-mno-avx512fp16"], [])


def _build(target: Path) -> None:
    import tensorflow as tf

    target.parent.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX", "g++")
    errors = []
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        for arch in _ARCH_FLAGS:
            cmd = [cxx, "-std=c++17", "-shared", "-fPIC", "-O3", *arch, "-w", str(_SOURCE), "-o", str(out),
                   *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(out, target)  # atomic: concurrent builders never load a half-written file
                return
            errors.append(f"{' '.join(arch) or 'no -march'}: {proc.stderr[-1500:]}")
    raise RuntimeError(f"building {_SOURCE.name} failed:\n" + "\n".join(errors))


def load():
    """The loaded op module, or None when unavailable (``unavailable_reason()`` says why)."""
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    with _lock:
        if _module is not None or _failed is not None:
            return _module
        if os.environ.get("TREC_TFLM_DISABLE_TRAIN_OPS") == "1":
            _failed = "disabled by TREC_TFLM_DISABLE_TRAIN_OPS=1"
            return None
        try:
            import tensorflow as tf

            path = _library_path()
            if not path.exists():
                print(f"trec_tflm: building fused training ops into {path} (once)", file=sys.stderr)
                _build(path)
            _module = tf.load_op_library(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure means: use the TF fallback
            _failed = str(exc) or type(exc).__name__
    return _module


def unavailable_reason() -> str | None:
    load()
    return _failed


def notice(message: str) -> None:
    """One line on stderr, once per process for each message: the layer never trains on the
    slower route silently."""
    if message not in _notices:
        _notices.add(message)
        print(f"trec_tflm: {message}", file=sys.stderr, flush=True)


def for_training(dtype) -> object | None:
    """The op module for a TRECConv2D computing in ``dtype``, or None (plain-TF route) with a
    one-line notice of why."""
    import tensorflow as tf

    slower = "TRECConv2D trains on plain TF ops (same results, N-row products: slower)"
    if tf.config.list_logical_devices("GPU"):
        notice(f"GPU present: {slower} on the GPU; the fused ops are CPU-only (docs/TRAINING.md)")
        return None
    name = tf.as_dtype(dtype).name
    if name not in FUSED_DTYPES:
        notice(f"the fused training ops take {' or '.join(FUSED_DTYPES)}, not {name}: {slower}")
        return None
    module = load()
    if module is None:
        reason = _failed.strip().splitlines()[0][:200]
        notice(f"fused training ops unavailable ({reason}): {slower}; "
               "trec_tflm.training.train_ops.unavailable_reason() has the details")
    return module

"""Fused TensorFlow CPU ops for TRECConv2D training, built from source on first use.

The ops only speed training up; every one has a plain-TF equivalent in trec_tflm.layers, used
when this library cannot be built (no C++ compiler, no TF headers) or when
``TREC_TFLM_DISABLE_TRAIN_OPS=1``. The build goes to ``$TREC_TFLM_CACHE`` (default
``~/.cache/trec_tflm``), keyed by the source hash and the TensorFlow version.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from .. import paths

_SOURCE = Path(__file__).with_name("trec_train_ops.cc")
_lock = threading.Lock()
_module = None
_failed: str | None = None


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
    """The loaded op module, or None when unavailable (the reason is warned once)."""
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
            _failed = str(exc)
            warnings.warn(f"trec_tflm: fused training ops unavailable, using plain TF ops "
                          f"(slower training, same results): {exc}", RuntimeWarning, stacklevel=2)
    return _module


def unavailable_reason() -> str | None:
    load()
    return _failed

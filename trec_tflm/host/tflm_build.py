"""The TFLM tree, the ``make -f tflm_ops/tflm.mk`` driver and the TREC op library for the host.

- the pins: the tflite-micro commit the wheel was built from (:data:`TFLM_COMMIT`), the flatbuffers
  and CMSIS-NN refs (from :mod:`trec_tflm.deps`);
- :func:`check_tflm_tree`: ``$TFLM_ROOT`` exists, is tflite-micro and sits at :data:`TFLM_COMMIT`;
- :func:`make_command` / :func:`run_make` / :func:`target_build_dir`: tflm_ops/tflm.mk for a target
  (host, host-ops, m4, m7...), with progress and a kept log (trec_tflm.progress);
- :func:`ops_library_path` / :func:`load_ops_library`: ``libtrec_tflm_ops.so`` (TREC_CONV_2D for the
  wheel's interpreter), built incrementally or taken from ``$TREC_TFLM_OPS_LIB``, loaded RTLD_GLOBAL.

Errors: :class:`TflmError` (the root of the host runtime's errors, a ``RuntimeError``),
:class:`TflmTreeMissing`, :class:`OpLibraryBuildError`.

Environment: ``TFLM_ROOT``, ``FLATBUFFERS_ROOT``, ``CMSIS_NN_ROOT``, ``TREC_TFLM_OPS_LIB``,
``TREC_TFLM_BUILD_ROOT`` (where builds go; default ``build/tflm`` of a source checkout, else the user
cache, see trec_tflm.paths), ``TREC_TFLM_SKIP_VERSION_CHECK=1`` (accept a TFLM tree at another commit).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from trec_tflm import deps, paths, progress
from trec_tflm.errors import TrecTflmError

#: The tflite-micro commit the pinned wheel (0.dev20260203175027-g88f8587) was built from.
TFLM_COMMIT = deps.TFLM.commit
FLATBUFFERS_TAG = deps.FLATBUFFERS.ref
CMSIS_NN_COMMIT = deps.CMSIS_NN.commit
WHEEL_VERSION = "0.dev20260203175027"

OPS_LIB_NAME = "libtrec_tflm_ops.so"

TREE_HINT = (f"set TFLM_ROOT to a tflite-micro checkout at {TFLM_COMMIT[:8]}... "
             f"({TFLM_COMMIT}); see README 'TFLM tree'")


class TflmError(TrecTflmError, RuntimeError):
    """Base class: something TFLM refused; ``log`` holds what TFLM printed."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class TflmTreeMissing(TflmError):
    """The op library is needed but no usable TFLM tree is configured."""


class OpLibraryBuildError(TflmError):
    """Building libtrec_tflm_ops.so failed (compiler output in ``log``)."""


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
    return paths.build_dir_or_env("TREC_TFLM_BUILD_ROOT", "tflm")


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
    # its _runtime.so first: the op library links against it (lazy: the wheel is an optional, native dependency)
    import tflite_micro  # noqa: F401

    with _lib_lock:
        if "lib" not in _loaded:
            _loaded["lib"] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            _loaded["path"] = path
        return _loaded["lib"]

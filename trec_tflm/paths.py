"""Where trec_tflm finds its C sources and where it writes its builds.

The kernel, TFLM glue and firmware sources (``tflm_ops/`` and ``boards/``) live at the top of the
repository. Run from a source checkout (``PYTHONPATH`` or ``pip install -e .``), they are used
there; a wheel or an sdist install carries copies inside the package (``trec_tflm/_data/``, copied by
setup.py's build step). :func:`source_root` is the one place that decides; every command asks it.

Builds go to the checkout's ``build/`` when running from a (writable) checkout. An installed package
never writes into its own directory (site-packages may be shared or read-only): its builds go to the
user cache, ``$TREC_TFLM_CACHE`` (default ``~/.cache/trec_tflm``), in a directory of their own per
installation (two installed versions must not link each other's objects).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Optional

from trec_tflm.errors import TrecTflmError

PACKAGE_DIR = Path(__file__).resolve().parent
#: Where build_py puts the copies of the source trees in a wheel.
DATA_DIR = PACKAGE_DIR / "_data"
#: The repository's top-level source trees an installed package carries.
SOURCE_TREES = ("tflm_ops", "boards")
# A file of each tree that every command needs: the tree is there when these are.
_MARKERS = ("tflm_ops/tflm.mk", "boards/firmware.mk")


class SourcesMissing(TrecTflmError, FileNotFoundError):
    """Neither a source checkout nor the package's copy of tflm_ops/ and boards/ was found."""


def _has_sources(root: Path) -> bool:
    return all((root / m).is_file() for m in _MARKERS)


def checkout_root() -> Optional[Path]:
    """The repository this package is imported from (PYTHONPATH or an editable install), or None
    for an installed package."""
    root = PACKAGE_DIR.parent
    return root if _has_sources(root) else None


@functools.lru_cache(maxsize=1)
def source_root() -> Path:
    """The directory that holds ``tflm_ops/`` and ``boards/``: the checkout, else the installed
    package's ``_data/``. Raises SourcesMissing when neither has them."""
    root = checkout_root()
    if root is not None:
        return root
    if _has_sources(DATA_DIR):
        return DATA_DIR
    raise SourcesMissing(
        f"the C sources of trec-tflm (tflm_ops/, boards/) are neither beside the package ({PACKAGE_DIR.parent}) "
        f"nor in it ({DATA_DIR}): this installation was not built by trec-tflm's setup.py. Reinstall it "
        "with `pip install <trec-tflm checkout or sdist>` or run from a source checkout")


def tflm_ops_dir() -> Path:
    """``tflm_ops/``: the C kernels, the TFLM glue, tflm.mk."""
    return source_root() / "tflm_ops"


def boards_dir() -> Path:
    """``boards/``: firmware.mk, the boards' board.mk and linker scripts, the firmware app."""
    return source_root() / "boards"


def cache_dir() -> Path:
    return Path(os.environ.get("TREC_TFLM_CACHE", Path.home() / ".cache" / "trec_tflm"))


def writable_dir(preferred: Path) -> Optional[Path]:
    """``preferred``, created, when it can be written to; else None."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return None


def build_dir(*parts: str) -> Path:
    """A directory for build outputs (not created): ``build/<parts>`` of the checkout when it is
    writable, else ``<cache_dir>/builds/<installation key>/<parts>``."""
    root = checkout_root()
    if root is not None and writable_dir(root / "build") is not None:
        return root.joinpath("build", *parts)
    key = hashlib.sha1(str(source_root()).encode()).hexdigest()[:12]
    return cache_dir().joinpath("builds", key, *parts)


def build_dir_or_env(variable: str, *parts: str) -> Path:
    """``$variable`` when it is set (a user's choice of where one kind of build goes), else :func:`build_dir`."""
    env = os.environ.get(variable)
    if env:
        return Path(env).expanduser()
    return build_dir(*parts)


def replace_atomically(path, write) -> None:
    """Produce ``path`` by ``write(tmp)`` into a temporary file beside it, then rename: ``path`` never
    holds a partial file, and an error leaves nothing new behind. The temporary name keeps the suffix
    (Keras' ``model.save`` picks the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_output_file(path, option: str) -> Path:
    """Refuse, before any long work, an output file path that cannot be written: a directory, a
    parent that is a file, a directory without write permission. Raises ValueError naming the
    option and the fix; returns the path."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {p} is a directory: give a file name (e.g. {p / 'model.tflite'})")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {p}: {parent} is not a directory, so the file cannot be created there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {p}: no permission to write in {parent}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{option} {p} exists and is not writable")
    return p

"""Where trec_tflm writes its builds: the source tree's build/ when it is writable (a clone), else
the user cache ($TREC_TFLM_CACHE, default ~/.cache/trec_tflm; an installed package)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parent.parent


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

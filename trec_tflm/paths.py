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

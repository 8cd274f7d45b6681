"""`ruff check` with the configuration in pyproject.toml: lint errors fail `make test` like any test."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    # the dev extra installs ruff into the same environment as pytest
    exe = Path(sys.executable).with_name("ruff")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    raise AssertionError("ruff is not installed: pip install -e '.[dev]' (make test installs it)")


def test_ruff_clean():
    proc = subprocess.run(_ruff() + ["check", "--output-format", "concise", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_ruff_reads_our_configuration():
    # an unsorted import block in a (virtual) file of the checkout must be reported: the I rules come
    # from pyproject.toml (ruff's defaults leave them off), so this fails if the configuration is not read
    proc = subprocess.run(_ruff() + ["check", "--output-format", "concise", "--no-cache", "--stdin-filename",
                                     "tests/probe.py", "-"], input="import sys\nimport os\n\nprint(os, sys)\n",
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "I001" in proc.stdout, proc.stdout + proc.stderr

"""Keep TensorFlow's start-up log off the terminal.

TensorFlow 2.21 logs through absl before absl is initialised, and such lines (the absl warning,
oneDNN, cudart_stub, cuInit, cpu_feature_guard) go to file descriptor 2 whatever
TF_CPP_MIN_LOG_LEVEL says. So the first import of ``tensorflow`` runs with descriptor 2 sent to a
file; afterwards the known start-up lines are dropped and anything else is written on.
``install()`` arranges that for whichever code imports TensorFlow first (the CLI calls it unless
``--debug``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "               # absl INFO / WARNING lines
    r"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] "             # no GPU: cuInit fails
    r"|To enable the following instructions: .* rebuild TensorFlow)")


@contextlib.contextmanager
def filtered_stderr(drop=START_UP_NOISE.search):
    """Descriptor 2 into a file for the block; then every line ``drop`` does not match is written on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not drop(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _Loaded(importlib.abc.Loader):
    """Hands the import system the module already imported under the filter."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        with filtered_stderr():
            module = importlib.import_module("tensorflow")
            with contextlib.suppress(Exception):  # platform start-up (cuInit) logs here, not at import
                module.config.list_physical_devices()
        return importlib.machinery.ModuleSpec(name, _Loaded(module), origin=getattr(module, "__file__", None))


def install() -> None:
    """Filter TensorFlow's start-up lines at its first import (no-op once it is imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFirstImport())

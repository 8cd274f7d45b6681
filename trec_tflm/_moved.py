"""Old flat module paths (``trec_tflm.layers``, ``trec_tflm.runtime``, ...) as aliases of their new homes.

The package was flat until 0.1; its modules now live in layers (``spec``, ``training``, ``tflite``, ``host``,
``target``, ``bench``; see docs/ARCHITECTURE.md). For one release ``import trec_tflm.layers`` and the like still
work: this finder hands out the module at its new path, so the old name and the new one are the same object
(a monkeypatch through either is seen by both), and warns once with the new path. Remove after 0.2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "quant": "spec.quant", "golden": "spec.golden", "tflite_model": "spec.model", "validate": "spec.validate",
    "layers": "training.layers", "primitives": "training.primitives", "train_ops": "training.train_ops",
    "models": "training.models", "zoo": "training.zoo", "cloning": "training.cloning",
    "transform": "training.transform", "train": "training.train", "distill": "training.distill",
    "convert": "tflite.convert", "inspect": "tflite.describe",
    "runtime": "host.interpreter", "native": "host.kernels", "evaluate": "host.evaluate",
    "isolate": "host.isolate",
    "firmware": "target.firmware", "deploy": "target.deploy", "qemu": "target.qemu",
    "serial_protocol": "target.serial_protocol", "mlperf": "target.mlperf",
    "compare": "bench.compare", "bench_kernels": "bench.kernels", "kernel_bench": "bench.kernel_runner",
    "bench_train": "bench.training",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        # the import system has just stamped the alias's spec on the module: give it back its own
        module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        head, _, rest = fullname.partition(".")
        if head != "trec_tflm" or "." in rest or rest not in MOVED:
            return None
        new = f"trec_tflm.{MOVED[rest]}"
        warnings.warn(f"{fullname} moved to {new}; the old path goes away in trec-tflm 0.2",
                      DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())

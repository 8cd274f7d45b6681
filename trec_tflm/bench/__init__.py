"""Benchmarks: kernels on emulated Cortex-M, models on boards, training-step cost."""


def __getattr__(name):
    # trec_tflm.bench was a module (now bench.board + bench.command): its names resolve for one release
    import importlib
    import warnings

    for module in ("trec_tflm.bench.board", "trec_tflm.bench.command"):
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            warnings.warn(f"trec_tflm.bench.{name} moved to {module}.{name}; the old path goes away in trec-tflm 0.2",
                          DeprecationWarning, stacklevel=2)
            return getattr(mod, name)
    raise AttributeError(f"module 'trec_tflm.bench' has no attribute {name!r}")

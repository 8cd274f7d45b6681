"""The tuner (issue 20): the cost model of a convolution's instructions on Cortex-M7/M4
(:mod:`trec_tflm.tune.cost`, coefficients in :mod:`trec_tflm.tune.coefficients`), its calibration and
held-out check against QEMU (:mod:`trec_tflm.tune.calibrate`) on the layers of
:mod:`trec_tflm.tune.layers`; the per-layer candidates and whole-network settings
(:mod:`trec_tflm.tune.search`), the per-layer scratch budgets that fit the arena
(:mod:`trec_tflm.tune.memory`), the result measured on QEMU (:mod:`trec_tflm.tune.measure`),
``trec_tflm.tune`` (:mod:`trec_tflm.tune.run`), its report
(:mod:`trec_tflm.tune.report`) and ``trec-tflm tune`` (:mod:`trec_tflm.tune.command`)."""

import sys
import types


class _CallablePackage(types.ModuleType):
    """``trec_tflm.tune(model, train_data, ...)`` is the tuner's API, and ``trec_tflm.tune`` is also
    this package: once any of its modules is imported, Python binds the package to the name, so the
    package itself must be the call (:func:`trec_tflm.tune.run.tune`)."""

    def __call__(self, *args, **kwargs):
        return run.tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

from trec_tflm.tune import run  # noqa: E402  (after the class: run imports this package's modules)

"""The tuner (issue 20): the cost model of a convolution's instructions on Cortex-M7/M4
(:mod:`trec_tflm.tune.cost`, coefficients in :mod:`trec_tflm.tune.coefficients`), its calibration and
held-out check against QEMU (:mod:`trec_tflm.tune.calibrate`) on the layers of
:mod:`trec_tflm.tune.layers`; the per-layer candidates and whole-network settings
(:mod:`trec_tflm.tune.search`), the per-layer scratch budgets that fit the arena
(:mod:`trec_tflm.tune.memory`), ``trec_tflm.tune`` (:mod:`trec_tflm.tune.run`), its report
(:mod:`trec_tflm.tune.report`) and ``trec-tflm tune`` (:mod:`trec_tflm.tune.command`)."""

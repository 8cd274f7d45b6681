"""The tuner's parts (issue 20): the cost model of a convolution's instructions on Cortex-M7/M4
(:mod:`trec_tflm.tune.cost`, calibrated by :mod:`trec_tflm.tune.calibrate`)."""

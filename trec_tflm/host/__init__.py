"""Running int8 models on the host: TFLM with our op, the C kernels through ctypes, evaluation."""

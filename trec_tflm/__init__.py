"""trec-tflm: TREC convolution trained in Keras 3 and deployed with TensorFlow Lite Micro."""

__version__ = "0.1.0"

# TREC layers register themselves with Keras' serialization on import.
from .layers import ReuseRate, TRECConv2D, reuse_metrics, trec_layers  # noqa: E402,F401

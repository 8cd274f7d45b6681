"""trec-tflm: TREC convolution trained in Keras 3 and deployed with TensorFlow Lite Micro.

``TRECConv2D``, ``reuse_metrics``, ``trec_layers``, ``ReuseRate``, ``to_trec`` and ``tune`` are imported on first
use, so tools that do not need TensorFlow (the C kernel binding, the serial bench host, ``--help``) start fast.
Importing ``trec_tflm.training.layers`` (or touching one of these names) registers the layers with Keras'
serialization, which loading a ``.keras`` file with TREC layers needs.
"""

__version__ = "0.1.0"

from trec_tflm import _moved

_moved.install()

_LAZY = {"TRECConv2D", "ReuseRate", "reuse_metrics", "trec_layers"}


def __getattr__(name):
    if name in _LAZY:
        from trec_tflm.training import layers

        return getattr(layers, name)
    if name == "to_trec":
        from trec_tflm.training.transform import to_trec

        return to_trec
    if name == "tune":  # the package is callable: trec_tflm.tune(...) is trec_tflm.tune.run.tune(...)
        import trec_tflm.tune

        return trec_tflm.tune
    raise AttributeError(f"module 'trec_tflm' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + ["to_trec", "tune"])

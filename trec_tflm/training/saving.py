"""Loading a saved Keras model with the TREC layers registered (``trec-tflm convert``, ``train --model``,
``eval --keras``, ``bench-kernels``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from trec_tflm.errors import TrecTflmError
from trec_tflm.training import layers  # noqa: F401  (registers TRECConv2D for deserialization)


class KerasModelError(TrecTflmError, ValueError):
    """The file is not a Keras 3 ``.keras`` model this package can load; the message says why."""


def load_keras_model(path):
    """Load a .keras file (TREC layers registered); KerasModelError when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix != ".keras" or not zipfile.is_zipfile(p):
        raise KerasModelError(f"{p} is not a Keras model file (expected a Keras 3 '.keras' archive, as "
                              "`trec-tflm train` writes)")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:  # noqa: BLE001 - deserialization raises many types
        raise KerasModelError(f"{p}: cannot load the Keras model: {exc}") from None

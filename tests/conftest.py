"""Shared test settings: quiet TensorFlow, deterministic seeds, and skip helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST (Debian package dataset-fashion-mnist, or Keras' cache)."""
    from trec_tflm.data import DatasetError, load_fashion_mnist

    try:
        return load_fashion_mnist()
    except DatasetError as exc:
        pytest.skip(str(exc))

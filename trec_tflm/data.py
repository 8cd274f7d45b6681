"""Datasets: Fashion-MNIST (Debian package, or Keras' downloader) and CIFAR-10 (pickle directory).

Images come back as float32 in [0, 1], NHWC; labels as int64.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trec_tflm.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                        "Sneaker", "Bag", "Ankle boot")
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                  "truck")
DATASETS = ("fashion_mnist", "cifar10")


class DatasetError(UserError, RuntimeError):
    """A dataset is missing or malformed; the message says how to get it."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated ({arr.size} values, header says {dims})")
    return arr.reshape(dims)


def load_fashion_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST, 28x28x1. Looks in ``path``, then the Debian package, then Keras' cache."""
    candidates = [Path(path)] if path else [DEBIAN_FASHION_MNIST]
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    for d in candidates:
        if all((d / n).is_file() for n in names):
            xtr, ytr, xte, yte = (_read_idx(d / n) for n in names)
            return _fashion(xtr, ytr, xte, yte, source=str(d))
    if path:
        raise DatasetError(f"Fashion-MNIST not found in {path}: expected {', '.join(names)}")
    try:  # machines without the Debian package: Keras' downloader (needs internet once)
        import keras

        (xtr, ytr), (xte, yte) = keras.datasets.fashion_mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise DatasetError(
            "Fashion-MNIST is not available: install the Debian package "
            "(sudo apt-get install dataset-fashion-mnist, files in "
            f"{DEBIAN_FASHION_MNIST}) or allow Keras to download it ({exc})") from exc
    return _fashion(xtr, ytr, xte, yte, source="keras.datasets.fashion_mnist")


def _fashion(xtr, ytr, xte, yte, source) -> Dataset:
    def prep(x):
        return (x.astype(np.float32) / 255.0)[..., None]

    return Dataset("fashion_mnist", prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64),
                   FASHION_MNIST_LABELS, source)


CIFAR10_LAYOUT = ("a directory with the python-pickle batches of CIFAR-10: data_batch_1 ... "
                  "data_batch_5 and test_batch (as in cifar-10-python.tar.gz, folder "
                  "cifar-10-batches-py)")


def load_cifar10(path: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10, 32x32x3, from a pickle directory or Keras' downloader."""
    if path:
        d = Path(path)
        if (d / "cifar-10-batches-py").is_dir():
            d = d / "cifar-10-batches-py"
        files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DatasetError(f"CIFAR-10 not found in {path} (missing {', '.join(missing)}): "
                               f"expected {CIFAR10_LAYOUT}")
        xs, ys = [], []
        for f in files:
            with open(f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[b"labels"], np.int64))
        xtr, ytr = np.concatenate(xs[:5]), np.concatenate(ys[:5])
        xte, yte = xs[5], ys[5]
        source = str(d)
    else:
        try:
            import keras

            (xtr, ytr), (xte, yte) = keras.datasets.cifar10.load_data()
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"CIFAR-10 is not available offline: pass --dataset-path with "
                               f"{CIFAR10_LAYOUT} ({exc})") from exc
        ytr, yte = ytr.reshape(-1), yte.reshape(-1)
        source = "keras.datasets.cifar10"
    return Dataset("cifar10", xtr.astype(np.float32) / 255.0, ytr.astype(np.int64),
                   xte.astype(np.float32) / 255.0, yte.astype(np.int64), CIFAR10_LABELS, source)


def fashion_as_cifar_shape(ds: Dataset) -> Dataset:
    """Fashion-MNIST padded to 32x32 and repeated over 3 channels: a stand-in for CIFAR-10's
    input shape where CIFAR-10 is not on the machine (benchmarks say which data they used)."""

    def conv(x):
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        return np.repeat(x, 3, axis=3)

    return Dataset("fashion_mnist_32x32x3", conv(ds.x_train), ds.y_train, conv(ds.x_test),
                   ds.y_test, ds.labels, ds.source + " (padded to 32x32x3)")


def load_dataset(name: str, path: str | os.PathLike | None = None) -> Dataset:
    if name == "fashion_mnist":
        return load_fashion_mnist(path)
    if name == "cifar10":
        return load_cifar10(path)
    if name == "fashion_mnist_32x32x3":
        return fashion_as_cifar_shape(load_fashion_mnist(path))
    raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASETS}")

"""Datasets: Fashion-MNIST (Debian package, or Keras' downloader), CIFAR-10 (pickle directory) and a
directory of labelled images of your own ("images": one subfolder per class).

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
DATASETS = ("fashion_mnist", "cifar10", "images")


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


# ------------------------------------------------------------------------------------------------
# a directory of labelled images
# ------------------------------------------------------------------------------------------------
# the files keras.utils.image_dataset_from_directory reads; classes in its (sorted) order
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
IMAGE_LAYOUT = ("DIR/<class>/*.png|jpg|jpeg|bmp|gif, the classes' names sorted give labels 0, 1, ...; or "
                "DIR/train/<class>/... and DIR/test/<class>/... for a split of your own")
TEST_FRACTION = 0.2  # held out per class when the directory has no train/ and test/ of its own


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    return {c: sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            for c in classes}


def _split_files(files: dict[str, list[Path]], fraction: float, seed: int):
    """Per class, a fixed shuffle (by ``seed``) of the sorted files, the last ``fraction`` held out."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for c, fs in files.items():
        order = rng.permutation(len(fs))
        n_test = int(round(len(fs) * fraction))
        test[c] = [fs[i] for i in order[len(fs) - n_test:]]
        train[c] = [fs[i] for i in order[:len(fs) - n_test]]
    return train, test


def _read(files: dict[str, list[Path]]) -> list[tuple[object, int, Path]]:
    """(decoded uint8 image tensor, label, file) for every file."""
    # TensorFlow decodes and resizes as keras.utils.image_dataset_from_directory does; imported
    # here, not at the top: every command reads this module, and TensorFlow takes seconds to load
    import tensorflow as tf

    out = []
    for label, fs in enumerate(files.values()):
        for f in fs:
            try:
                out.append((tf.io.decode_image(f.read_bytes(), channels=0, expand_animations=False), label, f))
            except (tf.errors.InvalidArgumentError, OSError) as exc:
                raise DatasetError(f"{f}: not a readable image ({str(exc).splitlines()[0][:120]}); "
                                   "remove or replace it") from None
    return out


def _to_arrays(images, size, channels: int):
    """Images with ``channels`` channels, resized to ``size`` (bilinear; None: all must share one size)."""
    import tensorflow as tf  # lazily, see _read

    xs, sizes = [], {}
    for img, _, f in images:
        c = int(img.shape[-1])
        if channels == 1:
            img = tf.image.rgb_to_grayscale(img[..., :3]) if c >= 3 else img[..., :1]
        else:
            img = tf.image.grayscale_to_rgb(img[..., :1]) if c < 3 else img[..., :3]
        sizes.setdefault(tuple(img.shape[:2]), f)
        xs.append(np.asarray(tf.image.resize(tf.cast(img, tf.float32), size) if size else img, np.float32))
    if size is None and len(sizes) > 1:
        listed = "; ".join(f"{h}x{w} (e.g. {f})" for (h, w), f in list(sizes.items())[:3])
        raise DatasetError(f"the images have different sizes: {listed}; resize them to one size, or give the "
                           "size to resize them to (train: the --model file's input size)")
    return np.stack(xs) / 255.0, np.asarray([label for _, label, _ in images], np.int64)


def load_image_directory(path: str | os.PathLike, input_shape=None, *, test_fraction: float = TEST_FRACTION,
                         seed: int = 0) -> Dataset:
    """A directory of labelled images (IMAGE_LAYOUT) as a Dataset: x_test is DIR/test, or a held-out
    ``test_fraction`` of every class. ``input_shape`` (h, w[, c]): resize to h x w (bilinear) and
    take c channels (1 grayscale, 3 RGB); without it the images must share one size, and they are
    grayscale if every image is, else RGB."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"--dataset-path {root}: not a directory; expected {IMAGE_LAYOUT}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _class_files(root / "train"), _class_files(root / "test")
        if list(train) != list(test):
            raise DatasetError(f"{root}: train/ has classes {list(train)} but test/ has {list(test)}; "
                               "give both the same class folders")
    else:
        train, test = _split_files(_class_files(root), test_fraction, seed)
    counts = {c: len(train[c]) + len(test[c]) for c in train}
    if not counts or not sum(counts.values()):
        raise DatasetError(f"{root}: no images found ({', '.join(IMAGE_EXTENSIONS)}); expected {IMAGE_LAYOUT}")
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"{root}: class folder(s) {empty} hold no images; add images or remove the folders")
    if len(counts) < 2:
        raise DatasetError(f"{root}: only one class ({next(iter(counts))}); a classifier needs at least two "
                           "class folders")
    if not any(test.values()):
        raise DatasetError(f"{root}: too few images to hold out {test_fraction:.0%} of a class for testing; "
                           "add images, or give DIR/train and DIR/test")
    size = channels = None
    if input_shape is not None:
        size = tuple(int(v) for v in input_shape[:2])
        channels = int(input_shape[2]) if len(input_shape) > 2 else None
        if channels not in (None, 1, 3):
            raise DatasetError(f"images can be given to a model with 1 (grayscale) or 3 (RGB) input channels, "
                               f"not {channels}")
    read_train, read_test = _read(train), _read(test)
    if channels is None:  # grayscale (and grayscale + alpha) files only: one channel
        channels = 1 if all(int(img.shape[-1]) <= 2 for img, _, _ in read_train + read_test) else 3
    x_tr, y_tr = _to_arrays(read_train, size, channels)
    x_te, y_te = _to_arrays(read_test, size, channels)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{root}: train images are {x_tr.shape[1]}x{x_tr.shape[2]}, test images "
                           f"{x_te.shape[1]}x{x_te.shape[2]}; give one size (or the size to resize them to)")
    return Dataset("images", x_tr, y_tr, x_te, y_te, tuple(train), str(root))


def load_dataset(name: str, path: str | os.PathLike | None = None, *, input_shape=None) -> Dataset:
    """The dataset ``name`` (DATASETS, or fashion_mnist_32x32x3). ``input_shape`` (h, w[, c]) is the
    size "images" are resized to (the model's input); the built-in datasets have their own."""
    if name == "images":
        if not path:
            raise DatasetError("--dataset images needs --dataset-path DIR: a directory with one subfolder of "
                               f"images per class ({IMAGE_LAYOUT})")
        return load_image_directory(path, input_shape)
    if name == "fashion_mnist":
        return load_fashion_mnist(path)
    if name == "cifar10":
        return load_cifar10(path)
    if name == "fashion_mnist_32x32x3":
        return fashion_as_cifar_shape(load_fashion_mnist(path))
    raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASETS}")

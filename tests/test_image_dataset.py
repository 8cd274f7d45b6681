"""`--dataset images --dataset-path DIR`: a directory of labelled images (one subfolder per class).

The PNG files are written here byte by byte (zlib + the PNG chunk layout, no imaging library), so
the pixels and labels the loader must return are known without it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from trec_tflm import data


def write_png(path: Path, pixels: np.ndarray) -> None:
    """8-bit grayscale [H, W] or RGB [H, W, 3] PNG."""
    a = np.asarray(pixels, np.uint8)
    color = 0 if a.ndim == 2 else 2
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))  # filter type 0 per scanline

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gray(value: int, h: int = 3, w: int = 4) -> np.ndarray:
    """An image whose pixel (y, x) is value + 10*y + x: every file and position distinguishable."""
    return value + 10 * np.arange(h)[:, None] + np.arange(w)[None, :]


def test_explicit_split_pixels_and_labels(tmp_path):
    # class order is the sorted folder names (keras' order): "bird" 0, "cat" 1, "dog" 2
    for split, start in (("train", 0), ("test", 100)):
        for c, cls in enumerate(["dog", "bird", "cat"]):
            write_png(tmp_path / split / cls / "a.png", gray(start + 30 * c))
    ds = data.load_dataset("images", tmp_path)
    assert ds.labels == ("bird", "cat", "dog")
    assert ds.x_train.shape == (3, 3, 4, 1) and ds.x_train.dtype == np.float32
    # test/bird/a.png is written with start 100 + 30*1 (bird was the 2nd folder written)
    by_label = {int(y): x for x, y in zip(ds.x_test, ds.y_test)}
    np.testing.assert_allclose(by_label[0][..., 0], gray(130) / 255.0, rtol=0, atol=1e-7)  # bird
    np.testing.assert_allclose(by_label[1][..., 0], gray(160) / 255.0, rtol=0, atol=1e-7)  # cat
    np.testing.assert_allclose(by_label[2][..., 0], gray(100) / 255.0, rtol=0, atol=1e-7)  # dog
    assert by_label[0][2, 3, 0] == pytest.approx((130 + 23) / 255.0)


def test_held_out_split_is_disjoint_deterministic_and_per_class(tmp_path):
    for cls, base in (("a", 0), ("b", 100)):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", gray(base + i))
    ds = data.load_dataset("images", tmp_path)
    # 20% of five images per class: one test image per class, four for training
    assert sorted(ds.y_test.tolist()) == [0, 1] and sorted(ds.y_train.tolist()) == [0] * 4 + [1] * 4
    ids = lambda x: sorted(int(round(v)) for v in x[:, 0, 0, 0] * 255)  # noqa: E731  pixel (0,0) = base + i
    assert sorted(ids(ds.x_train) + ids(ds.x_test)) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    for x, y in zip(ds.x_train, ds.y_train):  # every image keeps its own class's label
        assert (x[0, 0, 0] * 255 >= 100) == (y == 1)
    again = data.load_dataset("images", tmp_path)
    np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_resized_to_the_models_input_and_channels(tmp_path):
    for cls, value in (("x", 40), ("y", 200)):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", np.full((6, 8), value))
    ds = data.load_dataset("images", tmp_path, input_shape=(3, 4, 3))
    assert ds.input_shape == (3, 4, 3)
    # a constant image stays that constant under bilinear resizing, in all three channels
    for x, y in zip(ds.x_train, ds.y_train):
        np.testing.assert_allclose(x, (40 if y == 0 else 200) / 255.0, atol=1e-6)


def test_rgb_files_stay_rgb_without_a_shape(tmp_path):
    rgb = np.stack([gray(10), gray(50), gray(90)], axis=-1)
    for cls in ("p", "q"):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", rgb)
    ds = data.load_dataset("images", tmp_path)
    assert ds.input_shape == (3, 4, 3)
    np.testing.assert_allclose(ds.x_test[0] * 255, rgb, atol=1e-4)


@pytest.mark.parametrize("problem, match", [
    ("empty", "no images found"),
    ("one_class", "only one class"),
    ("unreadable", "bad.png: not a readable image"),
    ("sizes", "different sizes: 3x4"),
    ("empty_class", r"class folder\(s\) \['c'\] hold no images"),
    ("missing", "not a directory"),
    ("too_few", "too few images to hold out"),
])
def test_bad_directories_get_clear_errors(tmp_path, problem, match):
    root = tmp_path / "d"
    root.mkdir()
    if problem != "empty" and problem != "missing":
        for cls in (("a",) if problem == "one_class" else ("a", "b")):
            for i in range(1 if problem == "too_few" else 5):
                write_png(root / cls / f"{i}.png", gray(i))
    if problem == "unreadable":
        (root / "b" / "bad.png").write_bytes(b"this is not a PNG")
    if problem == "sizes":
        write_png(root / "b" / "big.png", gray(0, 5, 7))
    if problem == "empty_class":
        (root / "c").mkdir()
    with pytest.raises(data.DatasetError, match=match):
        data.load_dataset("images", tmp_path / "nowhere" if problem == "missing" else root)


def test_images_needs_a_path_and_is_offered_by_train():
    with pytest.raises(data.DatasetError, match="--dataset images needs --dataset-path"):
        data.load_dataset("images")
    import argparse

    from trec_tflm.training.train import add_train_arguments

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--dataset", "images", "--dataset-path", "d", "--checkpoint-path", "o"])
    assert (args.dataset, args.dataset_path) == ("images", "d")


def test_importing_data_does_not_load_tensorflow():
    code = "import sys, trec_tflm.data; print('tensorflow' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def _two_class_dir(root: Path, per_class: int, size=(12, 12)) -> None:
    rng = np.random.default_rng(0)
    for cls, level in (("dark", 40), ("light", 200)):
        for i in range(per_class):
            write_png(root / cls / f"{i}.png", np.clip(level + rng.integers(-20, 21, size), 0, 255))


def test_train_resizes_the_images_to_a_model_files_input(tmp_path):
    """12x12 grayscale files, a model taking 8x8x3: train resizes and widens them (else the model's
    shape check refuses the dataset)."""
    import json

    import keras

    from trec_tflm.cli import main

    _two_class_dir(tmp_path / "imgs", 30)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    code = main(["train", "--model", str(tmp_path / "m.keras"), "--dataset", "images", "--dataset-path",
                 str(tmp_path / "imgs"), "--checkpoint-path", str(tmp_path / "run"), "--epochs", "1"])
    assert code == 0
    settings = json.loads((tmp_path / "run" / "history.json").read_text())["settings"]
    # 30 per class, 6 held out for testing, then a tenth of the 48 others (4) for validation
    assert settings["train_images"] == 44 and settings["dataset_source"] == str(tmp_path / "imgs")


def test_train_refuses_too_few_images_for_a_validation_split(tmp_path):
    from trec_tflm.training.train import TrainConfig, train

    _two_class_dir(tmp_path / "imgs", 5)
    ds = data.load_dataset("images", tmp_path / "imgs")
    with pytest.raises(ValueError, match="8 training images; train needs at least 10"):
        train(TrainConfig(model="fashion_net", dataset="images", dataset_path=str(tmp_path / "imgs"),
                          checkpoint_path=str(tmp_path / "run")), ds)

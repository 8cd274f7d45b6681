#!/usr/bin/env python3
"""Your own CNN, made fast: a plain 3x3 VGG-style stack (not a zoo model) trained dense on
Fashion-MNIST, then handed to ``trec_tflm.tune`` through the Python API.

    python examples/tune_your_own_cnn.py -o runs/vgg            # train 3 epochs, tune, write runs/vgg/
    python examples/tune_your_own_cnn.py -o runs/vgg --model runs/vgg/dense.keras   # skip the training

The dense model is saved as OUT/dense.keras before tuning, so a rerun with ``--model`` reuses it; the
tuner's outputs (trec.keras, trec.tflite, dense.tflite, report.json, candidates.png) go to OUT/tuned/.
This is also the "CNN it has never seen" benchmark of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def vgg(input_shape=(28, 28, 1), classes=10):
    import keras

    def block(filters, n):
        return [keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"c{filters}_{i}")
                for i in range(n)] + [keras.layers.MaxPooling2D(2)]

    return keras.Sequential([keras.Input(input_shape), *block(16, 2), *block(32, 2), *block(64, 1),
                             keras.layers.Flatten(), keras.layers.Dense(classes, name="logits")], name="vgg_fashion")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--model", type=Path, default=None, help="a trained dense model to tune (skip the training)")
    p.add_argument("--epochs", type=int, default=3, help="dense training epochs (default 3)")
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--core", default="m7")
    args = p.parse_args(argv)

    import keras

    import trec_tflm
    from trec_tflm import data

    ds = data.load_dataset("fashion_mnist")
    if args.model is None:
        keras.utils.set_random_seed(0)
        model = vgg(ds.x_train.shape[1:])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        # the tuner holds out the last 1,000 training images for validation: train on the rest
        model.fit(ds.x_train[:-1000], ds.y_train[:-1000], epochs=args.epochs, batch_size=64, verbose=2)
        args.output.mkdir(parents=True, exist_ok=True)
        model.save(args.output / "dense.keras")
    else:
        model = keras.models.load_model(args.model)
    trec_tflm.tune(model, (ds.x_train, ds.y_train), test_data=(ds.x_test, ds.y_test), max_drop=args.max_drop,
                   core=args.core, out=args.output / "tuned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

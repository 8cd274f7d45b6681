"""Reconstruction error of TREC's clustering with and without the hash centre, before training.

For real inputs (Fashion-MNIST test images at conv1; the activations a trained dense twin feeds
to conv2) and the layer's initial orthogonal hash matrix, prints the relative error
||x - x_hat|| / ||x|| of the sub-vectors replaced by their centroids, and rc, for
hash_center="none" (sign of x.R) and "mean" (sign of (x - per-image channel mean).R).

    python examples/benchmarks/hash_centre_error.py [--dense runs/bench/cmp_dense/best.keras]

Without --dense the conv2 row uses a dense twin trained here for one epoch on 20,000 images.
"""

import argparse
import math

import keras
import numpy as np
import tensorflow as tf

from trec_tflm.data import load_fashion_mnist
from trec_tflm.training import primitives
from trec_tflm.training.layers import TRECConv2D
from trec_tflm.training.models import build_model


def relative_error(x: np.ndarray, filters: int, kernel: int, length: int, bits: int, centre: str, seed: int):
    layer = TRECConv2D(filters, kernel, padding="same", sub_vector_length=length, hash_bits=bits,
                       hash_center=centre, hash_initializer=keras.initializers.Orthogonal(seed=seed))
    x = tf.constant(x)
    layer(x[:1])
    cin = int(x.shape[-1])
    k = kernel * kernel * cin
    m = math.ceil(k / length)
    geom = primitives.Geometry(int(x.shape[1]), int(x.shape[2]), cin, (kernel, kernel), (1, 1), (1, 1), "same",
                               m * length)
    sub = tf.reshape(primitives.im2col(x, geom), [x.shape[0], geom.rows, m, length])
    proj = layer._projections(x, sub, layer.hash_kernel, k, m)
    codes = tf.reduce_sum(tf.cast(proj > 0, tf.int32) * (1 << np.arange(bits)), axis=-1)
    x_hat, clusters, _ = primitives.cluster_mean(sub, codes, 2**bits)
    err = tf.norm(sub - x_hat) / tf.norm(sub)
    rc = float(tf.reduce_sum(clusters)) / (x.shape[0] * geom.rows * m)
    return float(err), rc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", help="trained dense fashion_net (.keras) whose conv1 output feeds the conv2 row")
    p.add_argument("--images", type=int, default=64)
    args = p.parse_args()
    ds = load_fashion_mnist()
    x = ds.x_test[: args.images].astype("float32")
    if args.dense:
        dense = keras.models.load_model(args.dense)
    else:
        dense = build_model("fashion_net", trec=[])
        dense.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        dense.fit(ds.x_train[:20000], ds.y_train[:20000], epochs=1, batch_size=64, verbose=0)
    # conv2's input: conv1 -> BN -> ReLU -> 2x2 max-pool of the trained twin
    h = keras.Model(dense.inputs[0], dense.get_layer("pool1").output)(x)
    h = np.asarray(h, dtype="float32")
    print(f"{'input':<46}{'L':>4}{'H':>3}  {'none: err':>10}{'rc':>7}  {'mean: err':>10}{'rc':>7}")
    for label, data, filters, length, bits in (("Fashion-MNIST pixels -> conv1 5x5", x, 32, 5, 6),
                                               (f"conv1 activations {tuple(h.shape[1:])} -> conv2 5x5", h, 64, 32, 8)):
        row = [relative_error(data, filters, 5, length, bits, c, seed=1) for c in ("none", "mean")]
        print(f"{label:<46}{length:>4}{bits:>3}  {row[0][0]:>10.3f}{row[0][1]:>7.3f}  "
              f"{row[1][0]:>10.3f}{row[1][1]:>7.3f}")


if __name__ == "__main__":
    main()

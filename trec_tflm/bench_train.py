"""``trec-tflm bench-train``: training-step cost of TRECConv2D relative to Conv2D, in one run.

For each layer shape, a forward + backward step (gradients for input, kernel, bias and the hash
matrix) of a TRECConv2D and of a Conv2D of the same shape is timed, alternating between them so
that machine load affects both alike; the median ratio is reported. Wall-clock here is only ever
a ratio measured side by side, never an absolute figure or a test assertion.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

# (name, input shape (batch, H, W, Cin), filters, kernel, L, H): the demo net's convolutions and
# CIFAR-10-sized layers of the benchmark models
SHAPES = [
    ("fashion conv1", (64, 28, 28, 1), 32, 5, 5, 6),
    ("fashion conv2", (64, 14, 14, 32), 64, 5, 32, 8),
    ("cifarnet conv1", (64, 32, 32, 3), 64, 5, 15, 6),
    ("squeezenet expand3x3", (64, 16, 16, 16), 64, 3, 16, 6),
]


def _step_fn(layer, x):
    import tensorflow as tf

    layer(x)
    variables = layer.trainable_variables

    @tf.function
    def step(inp):
        with tf.GradientTape() as tape:
            tape.watch(inp)
            y = layer(inp, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [inp, *variables])

    return step


def measure(shape, filters, kernel, length, bits, repeats: int = 7, fused=None) -> dict:
    import keras
    import tensorflow as tf

    from .layers import TRECConv2D

    rng = np.random.default_rng(0)
    x = tf.constant(np.abs(rng.normal(size=shape)).astype("float32"))
    conv = keras.layers.Conv2D(filters, kernel, padding="same")
    trec = TRECConv2D(filters, kernel, padding="same", sub_vector_length=length, hash_bits=bits)
    trec.use_fused_ops = fused
    steps = {"conv": _step_fn(conv, x), "trec": _step_fn(trec, x)}
    times = {k: [] for k in steps}
    for f in steps.values():  # trace and warm up
        for _ in range(2):
            [g.numpy() for g in f(x) if g is not None]
    for _ in range(repeats):
        for name, f in steps.items():
            t0 = time.perf_counter()
            [g.numpy() for g in f(x) if g is not None]
            times[name].append(time.perf_counter() - t0)
    ratios = [t / c for t, c in zip(times["trec"], times["conv"])]
    return {"conv_ms": 1e3 * statistics.median(times["conv"]), "trec_ms": 1e3 * statistics.median(times["trec"]),
            "ratio": statistics.median(ratios), "reuse_rate": trec.reuse_rate}


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--plain-tf", action="store_true", help="use the plain-TF path instead of the fused ops")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command)


def command(args) -> int:
    from . import train_ops

    fused = False if args.plain_tf else None
    path = "plain TF ops" if args.plain_tf or train_ops.load() is None else "fused training ops"
    rows = []
    for name, shape, filters, kernel, length, bits in SHAPES:
        r = measure(shape, filters, kernel, length, bits, args.repeats, fused)
        rows.append({"layer": name, "input": list(shape), "filters": filters, "kernel": kernel,
                     "sub_vector_length": length, "hash_bits": bits, **r})
    if args.json:
        print(json.dumps({"path": path, "rows": rows}, indent=2))
        return 0
    print(f"TRECConv2D vs Conv2D training step (forward + backward, batch {SHAPES[0][1][0]}, {path}; "
          f"median of {args.repeats} alternating runs)")
    print(f"{'layer':<22}{'input':<18}{'Conv2D ms':>10}{'TREC ms':>10}{'ratio':>8}{'rc':>7}")
    for r in rows:
        print(f"{r['layer']:<22}{'x'.join(map(str, r['input'][1:])):<18}{r['conv_ms']:>10.1f}{r['trec_ms']:>10.1f}"
              f"{r['ratio']:>7.2f}x{r['reuse_rate']:>7.3f}")
    return 0

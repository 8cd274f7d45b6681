"""``trec-tflm bench-train``: training-step cost of TRECConv2D relative to Conv2D, in one run.

For each layer shape, a forward + backward step (gradients for input, kernel, bias and the hash
matrix) of a TRECConv2D and of a Conv2D of the same shape is timed, alternating between them so
that machine load affects both alike; the median ratio is reported beside the rc the TREC layer
shows on that input. Then each layer's peak resident memory during a training step is measured in
a process of its own. Wall-clock here is only ever a ratio measured side by side, never an
absolute figure or a test assertion.

The inputs are real activations, since rc (and so the TREC step's cost) depends on the data:
64 Fashion-MNIST test images, or what the earlier layers of a trained dense network make of
them (``activations``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trec_tflm import data, paths
from trec_tflm.training import train_ops
from trec_tflm.training.train import compile_model, init_from

# keras and the modules that define layers and models (training.layers, training.models) are imported
# inside the functions that build models: they load TensorFlow, which `bench-train --help` must not wait for.

BATCH = 64
# (name, input (H, W, Cin), filters, kernel, L, H): the demo net's convolutions and CIFAR-10-sized
# layers of the benchmark models
SHAPES = [
    ("fashion conv1", (28, 28, 1), 32, 5, 5, 6),
    ("fashion conv2", (14, 14, 32), 64, 5, 32, 8),
    ("cifarnet conv1", (32, 32, 3), 64, 5, 15, 6),
    ("squeezenet expand3x3", (16, 16, 16), 64, 3, 16, 6),
]
# where each layer's input comes from (printed with the table)
SOURCES = {
    "fashion conv1": "Fashion-MNIST test images",
    "fashion conv2": "the images through the dense demo twin's conv1, BN, ReLU and pool1",
    "cifarnet conv1": "the images padded to 32x32 and repeated over 3 channels (the CIFAR-10 stand-in)",
    "squeezenet expand3x3": "the stand-in images through a trained dense SqueezeNet stem "
                            "(conv1 3x3 + ReLU, pool1, fire2 squeeze 1x1 + ReLU)",
}
# the quick twins trained when none is given: images, epochs
TWIN_TRAIN_IMAGES = 12000


def _twin_dir() -> Path:
    return paths.cache_dir() / "bench_train"


def _fit_quickly(model, x, y):
    import keras

    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model


def fashion_twin(ds, path=None):
    """The dense demo twin: ``path`` (e.g. the demo's dense/best.keras), else one trained for one
    epoch on the first 12,000 training images (cached)."""
    import keras

    if path:
        return keras.models.load_model(path)
    target = _twin_dir() / "fashion_twin.keras"
    if target.exists():
        return keras.models.load_model(target)
    from trec_tflm.training.models import build_model

    print(f"bench-train: training a dense demo twin for one epoch ({TWIN_TRAIN_IMAGES} images) into {target}",
          file=sys.stderr)
    keras.utils.set_random_seed(0)
    model = _fit_quickly(build_model("fashion_net", trec=()), ds.x_train[:TWIN_TRAIN_IMAGES],
                         ds.y_train[:TWIN_TRAIN_IMAGES])
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    return model


def squeezenet_stem(x_train, y_train):
    """SqueezeNet's first layers as the builder makes them, with a linear head, trained for one
    epoch on 12,000 stand-in images (cached)."""
    import keras

    target = _twin_dir() / "squeezenet_stem.keras"
    if target.exists():
        return keras.models.load_model(target)
    print(f"bench-train: training a dense SqueezeNet stem for one epoch into {target}", file=sys.stderr)
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = keras.layers.Conv2D(16, 1, activation="relu", name="fire2_squeeze")(h)
    out = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    model = _fit_quickly(keras.Model(inp, out), x_train[:TWIN_TRAIN_IMAGES], y_train[:TWIN_TRAIN_IMAGES])
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    return model


def activations(twin=None, dataset_path=None, batch: int = BATCH) -> dict[str, np.ndarray]:
    """The input of every benchmark layer for the first ``batch`` Fashion-MNIST test images."""
    import keras

    ds = data.load_fashion_mnist(dataset_path)
    images = ds.x_test[:batch]
    dense = fashion_twin(ds, twin)
    conv2_in = keras.Model(dense.input, dense.get_layer("pool1").output)(images, training=False)
    cifar = data.fashion_as_cifar_shape(ds)
    stem = squeezenet_stem(cifar.x_train, cifar.y_train)
    squeeze = keras.Model(stem.input, stem.get_layer("fire2_squeeze").output)(cifar.x_test[:batch], training=False)
    return {"fashion conv1": images, "fashion conv2": np.asarray(conv2_in),
            "cifarnet conv1": cifar.x_test[:batch], "squeezenet expand3x3": np.asarray(squeeze)}


def _layers(filters, kernel, length, bits, fused):
    import keras

    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(filters, kernel, padding="same")
    trec = TRECConv2D(filters, kernel, padding="same", sub_vector_length=length, hash_bits=bits)
    trec.use_fused_ops = fused
    return {"conv": conv, "trec": trec}


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


def _run(step, x):
    [g.numpy() for g in step(x) if g is not None]


def measure(x, filters, kernel, length, bits, repeats: int = 7, fused=None) -> dict:
    """Median step times and the median of the per-pair ratios, TREC and Conv2D alternating."""
    import tensorflow as tf

    x = tf.constant(x)
    layers = _layers(filters, kernel, length, bits, fused)
    steps = {name: _step_fn(layer, x) for name, layer in layers.items()}
    times = {k: [] for k in steps}
    for f in steps.values():  # trace and warm up
        for _ in range(2):
            _run(f, x)
    for _ in range(repeats):
        for name, f in steps.items():
            t0 = time.perf_counter()
            _run(f, x)
            times[name].append(time.perf_counter() - t0)
    ratios = [t / c for t, c in zip(times["trec"], times["conv"])]
    return {"conv_ms": 1e3 * statistics.median(times["conv"]), "trec_ms": 1e3 * statistics.median(times["trec"]),
            "ratio": statistics.median(ratios), "reuse_rate": layers["trec"].reuse_rate}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(npy: str, kind: str, filters: int, kernel: int, length: int, bits: int, fused: bool) -> dict:
    """In a fresh process: peak RSS over four training steps of one layer (the first traces the
    step), and the RSS before them."""
    import tensorflow as tf

    x = tf.constant(np.load(npy))
    step = _step_fn(_layers(filters, kernel, length, bits, None if fused else False)[kind], x)
    before = _status_kb("VmRSS")
    for _ in range(4):
        _run(step, x)
    return {"peak_kb": _status_kb("VmHWM"), "baseline_kb": before}


def measure_memory(x, filters, kernel, length, bits, fused: bool, timeout: float = 600) -> dict:
    """Peak RSS of a Conv2D and a TREC training step, each in its own process."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "x.npy")
        np.save(npy, x)
        for kind in ("conv", "trec"):
            code = ("import json, sys; from trec_tflm.bench.training import memory_child; "
                    f"print(json.dumps(memory_child({npy!r}, {kind!r}, {filters}, {kernel}, {length}, {bits}, "
                    f"{fused!r})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                                  check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if proc.returncode != 0:
                raise RuntimeError(f"memory measurement of the {kind} step failed:\n{proc.stderr[-2000:]}")
            out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"conv_peak_mb": out["conv"]["peak_kb"] / 1024, "trec_peak_mb": out["trec"]["peak_kb"] / 1024,
            "memory_ratio": out["trec"]["peak_kb"] / out["conv"]["peak_kb"],
            "conv_step_mb": (out["conv"]["peak_kb"] - out["conv"]["baseline_kb"]) / 1024,
            "trec_step_mb": (out["trec"]["peak_kb"] - out["trec"]["baseline_kb"]) / 1024}


# the fine-tuning measurement also times each tenth of a fit, to see whether the step cost drifts
# over an epoch (rc, hash updates, memory) or the whole-fit ratio is just the machine's load
BLOCKS = 10


def _block_timer(times: list, block: int):
    import keras

    class BlockTimer(keras.callbacks.Callback):
        """Appends the time at the start of the fit and after every ``block`` batches."""

        def on_train_begin(self, logs=None):
            times.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % block == 0:
                times.append(time.perf_counter())

    return BlockTimer()


def measure_fine_tuning(twin_path, dataset_path=None, steps: int = 150, rounds: int = 3) -> dict:
    """The demo's fine-tuning (fashion_net, TREC conv1 and conv2 initialised from the dense twin,
    Adam at lr 1e-3, batch 64) against training the dense twin itself: ``model.fit`` over the
    same ``steps`` batches, the two alternating ``rounds`` times after a first fit each that
    traces them; median ratio of the fit times (validation not included), and the TREC/dense
    ratio of each tenth of the fits (summed over the rounds)."""
    import keras

    from trec_tflm.training.models import build_model

    ds = data.load_fashion_mnist(dataset_path)
    x, y = ds.x_train[:steps * BATCH], ds.y_train[:steps * BATCH]
    dense = keras.models.load_model(twin_path)
    trec = build_model("fashion_net")
    init_from(trec, twin_path)
    models = {"dense": dense, "trec": trec}
    for model in models.values():
        compile_model(model, 1e-3, steps * (rounds + 1))
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    times = {k: [] for k in models}
    block = max(1, steps // BLOCKS)
    block_s = {k: np.zeros(steps // block) for k in models}
    batches_s = {k: [] for k in models}  # per fit: from the first batch to the last full tenth
    for _ in range(rounds):
        for name, model in models.items():
            marks = []
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[_block_timer(marks, block)])
            times[name].append(time.perf_counter() - t0)
            block_s[name] += np.diff(marks)
            batches_s[name].append(marks[-1] - marks[0])
    ratios = [t / d for t, d in zip(times["trec"], times["dense"])]
    from trec_tflm.training.layers import trec_layers

    return {"steps": steps, "rounds": rounds, "dense_s": statistics.median(times["dense"]),
            "trec_s": statistics.median(times["trec"]), "ratio": statistics.median(ratios),
            "dense_fits_s": times["dense"], "trec_fits_s": times["trec"], "block_batches": block,
            "dense_batches_s": batches_s["dense"], "trec_batches_s": batches_s["trec"],
            "block_ratios": (block_s["trec"] / block_s["dense"]).tolist(),
            "rc_last_batch": {layer.name: layer.reuse_rate for layer in trec_layers(trec)}}


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--plain-tf", action="store_true", help="use the plain-TF path instead of the fused ops")
    p.add_argument("--twin", help="trained dense demo twin (.keras, e.g. the demo's dense/best.keras) whose "
                                  "conv1 makes the conv2 input; default: one trained for one epoch, cached")
    p.add_argument("--dataset-path", help="directory with the Fashion-MNIST .gz files")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurement (one process per layer)")
    p.add_argument("--fine-tune-steps", type=int, default=0, metavar="N",
                   help="also time the demo's fine-tuning (whole fashion_net, TREC from the twin) against "
                        "training the dense twin, over N batches (859: an epoch of the demo's 55,000 "
                        "training images), alternating (default: skip)")
    p.add_argument("--fine-tune-rounds", type=int, default=3, help="alternating rounds of --fine-tune-steps")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command)


def command(args) -> int:
    if args.repeats < 1 or args.fine_tune_rounds < 1:
        raise ValueError(f"--repeats and --fine-tune-rounds must be at least 1, got {args.repeats} and "
                         f"{args.fine_tune_rounds}")
    fused = False if args.plain_tf else None
    path = "plain TF ops" if args.plain_tf or train_ops.for_training("float32") is None else "fused training ops"
    inputs = activations(args.twin, args.dataset_path)
    rows = []
    for name, shape, filters, kernel, length, bits in SHAPES:
        x = inputs[name]
        if x.shape[1:] != shape:
            raise RuntimeError(f"{name}: activations of shape {x.shape[1:]}, expected {shape}")
        r = measure(x, filters, kernel, length, bits, args.repeats, fused)
        if not args.no_memory:
            r.update(measure_memory(x, filters, kernel, length, bits, fused is None))
        rows.append({"layer": name, "input": [BATCH, *shape], "source": SOURCES[name], "filters": filters,
                     "kernel": kernel, "sub_vector_length": length, "hash_bits": bits, **r})
    fine = None
    if args.fine_tune_steps > 0:
        twin = args.twin or str(_twin_dir() / "fashion_twin.keras")
        fine = measure_fine_tuning(twin, args.dataset_path, args.fine_tune_steps, args.fine_tune_rounds)
    if args.json:
        print(json.dumps({"path": path, "rows": rows, "fine_tuning": fine}, indent=2))
        return 0
    print(f"TRECConv2D vs Conv2D training step (forward + backward, batch {BATCH}, {path}; "
          f"median of {args.repeats} alternating runs)")
    print(f"{'layer':<22}{'input':<11}{'rc':>6}{'Conv2D ms':>10}{'TREC ms':>9}{'ratio':>7}"
          + ("" if args.no_memory else f"{'Conv2D MB':>11}{'TREC MB':>9}{'ratio':>7}{'step MB C/T':>14}"))
    for r in rows:
        line = (f"{r['layer']:<22}{'x'.join(map(str, r['input'][1:])):<11}{r['reuse_rate']:>6.3f}"
                f"{r['conv_ms']:>10.1f}{r['trec_ms']:>9.1f}{r['ratio']:>6.2f}x")
        if not args.no_memory:
            line += (f"{r['conv_peak_mb']:>11.0f}{r['trec_peak_mb']:>9.0f}{r['memory_ratio']:>6.2f}x"
                     f"{r['conv_step_mb']:>8.0f}/{r['trec_step_mb']:<5.0f}")
        print(line)
    if not args.no_memory:
        print("MB: peak RSS of a process running four training steps of the layer; step MB: that peak minus "
              "the RSS before the first step (tracing included)")
    print("inputs: " + "; ".join(f"{name}: {src}" for name, src in SOURCES.items()))
    if fine:
        print(f"demo fine-tuning vs dense twin (fashion_net, model.fit over {fine['steps']} batches of {BATCH}, "
              f"median of {fine['rounds']} alternating rounds): dense {fine['dense_s']:.1f} s, "
              f"TREC {fine['trec_s']:.1f} s, ratio {fine['ratio']:.2f}x; rc on the last batch "
              + ", ".join(f"{k} {v:.3f}" for k, v in fine["rc_last_batch"].items()))
        print("  each fit (s), dense: " + ", ".join(f"{t:.1f}" for t in fine["dense_fits_s"])
              + "; TREC: " + ", ".join(f"{t:.1f}" for t in fine["trec_fits_s"])
              + f"; of which the first {BLOCKS * fine['block_batches']} batches, dense: "
              + ", ".join(f"{t:.1f}" for t in fine["dense_batches_s"])
              + "; TREC: " + ", ".join(f"{t:.1f}" for t in fine["trec_batches_s"]))
        print(f"  TREC / dense per {fine['block_batches']} batches, in order: "
              + " ".join(f"{r:.2f}" for r in fine["block_ratios"]))
    return 0

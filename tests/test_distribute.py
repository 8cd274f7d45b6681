"""TRECConv2D under tf.distribute.MirroredStrategy: two logical CPU devices train like one.

The logical devices must be configured before TensorFlow initialises its devices, which the
test process has long done, so the training runs in a fresh interpreter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from trec_tflm import TRECConv2D, reuse_metrics

# one strategy object per device set: a second MirroredStrategy over the same devices in one
# process can reuse collective instance keys of the first (a TensorFlow limitation)
STRATEGIES = {1: tf.distribute.MirroredStrategy(["/cpu:0"]),
              2: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}

rng = np.random.default_rng(0)
x = rng.random((32, 10, 10, 2)).astype("float32")
# the second half of every batch of 8 is flat (a few clusters: the border rows), the first half
# noise (many): the replicas see different rc, so the layer's rc must be aggregated across them
x.reshape(4, 8, 10, 10, 2)[:, 4:] = 0.5
y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype("int64")


def run(replicas, hash_trainable):
    with STRATEGIES[replicas].scope():
        keras.utils.set_random_seed(1)
        inp = keras.Input((10, 10, 2))
        h = TRECConv2D(8, 3, padding="same", sub_vector_length=6, hash_bits=4, hash_trainable=hash_trainable,
                       name="trec")(inp)
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
        model = keras.Model(inp, keras.layers.Dense(2, name="head")(h))
        model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=reuse_metrics(model))
    # global batch 8 on one device and on two (4 per replica)
    hist = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    last_batch_rc = model.get_layer("trec").reuse_rate
    return {"loss": hist.history["loss"], "rc": hist.history["rc_trec"], "rc_last": last_batch_rc,
            "weights": [w.ravel().tolist() for w in model.get_weights()]}


print("RESULT " + json.dumps({f"{r}{'T' if t else 'F'}": run(r, t) for t in (False, True) for r in (1, 2)}))
"""


@pytest.fixture(scope="module")
def runs():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env,
                          cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _flat(run):
    return np.concatenate([np.asarray(w) for w in run["weights"]])


@pytest.mark.slow
def test_two_replicas_train_like_one_device(runs):
    """Hash matrix frozen: the same global batch on two replicas gives the same weights, losses and
    rc as on one device, up to float32 summation order (|diff| <= 1e-5)."""
    one, two = runs["1F"], runs["2F"]
    np.testing.assert_allclose(_flat(two), _flat(one), rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert one["loss"][-1] < one["loss"][0]  # it learns
    assert np.abs(_flat(one) - _flat(runs["1T"])).max() > 1e-4  # the frozen/trainable runs differ


@pytest.mark.slow
def test_reuse_rate_is_the_mean_over_replicas(runs):
    """The replicas cluster different images (one half noise, one half flat); the layer's rc and the
    rc metric on two replicas equal the one-device values, i.e. the mean over all images."""
    for key in ("F", "T"):
        one, two = runs["1" + key], runs["2" + key]
        np.testing.assert_allclose(two["rc"], one["rc"], rtol=1e-6)
        assert two["rc_last"] == pytest.approx(one["rc_last"], rel=1e-6)
        assert 0.0 < one["rc_last"] < 1.0


@pytest.mark.slow
def test_two_replicas_with_a_trainable_hash(runs):
    """With the hash matrix learning too: its surrogate's scale (the spread of the projections) is
    pooled over the replicas, so two replicas still train like one device (|diff| <= 1e-5)."""
    one, two = runs["1T"], runs["2T"]
    np.testing.assert_allclose(_flat(two), _flat(one), rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert two["loss"][-1] < two["loss"][0]

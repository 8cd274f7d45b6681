"""Training on real Fashion-MNIST images: learning, checkpoint, history, init from a dense twin."""

import json

import numpy as np
import pytest

import keras
from trec_tflm import trec_layers
from trec_tflm.models import build_model, dense_twin
from trec_tflm.train import TrainConfig, init_from, train


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, fashion):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="fashion_net", dataset="fashion_mnist", checkpoint_path=str(out), epochs=1,
                      train_limit=3000, validation_size=1000, batch_size=64, verbose=0)
    return out, train(cfg, fashion)


def test_short_real_data_training_learns_well_above_chance(small_run):
    _, result = small_run
    assert result.test_accuracy > 0.6  # chance is 0.1 (10 classes)
    assert set(result.reuse_rates) == {"conv1", "conv2"}
    assert all(0.0 < rc <= 1.0 for rc in result.reuse_rates.values())


def test_checkpoint_and_history(small_run):
    out, result = small_run
    assert (out / "best.keras").is_file()
    history = json.loads((out / "history.json").read_text())
    epoch = history["epochs"][0]
    assert {"accuracy", "loss", "val_accuracy", "rc_conv1", "rc_conv2"} <= set(epoch)
    assert history["test"]["accuracy"] == pytest.approx(result.test_accuracy)
    assert history["settings"]["trec_layers"]["conv2"]["sub_vector_length"] == 32
    model = keras.models.load_model(out / "best.keras")
    assert [layer.name for layer in trec_layers(model)] == ["conv1", "conv2"]


def test_init_from_dense_twin_copies_weights(tmp_path):
    trec = build_model("fashion_net")
    dense = dense_twin(build_model("fashion_net"))  # independently initialised twin
    for layer in dense.layers:
        if layer.weights:
            layer.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32")
                               for w in layer.get_weights()])
    path = tmp_path / "dense.keras"
    dense.save(path)
    hash_before = trec.get_layer("conv2").hash_kernel.numpy().copy()
    assert init_from(trec, path) == len([layer for layer in dense.layers if layer.weights])
    np.testing.assert_array_equal(trec.get_layer("conv2").kernel.numpy(), dense.get_layer("conv2").kernel.numpy())
    np.testing.assert_array_equal(trec.get_layer("logits").get_weights()[0], dense.get_layer("logits").get_weights()[0])
    np.testing.assert_array_equal(trec.get_layer("conv2").hash_kernel.numpy(), hash_before)  # hash untouched


def test_init_from_a_different_model_is_refused(tmp_path):
    other = build_model("cmsisnn_cifar10", input_shape=(28, 28, 1), trec=())
    path = tmp_path / "other.keras"
    other.save(path)
    with pytest.raises(ValueError, match="does not match"):
        init_from(build_model("fashion_net"), path)

"""trec_tflm.to_trec: any functional/sequential model's convolutions made TREC, dense_twin its
inverse, and ``trec-tflm train --model FILE.keras``."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

import trec_tflm
from trec_tflm import data
from trec_tflm.spec import model as tm
from trec_tflm.training import train as train_module
from trec_tflm.training.layers import TRECConv2D
from trec_tflm.training.models import MODELS, build_model, conv_layers, dense_twin

TREC_KEYS = ("sub_vector_length", "hash_bits", "hash_center", "hash_initializer", "hash_regularizer",
             "hash_constraint", "hash_trainable")


def vgg(input_shape=(28, 28, 1), softmax=False, name="vgg"):
    """A plain 3x3 VGG-style Sequential CNN (not a zoo model)."""
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="b1_conv1"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="b1_conv2"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="b2_conv1"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax" if softmax else None, name="logits"),
    ], name=name)


def odd_functional():
    """Strides, dilation, VALID padding, relu6, no bias, regularizer/constraint, BatchNorm, a nested
    Sequential and a conv called twice (shared)."""
    inner = keras.Sequential([keras.Input((7, 7, 6)),
                              keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, activation="relu",
                                                  name="inner_conv"),
                              keras.layers.BatchNormalization(name="inner_bn")], name="inner")
    shared = keras.layers.Conv2D(6, 1, activation="relu6", name="shared_1x1")
    inp = keras.Input((14, 14, 3), name="image")
    x = keras.layers.Conv2D(6, 5, strides=2, padding="same", use_bias=False, name="stem",
                            kernel_regularizer=keras.regularizers.L2(1e-3),
                            kernel_constraint=keras.constraints.MaxNorm(3.0))(inp)
    x = inner(x)
    x = shared(shared(x))
    x = keras.layers.Conv2D(4, 3, padding="valid", name="valid3x3")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(5, name="logits")(x), name="odd")


def _randomize_bn(model):
    # moving statistics away from (0, 1), so that a copy that drops them shows
    rng = np.random.default_rng(5)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([w + rng.uniform(0.2, 0.5, w.shape).astype("float32") for w in layer.get_weights()])


def _conv_configs_equal(a, b):
    ca, cb = a.get_config(), b.get_config()
    for key in TREC_KEYS:
        ca.pop(key, None)
        cb.pop(key, None)
    assert ca == cb


# ------------------------------------------------------------------------------------------------
# the transformation
# ------------------------------------------------------------------------------------------------
def test_to_trec_is_exported_lazily_and_is_the_function():
    from trec_tflm.training.transform import to_trec

    assert trec_tflm.to_trec is to_trec and callable(trec_tflm.to_trec)


def test_default_lengths_are_the_zoos_hand_chosen_strips():
    # the zoo's (L per TREC conv) were chosen by hand and measured (docs/BENCHMARKS.md); to_trec's
    # default must land on the same strip for every one of those layers
    for name, spec in MODELS.items():
        dense = build_model(name, trec=())
        trec = trec_tflm.to_trec(dense, layers=list(spec.default_trec))
        convs = conv_layers(trec)
        got = [convs[i].sub_vector_length for i in spec.default_trec]
        assert got == list(spec.default_l), name
        assert all(convs[i].hash_bits == 8 for i in spec.default_trec)
        assert [type(c).__name__ for i, c in enumerate(convs) if i not in spec.default_trec] == \
            ["Conv2D"] * (len(convs) - len(spec.default_trec))


def test_same_configuration_and_weights_and_dense_twin_is_the_inverse():
    model = odd_functional()
    _randomize_bn(model)
    x = np.random.default_rng(0).normal(size=(4, 14, 14, 3)).astype("float32")
    trec = trec_tflm.to_trec(model)

    src, dst = conv_layers(model), conv_layers(trec)
    assert [c.name for c in dst] == ["stem", "inner_conv", "shared_1x1", "valid3x3"]
    assert all(type(c) is TRECConv2D for c in dst)
    # L = j*Cin, the longest strip <= 32: 5x5 over 3 -> 15, 3x3 over 6 -> 18, 1x1 over 6 -> 6, 3x3 over 6 -> 18
    assert [c.sub_vector_length for c in dst] == [15, 18, 6, 18]
    for a, b in zip(src, dst):
        _conv_configs_equal(a, b)
        np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
        if a.use_bias:
            np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    # the shared conv is still one layer, called twice
    shared = trec.get_layer("shared_1x1")
    assert len(shared._inbound_nodes) == 2
    assert trec.get_layer("inner").get_layer("inner_bn").get_weights()[2].min() > 0.1  # moving mean copied
    # plus a hash matrix (L, H) and the rc scalar per TREC layer
    assert model.count_params() + sum(c.sub_vector_length * c.hash_bits + 1 for c in dst) == trec.count_params()

    twin = dense_twin(trec)
    assert all(type(c) is keras.layers.Conv2D for c in conv_layers(twin))
    for a, b in zip(model.weights, twin.weights):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(src, conv_layers(twin)):
        assert a.get_config() == b.get_config()
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    # and the original is left alone
    assert all(type(c) is keras.layers.Conv2D for c in conv_layers(model))


def test_singleton_clusters_give_the_dense_models_outputs():
    # as test_layer.py's test_singleton_clusters_equal_conv2d: H = 16 hyperplanes on sub-vectors of
    # a few dozen dimensions separate the few rows of a small image, every row is its own cluster
    # and the TREC net must compute the dense net's function (not the shared 1x1: 6-long rows after
    # a ReLU6 share sign patterns)
    model = odd_functional()
    _randomize_bn(model)
    x = np.random.default_rng(1).normal(size=(3, 14, 14, 3)).astype("float32")
    k = {"stem": 75, "inner_conv": 54, "valid3x3": 54}
    with pytest.warns(UserWarning, match="not a strip length"):  # L = K: one sub-vector per row
        trec = trec_tflm.to_trec(model, layers=list(k), sub_vector_length=k, hash_bits=16)
    y = trec(x).numpy()
    assert [layer.reuse_rate for layer in trec_tflm.trec_layers(trec)] == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(y, model(x).numpy(), rtol=1e-4, atol=1e-4)
    # the same net with few hash bits clusters, and the outputs move: the comparison above can fail
    coarse = trec_tflm.to_trec(model, hash_bits=1)
    assert np.abs(coarse(x).numpy() - model(x).numpy()).max() > 1e-2


def test_layers_by_name_or_index_and_per_layer_values():
    model = vgg()
    trec = trec_tflm.to_trec(model, layers=["b1_conv2", 2], sub_vector_length={"b2_conv1": 8},
                             hash_bits={"b1_conv2": 5}, hash_center="none", hash_trainable=False)
    convs = conv_layers(trec)
    assert [type(c).__name__ for c in convs] == ["Conv2D", "TRECConv2D", "TRECConv2D"]
    # b1_conv2: the default strip over 8 channels and a 3-wide kernel, 3*8 = 24 <= 32; b2_conv1: L given
    assert (convs[1].sub_vector_length, convs[1].hash_bits) == (24, 5)
    assert (convs[2].sub_vector_length, convs[2].hash_bits) == (8, 8)
    assert convs[1].hash_center == "none" and not convs[1].hash_trainable
    # a TREC model again: its TREC layers keep their own (L, H) and hash matrix
    again = trec_tflm.to_trec(trec, layers=[1, 2])
    np.testing.assert_array_equal(conv_layers(again)[1].hash_kernel.numpy(), convs[1].hash_kernel.numpy())
    assert conv_layers(again)[1].sub_vector_length == 24
    # fewer bits at the same L keep the first H learned projections (the tuner's move to a lower H);
    # another L starts from the initialiser
    fewer = conv_layers(trec_tflm.to_trec(trec, layers=[1, 2], hash_bits={"b1_conv2": 3}, sub_vector_length={
        "b2_conv1": 4}))
    np.testing.assert_array_equal(fewer[1].hash_kernel.numpy(), convs[1].hash_kernel.numpy()[:, :3])
    np.testing.assert_array_equal(fewer[1].kernel.numpy(), convs[1].kernel.numpy())
    assert fewer[2].hash_kernel.shape == (4, 8)


@pytest.mark.parametrize("kwargs,error,needle", [
    ({"layers": ["nope"]}, ValueError, "no convolution named 'nope'"),
    ({"layers": [3]}, ValueError, "index 3 out of range"),
    ({"layers": [True]}, TypeError, "names or indices"),
    ({"sub_vector_length": 73}, ValueError, "'b1_conv1': sub_vector_length L=73 does not fit K=9"),
    ({"sub_vector_length": {"logits": 4}}, ValueError, "not among the layers made TREC"),
    ({"hash_bits": 17}, ValueError, "hash_bits must be an integer in [1, 16]"),
    ({"hash_bits": 0}, ValueError, "hash_bits must be an integer in [1, 16]"),
    ({"filters": 3}, TypeError, "unknown argument(s) ['filters']"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, needle):
    with pytest.raises(error) as info:
        trec_tflm.to_trec(vgg(), **kwargs)
    assert needle in str(info.value)


def test_layers_trec_cannot_take_are_skipped_or_refused_by_name():
    inp = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="tanh_conv")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="plain")(x)
    model = keras.Model(inp, x)
    trec = trec_tflm.to_trec(model)
    assert [type(c).__name__ for c in conv_layers(trec)] == ["Conv2D", "Conv2D", "TRECConv2D"]
    with pytest.raises(ValueError, match="'grouped' cannot become TREC: groups=2"):
        trec_tflm.to_trec(model, layers=["grouped"])
    with pytest.raises(ValueError, match="'tanh_conv' cannot become TREC: activation 'tanh'"):
        trec_tflm.to_trec(model, layers=[1])
    flexible = keras.Input((None, None, 3))
    gap = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="any_size")(flexible))
    with pytest.raises(ValueError, match="none of the convolutions .* 'any_size': its input shape .* unknown height"):
        trec_tflm.to_trec(keras.Model(flexible, gap))


def test_general_path_length_only_when_asked_and_with_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trec_tflm.to_trec(vgg())  # defaults: no warning
    with pytest.warns(UserWarning, match=r"'b1_conv2': L=9 is not a strip length.*\[8, 24\]"):
        trec = trec_tflm.to_trec(vgg(), layers=["b1_conv2"], sub_vector_length=9)
    assert conv_layers(trec)[1].sub_vector_length == 9


def test_inputs_it_cannot_copy_are_refused():
    with pytest.raises(TypeError, match="takes a Keras 3 model"):
        trec_tflm.to_trec("model.keras")
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="is not built"):
        trec_tflm.to_trec(unbuilt)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    sub = Sub()
    sub(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="subclassed model"):
        trec_tflm.to_trec(sub)
    no_conv = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no Conv2D layer"):
        trec_tflm.to_trec(no_conv)


def test_a_conv_inside_a_custom_layer_is_left_or_refused():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3, padding="same", name="hidden")

        def call(self, x):
            return self.conv(x)

    inp = keras.Input((8, 8, 2))
    model = keras.Model(inp, Block(name="block")(keras.layers.Conv2D(2, 3, padding="same", name="outer")(inp)))
    assert [c.name for c in conv_layers(model)] == ["outer", "hidden"]
    with pytest.raises(ValueError, match="'hidden' cannot become TREC: it sits inside a custom layer"):
        trec_tflm.to_trec(model, layers=["hidden"])


# ------------------------------------------------------------------------------------------------
# the result trains, saves, converts
# ------------------------------------------------------------------------------------------------
def test_result_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    trec = trec_tflm.to_trec(vgg())
    trec.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = conv_layers(trec)[0].kernel.numpy().copy()
    history = trec.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(conv_layers(trec)[0].kernel.numpy() - before).max() > 0  # it learned something
    path = tmp_path / "vgg_trec.keras"
    trec.save(path)
    loaded = keras.models.load_model(path)
    assert [type(c).__name__ for c in conv_layers(loaded)] == ["TRECConv2D"] * 3
    np.testing.assert_allclose(loaded(x[:4]).numpy(), trec(x[:4]).numpy(), rtol=1e-5, atol=1e-5)


def test_cli_converts_a_to_trec_vgg_to_trec_ops(tmp_path, capsys, fashion):
    from trec_tflm.cli import main

    path = tmp_path / "vgg_trec.keras"
    trec_tflm.to_trec(vgg()).save(path)
    out = tmp_path / "vgg_trec.tflite"
    assert main(["convert", str(path), "-o", str(out), "--calibration-samples", "16"]) == 0
    assert "3 TREC_CONV_2D op(s)" in capsys.readouterr().out
    m = tm.load_model(out)
    assert sum(tm.is_trec(m, op) for op in m.subgraphs[0].operators) == 3
    entries = tm.read_metadata(m)["trec_layers"]
    assert sorted(e["name"] for e in entries) == \
        ["b1_conv1", "b1_conv2", "b2_conv1"]


def test_a_shared_trec_layer_converts_to_one_op_per_call():
    from trec_tflm.tflite.convert import convert

    inp = keras.Input((12, 12, 4))
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    x = keras.layers.Flatten()(shared(shared(inp)))
    trec = trec_tflm.to_trec(keras.Model(inp, keras.layers.Dense(3)(x)))
    images = np.random.default_rng(0).uniform(size=(16, 12, 12, 4)).astype("float32")
    m = tm.load_model(convert(trec, images, calibration_samples=16))
    assert sum(tm.is_trec(m, op) for op in m.subgraphs[0].operators) == 2
    assert [e["name"] for e in tm.read_metadata(m)["trec_layers"]] == ["shared", "shared"]


# ------------------------------------------------------------------------------------------------
# trec-tflm train --model FILE.keras
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing.keras", "no such file"),
    (lambda d: d / "no_such_model", "neither a zoo model"),
    (lambda d: (d / "notes.keras").write_text("hello") and d / "notes.keras", "not a Keras 3 model file"),
    (lambda d: (d / "weights.h5").write_bytes(b"\x89HDF") and d / "weights.h5", "not a Keras 3 model file"),
])
def test_train_refuses_a_model_path_before_any_work(tmp_path, capsys, monkeypatch, make, needle):
    from trec_tflm.cli import main

    def no_dataset(*a, **k):
        raise AssertionError("the dataset was loaded before --model was checked")

    monkeypatch.setattr(data, "load_dataset", no_dataset)
    monkeypatch.setattr(train_module, "load_dataset", no_dataset)
    path = make(tmp_path)
    assert main(["train", "--model", str(path), "--checkpoint-path", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _train(tmp_path, model_path, *extra, limit=512):
    from trec_tflm.cli import main

    out = tmp_path / "run"
    code = main(["train", "--model", str(model_path), "--checkpoint-path", str(out), "--epochs", "1",
                 "--train-limit", str(limit), "--batch-size", "64", *extra])
    return code, out


def test_train_from_a_users_keras_file(tmp_path, fashion):
    path = tmp_path / "mine.keras"
    vgg(softmax=True).save(path)
    code, out = _train(tmp_path, path, "--trec", "0,2", "--H", "6", "--lr", "0.005", limit=2048)
    assert code == 0
    best = keras.models.load_model(out / "best.keras")
    convs = conv_layers(best)
    assert [type(c).__name__ for c in convs] == ["TRECConv2D", "Conv2D", "TRECConv2D"]
    assert [(convs[i].sub_vector_length, convs[i].hash_bits) for i in (0, 2)] == [(3, 6), (24, 6)]
    history = json.loads((out / "history.json").read_text())
    assert history["test"]["accuracy"] > 0.5  # it learned: 32 steps, chance is 0.1
    assert history["settings"]["model"] == str(path)


@pytest.mark.parametrize("softmax", [True, False])
def test_train_loss_takes_probabilities_from_a_softmax_model(softmax):
    from trec_tflm.training.train import compile_model

    model = vgg(softmax=softmax)
    compile_model(model, 1e-3, 10)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(32, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 32)
    out = model.predict(x, verbose=0).astype(np.float64)
    if not softmax:
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    expected = np.mean(-np.log(out[np.arange(32), y]))  # cross-entropy written out in NumPy
    loss = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(expected, rel=1e-4)


def test_softmax_outputs_are_recognised():
    from trec_tflm.training.train import outputs_probabilities

    assert outputs_probabilities(vgg(softmax=True))
    assert not outputs_probabilities(vgg())
    inp = keras.Input((28, 28, 1))
    nested = keras.Model(inp, keras.layers.Softmax()(vgg(name="inner")(inp)))
    assert outputs_probabilities(nested)
    assert outputs_probabilities(keras.Model(inp, vgg(softmax=True, name="inner2")(inp)))


def test_train_user_model_trec_none_keeps_it_dense_and_lists_must_match(tmp_path, fashion, capsys):
    path = tmp_path / "mine.keras"
    vgg().save(path)
    code, out = _train(tmp_path, path, "--trec", "none")
    assert code == 0
    assert all(type(c) is keras.layers.Conv2D for c in conv_layers(keras.models.load_model(out / "best.keras")))
    from trec_tflm.cli import main

    assert main(["train", "--model", str(path), "--checkpoint-path", str(tmp_path / "r2"), "--L", "3,8"]) == 2
    assert "--L: got 2 values for the 3 TREC convolutions" in capsys.readouterr().err
    assert main(["train", "--model", str(path), "--checkpoint-path", str(tmp_path / "r3"),
                 "--dataset", "fashion_mnist_32x32x3"]) == 2
    assert "takes images of shape (28, 28, 1), but --dataset fashion_mnist_32x32x3 has (32, 32, 3)" in \
        capsys.readouterr().err


def test_train_selection_on_a_model_that_is_trec_already():
    from trec_tflm.training.transform import select

    trec = trec_tflm.to_trec(vgg(), layers=[0, 1], hash_bits=5)
    hashes = [c.hash_kernel.numpy() for c in conv_layers(trec)[:2]]
    kinds = lambda m: [type(c).__name__ for c in conv_layers(m)]  # noqa: E731

    own = select(trec)  # no --trec: the model's own TREC layers, hash matrices kept
    assert kinds(own) == ["TRECConv2D", "TRECConv2D", "Conv2D"]
    for c, r in zip(conv_layers(own), hashes):
        np.testing.assert_array_equal(c.hash_kernel.numpy(), r)
    relength = select(trec, None, [3, 8])  # --L per TREC conv
    assert [(c.sub_vector_length, c.hash_bits) for c in conv_layers(relength)[:2]] == [(3, 5), (8, 5)]
    other = select(trec, [2], None, [6])  # --trec 2 --H 6: conv 2 TREC, the others dense again
    assert kinds(other) == ["Conv2D", "Conv2D", "TRECConv2D"] and conv_layers(other)[2].hash_bits == 6
    np.testing.assert_array_equal(conv_layers(other)[0].kernel.numpy(), conv_layers(trec)[0].kernel.numpy())
    assert kinds(select(trec, [])) == ["Conv2D"] * 3  # --trec none
    assert kinds(select(vgg())) == ["TRECConv2D"] * 3  # a dense model: every conv TREC can take

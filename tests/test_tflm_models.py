"""TREC models in TensorFlow Lite Micro (host, the tflite-micro wheel's interpreter + our op library).

The int8 conversion of small Keras models and the CONV_2D -> TREC_CONV_2D rewrite these tests use
live in tests/helpers/tflm_models.py.

* a one-op TREC model on 100 real Fashion-MNIST test images equals golden.trec_conv2d_s8 bit for bit;
* in a multi-layer model (TREC conv, pool, TREC conv, pool, dense) every TREC_CONV_2D output equals
  golden applied to that operator's input as TFLM computed it (intermediate tensors preserved);
* in the singleton regime (every cluster one member, checked with golden's statistics) a TREC model
  equals its dense twin (CONV_2D) in TFLM bit for bit;
* when the converter (trec_tflm.tflite.convert) and the golden model route (trec_tflm.host.evaluate) exist, a
  converted Fashion-MNIST TREC model run in TFLM equals the golden route on 100 real test images.

The TFLM tier (marker `tflm`): needs TFLM_ROOT (the tests skip otherwise, saying what to set).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tflm_models import (
    convert_int8,
    golden_trec,
    one_conv_model,
    quantize,
    small_fashion_model,
    to_trec,
    trec_ops,
)

from trec_tflm.host import interpreter as runtime

pytestmark = pytest.mark.tflm


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion_images(fashion):
    return fashion.x_test[:100], fashion.y_test[:100], fashion.x_train[:64]


@pytest.fixture(scope="module")
def fashion_trec_model(fashion_images):
    """(TREC bytes, dense twin bytes) of the small Fashion-MNIST model; both conv layers TREC."""
    _, _, rep = fashion_images
    dense = convert_int8(small_fashion_model(), rep)
    return to_trec(dense, length=lambda k: 5 if k == 25 else 16, bits=6, center="mean", seed=11), dense


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
def test_one_op_trec_model_equals_golden_on_100_fashion_images(fashion_images):
    x_test, _, rep = fashion_images
    dense = convert_int8(one_conv_model(28, 28, 1, 32, 5, activation="relu"), rep)
    model = to_trec(dense, length=5, bits=6, center="mean", seed=5)
    (op,) = trec_ops(model)
    rt = runtime.Runtime(model)
    assert rt.registered_trec and rt.operators == ["TREC_CONV_2D"]
    xq = quantize(x_test, rt.input_scale, rt.input_zero_point)
    rcs = []
    for i, x in enumerate(xq):
        got = rt.invoke(x[None])
        want, stats = golden_trec(op, x[None], return_stats=True)
        np.testing.assert_array_equal(got, want, err_msg=f"image {i}")
        rcs.append(stats[0].remaining_ratio)
    # real reuse happened (not the singleton regime) and the outputs are not degenerate
    assert 0.0 < np.mean(rcs) < 0.5
    assert np.unique(got).size > 16


@pytest.mark.parametrize("center", ["mean", "none"])
def test_trec_ops_inside_a_multi_layer_model_equal_golden(fashion_images, fashion_trec_model, center):
    x_test, _, _ = fashion_images
    _, dense = fashion_trec_model
    model = to_trec(dense, length=lambda k: 5 if k == 25 else 16, bits=6, center=center, seed=12)
    ops = trec_ops(model)
    assert len(ops) == 2
    rt = runtime.Runtime(model, preserve_all_tensors=True)
    assert rt.operators.count("TREC_CONV_2D") == 2 and "FULLY_CONNECTED" in rt.operators
    xq = quantize(x_test[:20], rt.input_scale, rt.input_zero_point)
    for i, x in enumerate(xq):
        rt.invoke(x[None])
        for op in ops:
            x_op = rt.tensor(op["input_tensor"])
            np.testing.assert_array_equal(rt.tensor(op["output_tensor"]), golden_trec(op, x_op),
                                          err_msg=f"image {i}, operator {op['op_index']}")


def test_whole_model_outputs_follow_from_the_trec_outputs(fashion_images, fashion_trec_model):
    """The TREC model's logits differ from the dense twin's (reuse changes activations), and the
    TREC runtime's batch API equals one-by-one invocations."""
    x_test, _, _ = fashion_images
    trec, dense = fashion_trec_model
    rt, rd = runtime.Runtime(trec), runtime.Runtime(dense)
    xq = quantize(x_test[:10], rt.input_scale, rt.input_zero_point)
    batch = rt.predict(xq)
    single = np.stack([rt.invoke(x[None])[0] for x in xq])
    np.testing.assert_array_equal(batch, single)
    assert batch.shape == (10, 10) and batch.dtype == np.int8
    assert not np.array_equal(batch, rd.predict(xq)), "TREC and dense gave identical logits: no reuse?"


def _singleton_case(seed: int):
    """A conv layer and inputs for which golden reports one member per cluster everywhere."""
    # VALID padding: a padded tap is 0 in every row it touches, which would put those rows in one
    # cluster; without padding, 9 random rows and 16-bit codes are almost always all distinct.
    rng = np.random.default_rng(seed)
    h = w = 5
    cin, cout = 4, 8
    rep = rng.uniform(-1, 1, (16, h, w, cin)).astype(np.float32)
    dense = convert_int8(one_conv_model(h, w, cin, cout, 3, padding="valid", activation="relu6", seed=seed), rep)
    trec = to_trec(dense, length=12, bits=16, center="mean", seed=seed)
    (op,) = trec_ops(trec)
    xs = []
    for _ in range(400):
        x = rng.integers(-128, 128, (1, h, w, cin), dtype=np.int8)
        _, stats = golden_trec(op, x, return_stats=True)
        if stats[0].clusters.sum() == stats[0].rows * stats[0].sub_matrices:
            xs.append(x)
        if len(xs) == 20:
            break
    assert len(xs) == 20, "could not find inputs in the singleton regime"
    return trec, dense, np.concatenate(xs)


def test_singleton_regime_trec_equals_dense_twin_in_tflm():
    trec, dense, xs = _singleton_case(21)
    rt, rd = runtime.Runtime(trec), runtime.Runtime(dense)
    assert rt.operators == ["TREC_CONV_2D"] and rd.operators == ["CONV_2D"]
    got, want = rt.predict(xs), rd.predict(xs)
    np.testing.assert_array_equal(got, want)
    assert np.unique(want).size > 8


def test_one_row_layers_are_always_singletons():
    """Output 1x1 (one row): every cluster has one member whatever L and H: TREC == CONV_2D."""
    rng = np.random.default_rng(4)
    rep = rng.uniform(0, 1, (16, 5, 5, 3)).astype(np.float32)
    dense = convert_int8(one_conv_model(5, 5, 3, 16, 5, padding="valid", activation=None), rep)
    xs = rng.integers(-128, 128, (30, 5, 5, 3), dtype=np.int8)
    want = runtime.Runtime(dense).predict(xs)
    for length, bits in ((1, 1), (7, 3), (75, 16)):
        trec = to_trec(dense, length=length, bits=bits, center="none", seed=length)
        np.testing.assert_array_equal(runtime.Runtime(trec).predict(xs), want, err_msg=f"L={length} H={bits}")


def small_trec_keras_model(seed=7):
    """A small Fashion-MNIST net with two TRECConv2D layers (fashion_net's structure, fewer filters)."""
    import keras

    from trec_tflm.training.layers import TRECConv2D

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1), name="image")
    x = TRECConv2D(16, 5, padding="same", activation="relu", sub_vector_length=5, hash_bits=6, name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = TRECConv2D(16, 3, padding="same", activation="relu", sub_vector_length=16, hash_bits=8, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="small_trec")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def test_converted_trained_model_in_tflm_equals_the_golden_route(fashion):
    """A trained Fashion-MNIST TREC model, converted by trec_tflm.tflite.convert: TFLM with TREC_CONV_2D
    registered (trec-tflm eval's default route) equals the golden route (TREC ops in the NumPy
    golden, other ops in TFLM) bit for bit on 100 real test images."""
    from trec_tflm.host import evaluate
    from trec_tflm.tflite import convert

    model = small_trec_keras_model()
    model.fit(fashion.x_train[:4000], fashion.y_train[:4000], epochs=1, batch_size=64, verbose=0)
    buf = convert.convert(model, fashion.x_train[:200], calibration_samples=200)
    assert runtime.model_operators(buf).count("TREC_CONV_2D") == 2
    tflm_runner = evaluate.make_runner(buf, "auto")
    gold_runner = evaluate.make_runner(buf, "golden")
    assert tflm_runner.route == "tflm" and isinstance(tflm_runner, evaluate.RuntimeRunner)
    assert gold_runner.route == "golden"
    got, want = _both_routes(tflm_runner, gold_runner, fashion.x_test[:100])
    np.testing.assert_array_equal(got, want)
    accuracy = np.mean(got.reshape(100, -1).argmax(axis=1) == fashion.y_test[:100])
    assert accuracy > 0.5, f"the trained model should classify: {accuracy}"



def _both_routes(tflm_runner, gold_runner, images):
    """The raw outputs of the same images through TFLM and through the golden route."""
    x = tflm_runner.prepare_input(images)
    shape = tflm_runner.input.shape
    got = np.stack([tflm_runner.invoke(np.ascontiguousarray(xi.reshape(shape))) for xi in x])
    want = np.stack([gold_runner.invoke(np.ascontiguousarray(xi.reshape(shape))) for xi in x])
    return got, want

# zoo models whose converted pair (TREC at the model's defaults, and its dense twin) is checked here;
# the rest (larger, same op types) are measured by trec-tflm bench-models
ZOO_IN_TFLM = {"resnet8": {"CONV_2D": 4, "TREC_CONV_2D": 5, "ADD": 3, "AVERAGE_POOL_2D": 1, "FULLY_CONNECTED": 1}}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO_IN_TFLM))
def test_zoo_model_and_its_dense_twin_in_tflm_equal_the_golden_route(fashion, name):
    """A zoo model at its default TREC layers, trained one short epoch on the 32x32x3 Fashion-MNIST
    stand-in, and its dense twin, converted: BN folded away (only the architecture's operators
    left), TREC where the zoo says, and both run whole in TFLM equal to the golden route (every
    convolution in the NumPy golden, the rest in TFLM) bit for bit on 30 real test images."""
    from trec_tflm.data import fashion_as_cifar_shape
    from trec_tflm.host import evaluate
    from trec_tflm.tflite import convert
    from trec_tflm.training.models import MODELS, build_model, dense_twin

    ds = fashion_as_cifar_shape(fashion)
    model = build_model(name)
    model.compile("adam", keras_loss(), metrics=["accuracy"])
    # 3,000 images: fewer leave the BN moving statistics too far from the batches' for a ResNet
    model.fit(ds.x_train[:3000], ds.y_train[:3000], epochs=1, batch_size=64, verbose=0)
    trec = convert.convert(model, ds.x_train[:200], calibration_samples=200)
    dense = convert.convert(dense_twin(model), ds.x_train[:200], calibration_samples=200)
    ops = runtime.model_operators(trec)
    want_ops = ZOO_IN_TFLM[name]
    assert {op: ops.count(op) for op in want_ops} == want_ops and "MUL" not in ops
    dense_ops = runtime.model_operators(dense)
    assert dense_ops.count("CONV_2D") == want_ops["CONV_2D"] + want_ops["TREC_CONV_2D"]
    assert [op["op_index"] for op in trec_ops(trec)] == [i for i, op in enumerate(ops) if op == "TREC_CONV_2D"]
    assert len(trec_ops(trec)) == len(MODELS[name].default_trec)
    for buf, route in ((trec, "tflm"), (dense, "tflm")):
        tflm_runner, gold_runner = evaluate.make_runner(buf, route), evaluate.make_runner(buf, "golden")
        assert gold_runner.route == "golden"
        got, want = _both_routes(tflm_runner, gold_runner, ds.x_test[:30])
        np.testing.assert_array_equal(got, want)
        assert np.unique(got).size > 10
        accuracy = np.mean(got.reshape(30, -1).argmax(axis=1) == ds.y_test[:30])
        assert accuracy > 0.3, f"the trained model should classify: {accuracy}"


def keras_loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

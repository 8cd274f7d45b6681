"""The fused training ops' shortcuts, each against the plain-TF route or hand/NumPy values:
no input gradient for a layer whose input no tape watches (a model's first layer), the strip
codes in one op, the hash surrogate's elementwise part in one op."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.finite_diff import central_difference

from trec_tflm import TRECConv2D
from trec_tflm.training import train_ops

# name: (input HxWxC, filters, kernel, strides, padding, L, H, hash initializer, hash centre)
_CASES = {
    "strips of 3 pixels": ((9, 8, 2), 4, 3, 1, "same", 6, 4, "orthogonal", "mean"),
    "strided, not a strip, no centre": ((7, 6, 3), 5, 3, 2, "same", 4, 3, "orthogonal", "none"),
    "strips of 1 pixel, no centre": ((8, 8, 4), 6, 3, 1, "valid", 4, 4, "orthogonal", "none"),
    "many singleton clusters": ((6, 7, 3), 5, 3, 1, "same", 27, 16, "orthogonal", "mean"),
    "one cluster": ((6, 7, 3), 5, 3, 1, "same", 9, 5, "zeros", "mean"),
}


def _ops():
    ops = train_ops.load()
    if ops is None:
        pytest.skip(f"fused ops unavailable: {train_ops.unavailable_reason()}")
    return ops


def _layer(case, fused, input_shape):
    _, filters, kernel, strides, padding, length, bits, hash_init, center = _CASES[case]
    keras.utils.set_random_seed(3)
    layer = TRECConv2D(filters, kernel, strides=strides, padding=padding, sub_vector_length=length,
                       hash_bits=bits, hash_initializer=hash_init, hash_center=center, dtype="float64")
    layer.use_fused_ops = fused
    layer.build(input_shape)
    return layer


def _grads(layer, x, upstream, watch):
    with tf.GradientTape() as tape:
        if watch:
            tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) * upstream)
    return [g.numpy() for g in tape.gradient(loss, ([x] if watch else []) + layer.trainable_variables)]


def _backward_input_grad_attrs(fn, *args):
    """input_grad of every TrecClusterBackward in the graph fn traces."""
    graph = tf.function(fn).get_concrete_function(*args).graph
    return sorted(op.get_attr("input_grad") for op in graph.get_operations() if op.type == "TrecClusterBackward")


@pytest.mark.parametrize("case", list(_CASES))
def test_unwatched_input_gets_no_input_gradient_and_the_same_weight_gradients(case):
    """A layer whose input no tape watches (a model's first layer) skips dL/dx in the fused
    backward; kernel, bias and hash-matrix gradients stay those of the plain-TF route (1e-12,
    float64) and equal the fused route's with the input watched."""
    _ops()
    shape = _CASES[case][0]
    rng = np.random.default_rng(len(case))
    x = tf.constant(np.abs(rng.normal(size=(10, *shape))), tf.float64)
    fused = _layer(case, None, x.shape)
    upstream = tf.constant(rng.normal(size=fused.compute_output_shape(x.shape)), tf.float64)
    unwatched = _grads(fused, x, upstream, watch=False)
    watched = _grads(fused, x, upstream, watch=True)
    plain = _grads(_layer(case, False, x.shape), x, upstream, watch=False)
    assert len(unwatched) == len(plain) == 3  # kernel, bias, hash matrix
    for a, b, c in zip(unwatched, watched[1:], plain):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    assert np.abs(unwatched[0]).max() > 0
    if case == "many singleton clusters":
        assert fused.reuse_rate > 0.95
    elif case == "one cluster":
        assert fused.reuse_rate == pytest.approx(1 / (shape[0] * shape[1]))

    def step(inp, watch):
        with tf.GradientTape() as tape:
            if watch:
                tape.watch(inp)
            loss = tf.reduce_sum(fused(inp, training=True) * upstream)
        return tape.gradient(loss, ([inp] if watch else []) + fused.trainable_variables)

    assert _backward_input_grad_attrs(lambda inp: step(inp, False), x) == [False]
    assert _backward_input_grad_attrs(lambda inp: step(inp, True), x) == [True]


def test_first_layer_of_a_model_skips_the_input_gradient_and_matches_finite_differences():
    """In a model, the first TREC layer's backward skips dL/dx, the second's does not; the
    first layer's kernel gradient agrees with finite differences (float64)."""
    _ops()
    rng = np.random.default_rng(11)
    keras.utils.set_random_seed(5)
    inp = keras.Input((6, 6, 2), dtype="float64")
    h = TRECConv2D(3, 3, padding="same", sub_vector_length=6, hash_bits=2, dtype="float64", name="first")(inp)
    out = TRECConv2D(2, 3, padding="same", sub_vector_length=3, hash_bits=3, dtype="float64", name="second")(h)
    model = keras.Model(inp, out)
    x = tf.constant(np.abs(rng.normal(size=(2, 6, 6, 2))), tf.float64)
    upstream = tf.constant(rng.normal(size=(2, 6, 6, 2)), tf.float64)
    first = model.get_layer("first")

    def loss():
        return tf.reduce_sum(model(x) * upstream)

    def grads(inp):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(model(inp) * upstream)
        return tape.gradient(value, first.kernel)

    assert _backward_input_grad_attrs(grads, x) == [False, True]
    gk = grads(x).numpy()
    assert first.reuse_rate < 1.0  # clustered rows, not singletons
    for idx in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1), (1, 1, 1, 1)]:
        fd = central_difference(first.kernel, loss, idx, 1e-6)
        assert fd == pytest.approx(gk[idx], rel=1e-6, abs=1e-6)
    assert np.abs(gk).max() > 0


def test_strip_codes_hand_checked():
    """codes[b, n, m] = sum_h (proj[b, strip_index[n, m], h] - offset[b, h] > 0) << h."""
    ops = _ops()
    proj = tf.constant([[[1.0, -1.0], [0.5, 0.5], [2.0, 3.0]]], tf.float64)  # [B=1, P=3, H=2]
    offset = tf.constant([[0.5, 0.0]], tf.float64)  # 0.5 - 0.5 = 0 is not > 0
    index = tf.constant([[0, 2], [1, 1], [2, 0]], tf.int32)  # [N=3, M=2]
    # pixel codes: 0 -> (0.5 > 0) | (-1 > 0) << 1 = 1; 1 -> 0 | 1 << 1 = 2; 2 -> 1 | 2 = 3
    assert ops.trec_strip_codes(proj, offset, index).numpy().tolist() == [[[1, 3], [2, 2], [3, 1]]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strip_codes_equal_the_plain_tf_codes(dtype):
    ops = _ops()
    rng = np.random.default_rng(2)
    proj = rng.normal(size=(3, 40, 7)).astype(dtype)
    offset = rng.normal(size=(3, 7)).astype(dtype)
    proj[:, ::5, 2] = offset[:, None, 2]  # ties: the bit stays clear
    index = rng.integers(0, 40, size=(25, 4)).astype(np.int32)
    want = np.take((((proj - offset[:, None, :]) > 0) * (1 << np.arange(7))).sum(-1), index, axis=1)
    np.testing.assert_array_equal(ops.trec_strip_codes(proj, offset, index).numpy(), want)
    with pytest.raises(tf.errors.InvalidArgumentError, match="strip_index 40 outside"):
        ops.trec_strip_codes(proj, offset, np.array([[40]], np.int32))


def test_surrogate_scale_equals_the_formula():
    """dp = scale / tau * sigma(p / tau) * (1 - sigma(p / tau)) * gp, per bit h (last axis)."""
    ops = _ops()
    rng = np.random.default_rng(6)
    p = rng.normal(size=(2, 5, 3, 4)) * 3
    p[0, 0, 0] = [800.0, -800.0, 0.0, 1e-300]  # saturated sigmoids give 0, not NaN
    tau = np.array([0.5, 1.0, 2.0, 0.25])
    gp = rng.normal(size=p.shape)
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-p / tau))
    want = 8.0 / tau * sig * (1.0 - sig) * gp
    got = ops.trec_surrogate_scale(p, tau, gp, np.float64(8.0)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert got[0, 0, 0, 0] == 0.0 and got[0, 0, 0, 1] == 0.0

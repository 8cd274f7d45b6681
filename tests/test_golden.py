"""The golden int8 kernels against independent sources.

(a) golden.conv2d_s8, and golden.trec_conv2d_s8 in the singleton regime (every cluster one row),
    equal TFLM's built-in int8 CONV_2D bit for bit on one-op models converted from Keras Conv2D
    (the tflite-micro interpreter is the reference, the quantization parameters are read from the
    converted model);
(b) golden TREC, dequantized, stays within the bound stated in docs/OP_SPEC.md ("Golden vs float")
    of the float TRECConv2D forward with the same weights on real Fashion-MNIST images;
(c) small cases of the TREC integer rules worked out by hand in this file.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tflm = pytest.importorskip("tflite_micro")

from trec_tflm.spec import golden, quant
from trec_tflm.spec import model as tm
from trec_tflm.tflite.convert import tf_int8_convert


def _one_op_conv(h, w, cin, cout, k, strides, padding, act, rep) -> bytes:
    import keras

    inp = keras.Input((h, w, cin), batch_size=1)
    layer = keras.layers.Conv2D(cout, k, strides=strides, padding=padding, activation=act,
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.4, seed=7),
                                bias_initializer=keras.initializers.RandomUniform(-0.3, 0.3, seed=8))
    return tf_int8_convert(keras.Model(inp, layer(inp)), rep)


def _patches(fashion, n, h, w, cin, seed):
    """Real Fashion-MNIST crops [n, h, w, cin] (channels from different images)."""
    rng = np.random.default_rng(seed)
    imgs = fashion.x_test[rng.integers(0, 2000, n * cin)]
    ys, xs = rng.integers(0, 28 - h + 1, n * cin), rng.integers(0, 28 - w + 1, n * cin)
    crops = np.stack([img[y:y + h, x:x + w, 0] for img, y, x in zip(imgs, ys, xs)])
    return crops.reshape(n, cin, h, w).transpose(0, 2, 3, 1).astype(np.float32)


# (name, H, W, Cin, Cout, k, strides, padding, activation, inputs)
CASES = [
    ("s1_same_relu_fmnist", 12, 12, 1, 8, 5, 1, "same", "relu", "fashion"),
    ("s2_same_none_fmnist", 13, 11, 2, 6, 3, 2, "same", None, "fashion"),
    ("s1_valid_relu_random", 9, 10, 4, 5, 3, 1, "valid", "relu", "random"),
    ("s2_valid_none_random", 11, 12, 3, 7, 3, 2, "valid", None, "random"),
]


@pytest.mark.parametrize("name,h,w,cin,cout,k,strides,padding,act,source", CASES, ids=[c[0] for c in CASES])
def test_golden_and_singleton_trec_equal_tflm_conv2d(fashion, name, h, w, cin, cout, k, strides, padding, act,
                                                   source):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if source == "fashion":
        rep = _patches(fashion, 32, h, w, cin, seed=1)
        tests = _patches(fashion, 4, h, w, cin, seed=2)
    else:
        rep = rng.uniform(-1.0, 2.0, (32, h, w, cin)).astype(np.float32)
        tests = rng.uniform(-1.0, 2.0, (4, h, w, cin)).astype(np.float32)
    buf = _one_op_conv(h, w, cin, cout, k, strides, padding, act, rep)
    m = tm.load_model(buf)
    assert [o.name for o in tm.operators(m)] == ["CONV_2D"]
    p = tm.conv_op_params(m, m.subgraphs[0].operators[0])
    q_in = tm.tensor_quant(m.subgraphs[0].tensors[p["input_index"]])
    interp = tflm.runtime.Interpreter.from_bytes(buf)
    kdim = k * k * cin
    checked = 0
    for i, xf in enumerate(tests):
        xq = np.clip(np.round(xf / q_in.scale[0]) + q_in.zero_point[0], -128, 127).astype(np.int8)[None]
        interp.set_input(xq, 0)
        interp.invoke()
        want = interp.get_output(0)
        interp.reset()
        got = golden.conv2d_s8(xq, p["filter"], p["bias"], **p["kwargs"])
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: conv2d_s8, image {i}")
        assert np.unique(want).size >= 8, "degenerate outputs prove nothing"
        checked += want.size

        if source == "random":
            # Singleton regime: random inputs have distinct im2col rows, and 16 hash bits over
            # sub-vectors of length L = K (or K/2 with two sub-matrices) separate every row.
            # A random R rarely merges two rows; draw until the stats show no merge at all.
            for length in (kdim, -(-kdim // 2)):
                for _attempt in range(20):
                    r = rng.integers(-127, 128, (length, 16)).astype(np.int8)
                    trec, stats = golden.trec_conv2d_s8(xq, p["filter"], p["bias"], r, sub_vector_length=length,
                                                        hash_bits=16, hash_center="mean", return_stats=True,
                                                        **p["kwargs"])
                    if np.all(stats[0].clusters == stats[0].rows):
                        break
                assert np.all(stats[0].clusters == stats[0].rows), "no hash gave the singleton regime"
                assert stats[0].remaining_ratio == 1.0
                np.testing.assert_array_equal(trec, want, err_msg=f"{name}: singleton TREC, L={length}")
    assert checked > 0


def test_singleton_regime_detects_a_wrong_kernel():
    """The comparison above can fail: a cluster of two distinct rows changes the output."""
    x = np.array([[[[10], [40]]]], np.int8)  # 1x1x2x1, rows 10 and 40
    w = np.array([[[[3]]]], np.int8)
    one = dict(input_zero_point=0, output_zero_point=0, output_multiplier=np.array([1 << 30]),
               output_shift=np.array([1]), padding="VALID")
    dense = golden.conv2d_s8(x, w, None, **one)
    merged = golden.trec_conv2d_s8(x, w, None, np.array([[1]], np.int8), sub_vector_length=1, hash_bits=1,
                                   hash_center="none", **one)
    assert dense.ravel().tolist() == [30, 120]
    assert merged.ravel().tolist() == [75, 75]  # (10 + 40) * 3 / 2


# ------------------------------------------------------------------------------------------------
# (b) golden TREC vs the float layer
# ------------------------------------------------------------------------------------------------
#: The bound stated in docs/OP_SPEC.md "Golden vs float": in output LSB (output scale).
MEAN_ABS_LSB = 1.0
P99_LSB = 12.0
WITHIN_1_LSB = 0.80


def _features(x):
    """A fixed float front end (3x3 conv 1->8 + ReLU) so the TREC layer sees real activations."""
    import keras

    k = keras.initializers.GlorotUniform(seed=3)((3, 3, 1, 8)).numpy()
    y = tf.nn.conv2d(x, k, strides=1, padding="VALID") + 0.05
    return tf.nn.relu(y).numpy()


BOUND_CASES = [
    ("pixels_5x5_L5_H6_mean", "pixels", dict(filters=16, kernel_size=5, sub_vector_length=5, hash_bits=6,
                                             padding="same")),
    ("features_3x3_L9_H8_mean", "features", dict(filters=16, kernel_size=3, sub_vector_length=9, hash_bits=8,
                                                 padding="same")),
    ("features_3x3_L24_H8_none_s2", "features", dict(filters=16, kernel_size=3, sub_vector_length=24, hash_bits=8,
                                                     padding="valid", strides=2, hash_center="none")),
]


@pytest.mark.parametrize("name,source,kw", BOUND_CASES, ids=[c[0] for c in BOUND_CASES])
def test_golden_trec_close_to_float_layer(fashion, name, source, kw):
    import keras

    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.layers import TRECConv2D

    calib, xt = fashion.x_train[:200], fashion.x_test[:48]
    if source == "features":
        calib, xt = _features(calib), _features(xt)
    inp = keras.Input(calib.shape[1:])
    layer = TRECConv2D(**kw, activation="relu", hash_trainable=False,
                       bias_initializer=keras.initializers.RandomUniform(-0.1, 0.1, seed=5))
    model = keras.Model(inp, layer(inp))
    m = tm.load_model(convert(model, calib))
    op = m.subgraphs[0].operators[0]
    assert tm.is_trec(m, op)
    p = tm.trec_op_params(m, op)
    q_in = tm.tensor_quant(m.subgraphs[0].tensors[p["input_index"]])
    q_out = tm.tensor_quant(m.subgraphs[0].tensors[p["output_index"]])
    xq = np.clip(np.round(xt / q_in.scale[0]) + q_in.zero_point[0], -128, 127).astype(np.int8)
    yq, stats = golden.trec_conv2d_s8(xq, p["filter"], p["bias"], p["hash"], return_stats=True, **p["kwargs"])
    yf = model.predict(xt, verbose=0)
    err = np.abs((yq.astype(np.float64) - q_out.zero_point[0]) * q_out.scale[0] - yf) / q_out.scale[0]
    rc_int8 = np.mean([s.remaining_ratio for s in stats])
    msg = (f"{name}: mean {err.mean():.3f} LSB, p99 {np.percentile(err, 99):.2f} LSB, "
           f"within 1 LSB {np.mean(err <= 1.0):.3f}, max {err.max():.1f}; rc int8 {rc_int8:.3f} float "
           f"{layer.reuse_rate:.3f}")
    print(msg)
    assert rc_int8 < 0.5, "the case must actually reuse (else it only tests CONV_2D)"
    assert abs(rc_int8 - layer.reuse_rate) < 0.1 * layer.reuse_rate + 0.01, msg
    assert err.mean() <= MEAN_ABS_LSB, msg
    assert np.percentile(err, 99) <= P99_LSB, msg
    assert np.mean(err <= 1.0) >= WITHIN_1_LSB, msg


# ------------------------------------------------------------------------------------------------
# (c) hand-checked integer rules
# ------------------------------------------------------------------------------------------------
def test_round_half_away_by_hand():
    num = np.array([7, -7, 5, 6, -6, -5, 0, 1, -1, 3])
    den = np.array([2, 2, 4, 4, 4, 4, 3, 3, 3, 3])
    # 3.5->4, -3.5->-4, 1.25->1, 1.5->2, -1.5->-2, -1.25->-1, 0, 0.33->0, -0.33->0, 1
    assert quant.round_half_away_from_zero_div(num, den).tolist() == [4, -4, 1, 2, -2, -1, 0, 0, 0, 1]


IDENTITY = dict(output_zero_point=0, output_multiplier=np.array([1 << 30]), output_shift=np.array([1]),
                padding="VALID")  # multiplier 1.0: MultiplyByQuantizedMultiplier(x) = x


def _trec(x, w, r, length, bits, center, zp=0):
    return golden.trec_conv2d_s8(np.asarray(x, np.int8), np.asarray(w, np.int8), None, np.asarray(r, np.int8),
                                 input_zero_point=zp, sub_vector_length=length, hash_bits=bits,
                                 hash_center=center, **IDENTITY).ravel().tolist()


def test_two_row_cluster_rounds_once_half_away():
    w = [[[[5]]]]  # 1x1 conv, Cout 1, W = 5
    # rows 3 and 4 both project positive: one cluster, (3 + 4) * 5 / 2 = 17.5 -> 18 for both
    assert _trec([[[[3], [4]]]], w, [[1]], 1, 1, "none") == [18, 18]
    # negative side: (-3 - 4) * 5 / 2 = -17.5 -> -18 (away from zero); both project <= 0 -> code 0
    assert _trec([[[[-3], [-4]]]], w, [[1]], 1, 1, "none") == [-18, -18]
    # the input zero point is subtracted first: x = 13, 14 with zp 10 are rows 3 and 4 again
    assert _trec([[[[13], [14]]]], w, [[1]], 1, 1, "none", zp=10) == [18, 18]


def test_mean_centre_offset_by_hand():
    w = [[[[5]]]]
    # rows 2 and 6: "none" -> both positive, one cluster, (2 + 6) * 5 / 2 = 20
    assert _trec([[[[2], [6]]]], w, [[1]], 1, 1, "none") == [20, 20]
    # "mean": S = 8, P = 2, off = -round(8 * 1 / 2) = -4; projections -2 and 2 -> two singletons
    assert _trec([[[[2], [6]]]], w, [[1]], 1, 1, "mean") == [10, 30]
    # odd P: rows 1, 2, 4: S = 7, P = 3, off = -round(7 / 3) = -2; projections -1, 0, 2 -> codes 0, 0, 1
    # (a zero projection is bit 0); cluster {1, 2}: 3 * 5 / 2 = 7.5 -> 8; row 4 alone: 20
    assert _trec([[[[1], [2], [4]]]], w, [[1]], 1, 1, "mean") == [8, 8, 20]


def test_zero_extended_last_sub_vector_by_hand():
    # 1x1 conv over Cin = 3, L = 2 -> M = 2 sub-matrices, the second is [x2, 0]; R = [[1], [1]]
    # row 0 = [1, 2, 3], row 1 = [3, 0, -3]; W = [1, 2, 1]
    # sub 0: [1, 2] and [3, 0] both project to 3 -> one cluster, sum [4, 2] . [1, 2] = 8 -> 8 / 2 = 4
    # sub 1: [3, 0] and [-3, 0] project to 3 and -3 -> singletons 3 * 1 = 3 and -3
    # outputs 4 + 3 = 7 and 4 - 3 = 1 (dense: 8 and 0)
    x = [[[[1, 2, 3], [3, 0, -3]]]]
    w = [[[[1, 2, 1]]]]
    assert _trec(x, w, [[1], [1]], 2, 1, "none") == [7, 1]


def test_two_hash_bits_by_hand():
    # L = 2, H = 2, R = [[1, 0], [0, 1]]: code = (x0 > 0) + 2 * (x1 > 0); rows [1, 1], [2, 3], [1, -1]
    # codes 3, 3, 1: cluster {[1, 1], [2, 3]} sum [3, 4] . W[1, 1] = 7 -> 3.5 -> 4; [1, -1] alone -> 0
    x = [[[[1, 1], [2, 3], [1, -1]]]]
    w = [[[[1, 1]]]]
    assert _trec(x, w, [[1, 0], [0, 1]], 2, 2, "none") == [4, 4, 0]

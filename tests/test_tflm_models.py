"""TREC models in TensorFlow Lite Micro (host, the tflite-micro wheel's interpreter + our op library).

Also the helpers the other test_tflm_* modules share: TFLM skip logic, int8 conversion of small
Keras models, and a rewrite of CONV_2D operators into TREC_CONV_2D per docs/OP_SPEC.md (what
trec_tflm.convert does for trained models), with the golden arguments read back from the flatbuffer.

* a one-op TREC model on 100 real Fashion-MNIST test images equals golden.trec_conv2d_s8 bit for bit;
* in a multi-layer model (TREC conv, pool, TREC conv, pool, dense) every TREC_CONV_2D output equals
  golden applied to that operator's input as TFLM computed it (intermediate tensors preserved);
* in the singleton regime (every cluster one member, checked with golden's statistics) a TREC model
  equals its dense twin (CONV_2D) in TFLM bit for bit;
* when the converter (trec_tflm.convert) and the golden model route (trec_tflm.evaluate) exist, a
  converted Fashion-MNIST TREC model run in TFLM equals the golden route on 100 real test images.

Needs TFLM_ROOT (the tests skip otherwise, saying what to set).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from trec_tflm import golden, quant, runtime

TFLM_SKIP_MESSAGE = (
    f"TFLM_ROOT is not set: set TFLM_ROOT to a tflite-micro checkout at {runtime.TFLM_COMMIT} "
    "(and FLATBUFFERS_ROOT to flatbuffers v25.9.23; CMSIS_NN_ROOT to CMSIS-NN "
    f"{runtime.CMSIS_NN_COMMIT} for the CMSIS-NN kernels); see README 'TFLM tree'")


def require_tflm() -> None:
    """Skip without TFLM_ROOT; fail (not skip) when it is set but unusable."""
    if not os.environ.get("TFLM_ROOT"):
        pytest.skip(TFLM_SKIP_MESSAGE)
    try:
        runtime.check_tflm_tree()
    except runtime.TflmTreeMissing as exc:
        pytest.fail(str(exc))


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def convert_int8(model, rep_data) -> bytes:
    """Full-int8 conversion (int8 input and output) with a representative dataset."""
    from trec_tflm.convert import tf_int8_convert

    return tf_int8_convert(model, rep_data)


def one_conv_model(h, w, cin, cout, k, *, strides=1, dilation=1, padding="same", activation="relu",
                   seed=1):
    import keras

    inp = keras.Input((h, w, cin), batch_size=1)
    layer = keras.layers.Conv2D(cout, k, strides=strides, padding=padding, dilation_rate=dilation,
                                activation=activation,
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=seed),
                                bias_initializer=keras.initializers.RandomUniform(-0.3, 0.3, seed=seed + 1))
    return keras.Model(inp, layer(inp))


def small_fashion_model(seed=3):
    """conv5x5 1->16 relu, maxpool 2, conv3x3 16->16 relu, maxpool 2, flatten, dense 10
    (fashion_net's structure, smaller so emulated runs stay quick)."""
    import keras

    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input((28, 28, 1), batch_size=1, name="image")
    x = keras.layers.Conv2D(16, 5, padding="same", activation="relu", kernel_initializer=init, name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer=init, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotNormal(seed=seed), name="logits")(x)
    return keras.Model(inp, out)


# ------------------------------------------------------------------------------------------------
# CONV_2D -> TREC_CONV_2D (docs/OP_SPEC.md) and back to golden arguments
# ------------------------------------------------------------------------------------------------
def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _builtin(model, op) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))


def trec_options(*, length, bits, center="mean", stride=(1, 1), dilation=(1, 1), padding="SAME",
                 activation="NONE", version=1) -> dict:
    return dict(version=version, sub_vector_length=int(length), hash_bits=int(bits), hash_center=center,
                stride_h=int(stride[0]), stride_w=int(stride[1]), dilation_h=int(dilation[0]),
                dilation_w=int(dilation[1]), padding=padding, activation=activation)


def to_trec(buf: bytes, *, length=9, bits=8, center="mean", which=None, seed=0, hashes=None,
            edit_options=None) -> bytes:
    """Rewrite the CONV_2D operators of subgraph 0 (all, or the indices among them in ``which``)
    into CUSTOM TREC_CONV_2D: flexbuffer options from the conv's options, an int8 [L, H] hash
    tensor (random, or ``hashes[i]``), input 3 = hash. ``length``/``bits`` may be callables of K.
    ``edit_options(dict) -> dict`` changes the options (for negative tests)."""
    import flatbuffers
    from flatbuffers import flexbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    sub = model.subgraphs[0]
    rng = np.random.default_rng(seed)
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = b"TREC_CONV_2D"
    code.version = 1
    model.operatorCodes.append(code)
    custom_index = len(model.operatorCodes) - 1
    pads = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
    acts = {schema.ActivationFunctionType.NONE: "NONE", schema.ActivationFunctionType.RELU: "RELU",
            schema.ActivationFunctionType.RELU6: "RELU6", schema.ActivationFunctionType.RELU_N1_TO_1: "RELU_N1_TO_1"}
    conv_no = -1
    for op in sub.operators:
        if _builtin(model, op) != schema.BuiltinOperator.CONV_2D:
            continue
        conv_no += 1
        if which is not None and conv_no not in which:
            continue
        w_shape = list(sub.tensors[op.inputs[1]].shape)
        k = int(np.prod(w_shape[1:]))
        length_i = int(length(k) if callable(length) else min(length, k))
        bits_i = int(bits(k) if callable(bits) else bits)
        if hashes is not None:
            r = np.asarray(hashes[conv_no], np.int8)
            length_i, bits_i = r.shape
        else:
            r = rng.integers(-127, 128, (length_i, bits_i), dtype=np.int8)
        b = schema.BufferT()
        b.data = r.tobytes()
        model.buffers.append(b)
        t = schema.TensorT()
        t.shape = [length_i, bits_i]
        t.type = schema.TensorType.INT8
        t.buffer = len(model.buffers) - 1
        t.name = f"trec_hash_{conv_no}".encode()
        q = schema.QuantizationParametersT()
        q.scale = [1.0]
        q.zeroPoint = [0]
        t.quantization = q
        sub.tensors.append(t)
        o = op.builtinOptions
        opts = trec_options(length=length_i, bits=bits_i, center=center, stride=(o.strideH, o.strideW),
                            dilation=(o.dilationHFactor, o.dilationWFactor), padding=pads[o.padding],
                            activation=acts[o.fusedActivationFunction])
        if edit_options is not None:
            opts = edit_options(opts)
        inputs = list(op.inputs)
        if len(inputs) == 2:
            inputs.append(-1)
        op.inputs = inputs[:3] + [len(sub.tensors) - 1]
        op.opcodeIndex = custom_index
        op.builtinOptionsType = 0
        op.builtinOptions = None
        op.customOptions = list(flexbuffers.Dumps(opts))
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _round_away(v) -> int:
    v = np.float32(v)
    return int(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))


def activation_range(name: str, scale, zp) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized (float32 division, round half away from zero)."""
    scale = np.float32(scale)
    lo, hi = -128, 127
    if name in ("RELU", "RELU6"):
        lo = max(lo, zp + _round_away(np.float32(0.0) / scale))
    if name == "RELU6":
        hi = min(hi, zp + _round_away(np.float32(6.0) / scale))
    if name == "RELU_N1_TO_1":
        lo = max(lo, zp + _round_away(np.float32(-1.0) / scale))
        hi = min(hi, zp + _round_away(np.float32(1.0) / scale))
    return lo, hi


def trec_ops(buf: bytes) -> list[dict]:
    """Every TREC_CONV_2D operator of subgraph 0: tensor indices and golden.trec_conv2d_s8's
    keyword arguments (quantization as TFLM derives it in Prepare)."""
    from flatbuffers import flexbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    sub = model.subgraphs[0]
    out = []
    for idx, op in enumerate(sub.operators):
        oc = model.operatorCodes[op.opcodeIndex]
        if oc.customCode != b"TREC_CONV_2D":
            continue
        o = flexbuffers.Loads(bytes(op.customOptions))
        t_in, t_w, t_h = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]], sub.tensors[op.inputs[3]]
        t_out = sub.tensors[op.outputs[0]]
        w = np.frombuffer(bytes(model.buffers[t_w.buffer].data), np.int8).reshape(list(t_w.shape))
        b = None
        if op.inputs[2] >= 0:
            t_b = sub.tensors[op.inputs[2]]
            b = np.frombuffer(bytes(model.buffers[t_b.buffer].data), np.int32).copy()
        r = np.frombuffer(bytes(model.buffers[t_h.buffer].data), np.int8).reshape(list(t_h.shape))
        in_scale, out_scale = np.float32(t_in.quantization.scale[0]), np.float32(t_out.quantization.scale[0])
        w_scale = np.asarray(t_w.quantization.scale, np.float32)
        if w_scale.size == 1:
            w_scale = np.repeat(w_scale, w.shape[0])
        eff = np.float64(in_scale) * w_scale.astype(np.float64) / np.float64(out_scale)
        mult, shift = quant.quantize_multipliers(eff)
        out_zp = int(t_out.quantization.zeroPoint[0])
        amin, amax = activation_range(o["activation"], out_scale, out_zp)
        out.append(dict(
            op_index=idx, input_tensor=op.inputs[0], output_tensor=op.outputs[0], options=o,
            filter=w, bias=b, hash=r,
            kwargs=dict(input_zero_point=int(t_in.quantization.zeroPoint[0]), output_zero_point=out_zp,
                        output_multiplier=mult, output_shift=shift, sub_vector_length=o["sub_vector_length"],
                        hash_bits=o["hash_bits"], hash_center=o["hash_center"],
                        stride=(o["stride_h"], o["stride_w"]), dilation=(o["dilation_h"], o["dilation_w"]),
                        padding=o["padding"], activation_min=amin, activation_max=amax)))
    return out


def golden_trec(op: dict, x: np.ndarray, return_stats=False):
    return golden.trec_conv2d_s8(x, op["filter"], op["bias"], op["hash"], return_stats=return_stats,
                                 **op["kwargs"])


def quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zp, -128, 127).astype(np.int8)


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
    require_tflm()
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
    require_tflm()
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
    require_tflm()
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
    require_tflm()
    trec, dense, xs = _singleton_case(21)
    rt, rd = runtime.Runtime(trec), runtime.Runtime(dense)
    assert rt.operators == ["TREC_CONV_2D"] and rd.operators == ["CONV_2D"]
    got, want = rt.predict(xs), rd.predict(xs)
    np.testing.assert_array_equal(got, want)
    assert np.unique(want).size > 8


def test_one_row_layers_are_always_singletons():
    """Output 1x1 (one row): every cluster has one member whatever L and H: TREC == CONV_2D."""
    require_tflm()
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

    from trec_tflm.layers import TRECConv2D

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
    """A trained Fashion-MNIST TREC model, converted by trec_tflm.convert: TFLM with TREC_CONV_2D
    registered (trec-tflm eval's default route) equals the golden route (TREC ops in the NumPy
    golden, other ops in TFLM) bit for bit on 100 real test images."""
    require_tflm()
    from trec_tflm import convert, evaluate

    model = small_trec_keras_model()
    model.fit(fashion.x_train[:4000], fashion.y_train[:4000], epochs=1, batch_size=64, verbose=0)
    buf = convert.convert(model, fashion.x_train[:200], calibration_samples=200)
    assert runtime.model_operators(buf).count("TREC_CONV_2D") == 2
    tflm_runner = evaluate.make_runner(buf, "auto")
    gold_runner = evaluate.make_runner(buf, "golden")
    assert tflm_runner.route == "tflm" and isinstance(tflm_runner, evaluate.RuntimeRunner)
    assert gold_runner.route == "golden"
    x = tflm_runner.prepare_input(fashion.x_test[:100])
    shape = tflm_runner.input.shape
    got = np.stack([tflm_runner.invoke(np.ascontiguousarray(xi.reshape(shape))) for xi in x])
    want = np.stack([gold_runner.invoke(np.ascontiguousarray(xi.reshape(shape))) for xi in x])
    np.testing.assert_array_equal(got, want)
    accuracy = np.mean(got.reshape(100, -1).argmax(axis=1) == fashion.y_test[:100])
    assert accuracy > 0.5, f"the trained model should classify: {accuracy}"

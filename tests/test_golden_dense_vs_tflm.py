"""golden.conv2d_s8 against TFLM itself: proves the golden dense reference is right.

One-op models (Keras Conv2D -> TFLiteConverter full-int8 with a representative dataset) run in the
tflite-micro wheel's interpreter (TFLM's reference CONV_2D). The golden gets the quantization
parameters read from the model the way TFLM derives them in Prepare:
  effective_scale[c] = double(input_scale) * double(filter_scale[c]) / double(output_scale)
  -> QuantizeMultiplier (quant.quantize_multipliers);
  activation range from the fused activation: zp + TfLiteRound(float(v) / float(output_scale)).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tflm = pytest.importorskip("tflite_micro")

from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402

from trec_tflm.spec import golden, quant

# (name, H, W, Cin, Cout, k, strides, dilation, padding, activation, input range)
CASES = [
    ("same_relu", 9, 10, 3, 8, 3, 1, 1, "same", "relu", (0.0, 1.0)),          # input zp -128
    ("valid_none", 11, 9, 8, 5, 5, 1, 1, "valid", None, (-2.0, 3.0)),
    ("stride2_same_relu6", 12, 13, 4, 6, 3, 2, 1, "same", "relu6", (-1.0, 8.0)),
    ("stride2_valid", 13, 12, 16, 7, 3, 2, 1, "valid", None, (-4.0, 0.5)),   # input zp near 127
    ("dilation2_same", 10, 11, 5, 4, 3, 1, 2, "same", "relu", (-1.0, 1.0)),
    ("dilation2_valid_7x7", 15, 16, 2, 3, 7, 1, 2, "valid", None, (-3.0, 3.0)),
    ("rect_kernel_1x1", 6, 7, 64, 9, (1, 3), 1, 1, "same", None, (-1.0, 2.0)),
    ("asym_stride", 9, 14, 3, 5, 5, (1, 2), 1, "same", "relu6", (0.0, 6.0)),
]


def _convert(model, rep_data) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in rep_data)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _round_away(v: np.ndarray | float) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))


def _read_conv(buf: bytes) -> dict:
    """The single CONV_2D's tensors, quantization and options, straight from the flatbuffer."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    sub = model.subgraphs[0]
    conv_ops = [op for op in sub.operators
                if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D
                or model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode == schema.BuiltinOperator.CONV_2D]
    assert len(conv_ops) == 1 and len(sub.operators) == 1, "expected a one-op CONV_2D model"
    op = conv_ops[0]
    t_in, t_w, t_b = (sub.tensors[i] for i in op.inputs[:3])
    t_out = sub.tensors[op.outputs[0]]
    w_shape = tuple(t_w.shape)
    w = np.frombuffer(bytes(model.buffers[t_w.buffer].data), np.int8).reshape(w_shape)
    b = np.frombuffer(bytes(model.buffers[t_b.buffer].data), np.int32).copy()
    opts = op.builtinOptions
    act = {schema.ActivationFunctionType.NONE: None, schema.ActivationFunctionType.RELU: "RELU",
           schema.ActivationFunctionType.RELU6: "RELU6"}[opts.fusedActivationFunction]
    pad = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}[opts.padding]
    return dict(
        in_scale=np.float32(t_in.quantization.scale[0]), in_zp=int(t_in.quantization.zeroPoint[0]),
        w_scale=np.asarray(t_w.quantization.scale, np.float32),
        w_zp=np.asarray(t_w.quantization.zeroPoint),
        out_scale=np.float32(t_out.quantization.scale[0]), out_zp=int(t_out.quantization.zeroPoint[0]),
        filter=w, bias=b, activation=act, padding=pad,
        stride=(opts.strideH, opts.strideW), dilation=(opts.dilationHFactor, opts.dilationWFactor))


def _golden_args(p: dict) -> dict:
    eff = (np.float64(p["in_scale"]) * p["w_scale"].astype(np.float64)) / np.float64(p["out_scale"])
    mult, shift = quant.quantize_multipliers(eff)
    zp, scale = p["out_zp"], p["out_scale"]
    amin, amax = -128, 127
    if p["activation"] in ("RELU", "RELU6"):
        amin = max(amin, zp + int(_round_away(np.float32(0.0) / scale)))
    if p["activation"] == "RELU6":
        amax = min(amax, zp + int(_round_away(np.float32(6.0) / scale)))
    return dict(input_zero_point=p["in_zp"], output_zero_point=zp, output_multiplier=mult,
                output_shift=shift, stride=p["stride"], dilation=p["dilation"], padding=p["padding"],
                activation_min=amin, activation_max=amax)


@pytest.mark.parametrize("name,h,w,cin,cout,k,strides,dilation,padding,act,rng_range", CASES,
                         ids=[c[0] for c in CASES])
def test_golden_conv2d_s8_matches_tflm(name, h, w, cin, cout, k, strides, dilation, padding, act, rng_range):
    import keras

    rng = np.random.default_rng(len(name) * 7919 + h * 31 + w)
    lo, hi = rng_range
    inp = keras.Input((h, w, cin), batch_size=1)
    layer = keras.layers.Conv2D(cout, k, strides=strides, padding=padding, dilation_rate=dilation,
                                activation=act, use_bias=True,
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=1),
                                bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=2))
    model = keras.Model(inp, layer(inp))
    rep = rng.uniform(lo, hi, (24, h, w, cin)).astype(np.float32)
    buf = _convert(model, rep)
    p = _read_conv(buf)
    assert np.all(p["w_zp"] == 0), "per-channel symmetric filter expected"
    assert p["w_scale"].size == cout, "per-channel quantization expected"
    args = _golden_args(p)

    interp = tflm.runtime.Interpreter.from_bytes(buf)
    checked = distinct = 0
    for i in range(6):
        xf = rng.uniform(lo, hi, (1, h, w, cin)).astype(np.float32)
        xq = np.clip(np.round(xf / p["in_scale"]) + p["in_zp"], -128, 127).astype(np.int8)
        if i == 5:
            xq = rng.integers(-128, 128, xq.shape, dtype=np.int8)  # the full int8 range too
        interp.set_input(xq, 0)
        interp.invoke()
        got = interp.get_output(0)
        want = golden.conv2d_s8(xq, p["filter"], p["bias"], **args)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{name} input {i}")
        checked += got.size
        distinct = max(distinct, np.unique(got).size)
        interp.reset()
    assert checked > 0 and distinct >= 16, "outputs too degenerate to prove anything"


def test_cases_cover_extreme_input_zero_points():
    """Non-negative inputs give zero point -128 (checked once against a converted model)."""
    import keras

    inp = keras.Input((6, 6, 2), batch_size=1)
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
    rep = np.random.default_rng(0).uniform(0.0, 1.0, (8, 6, 6, 2)).astype(np.float32)
    assert _read_conv(_convert(model, rep))["in_zp"] == -128

"""Small Keras models converted to int8, and the CONV_2D -> TREC_CONV_2D rewrite of docs/OP_SPEC.md
with the golden arguments read back from the flatbuffer (what trec_tflm.tflite.convert does for trained
models, written here independently so the converter can be tested against it)."""

from __future__ import annotations

import numpy as np

from trec_tflm.spec import golden, quant


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def convert_int8(model, rep_data) -> bytes:
    """Full-int8 conversion (int8 input and output) with a representative dataset."""
    from trec_tflm.tflite.convert import tf_int8_convert

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


def trained_trec_pair(ds, out_dir, *, conv1_filters: int, conv2_length: int, conv2_bits: int, train_images: int,
                      name: str):
    """(trec.tflite, dense.tflite) in ``out_dir``: a Fashion-MNIST TREC net (TREC 5x5 1->conv1_filters
    L 5 H 6, pool, TREC 3x3 ->16, pool, dense 10) trained one short epoch, and its dense twin."""
    import keras

    from trec_tflm.tflite.convert import convert
    from trec_tflm.training.layers import TRECConv2D
    from trec_tflm.training.models import dense_twin

    keras.utils.set_random_seed(7)
    inp = keras.Input((28, 28, 1), name="image")
    x = TRECConv2D(conv1_filters, 5, padding="same", activation="relu", sub_vector_length=5, hash_bits=6,
                   name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = TRECConv2D(16, 3, padding="same", activation="relu", sub_vector_length=conv2_length, hash_bits=conv2_bits,
                   name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name=name)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.x_train[:train_images], ds.y_train[:train_images], batch_size=64, epochs=1, verbose=0)
    trec, dense = out_dir / "trec.tflite", out_dir / "dense.tflite"
    trec.write_bytes(convert(model, ds.x_train[:200], calibration_samples=200, labels=ds.labels))
    dense.write_bytes(convert(dense_twin(model), ds.x_train[:200], calibration_samples=200, labels=ds.labels))
    return trec, dense

"""Keras model with TRECConv2D -> int8 ``.tflite`` whose TREC layers are CUSTOM ``TREC_CONV_2D`` ops.

Route (DESIGN §3, docs/CONVERTER.md):

1. check the model (one input, batch None or 1; every TREC layer expressible by the op);
2. measure the remaining ratio rc of every TREC layer with the float Keras model on the
   calibration images (recorded in the metadata; ``inspect`` uses it in its work model);
3. build the dense twin (``models.dense_twin``: TREC layers -> Conv2D with the same kernel/bias)
   and let TensorFlow's converter quantize it to full int8 with the calibration images;
4. find the CONV_2D operator of every TREC layer (:func:`match_trec_layers`: geometry plus the
   filter's content, which survives BatchNorm folding; names only break ties) and rewrite it into
   ``TREC_CONV_2D``: custom operator code, flexbuffer options, int8 hash tensor [L, H] as input 3;
5. write the ``trec_tflm`` metadata entry (JSON) into the model's ``metadata`` table.

``trec-tflm convert MODEL.keras -o MODEL.tflite`` is the command-line form; it writes the output
through a temporary file, so a failed conversion leaves nothing new at ``-o``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trec_tflm.spec import model as tm

DEFAULT_CALIBRATION_SAMPLES = 500
#: A CONV_2D's dequantized filter must equal a layer's kernel times a per-channel factor (BN folding)
#: up to this relative residual energy. int8 rounding leaves < K/(4*127^2) (< 1.3% for K = 800 even
#: in the worst case); unrelated kernels leave ~(K-1)/K.
MATCH_TOLERANCE = 0.05


class ConvertError(ValueError):
    """The model cannot be converted; the message says why and what to change."""


# ------------------------------------------------------------------------------------------------
# checks on the Keras side
# ------------------------------------------------------------------------------------------------
def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    return tuple(int(a) for a in v)  # type: ignore[return-value]


def check_model(model) -> None:
    """Refuse what TREC_CONV_2D (or this converter) cannot express, with the reason."""
    from trec_tflm.spec.op import MAX_HASH_BITS
    from trec_tflm.training.layers import trec_layers

    if len(model.inputs) != 1:
        raise ConvertError(f"the model has {len(model.inputs)} inputs; the converter supports models with one "
                           "image input")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ConvertError(f"the model's input has shape {shape}; expected an image batch [batch, H, W, C]")
    if shape[0] not in (None, 1):
        raise ConvertError(f"the model's input has a fixed batch size {shape[0]}; TREC_CONV_2D clusters within one "
                           "image and runs batch 1: build the model with batch size None (keras.Input(shape)) or 1")
    if any(d is None for d in shape[1:]):
        raise ConvertError(f"the model's input shape {shape} has unknown spatial or channel dimensions; "
                           "the int8 model needs a static [H, W, C]")
    for layer in trec_layers(model):
        where = f"TREC layer {layer.name!r}"
        if layer.data_format != "channels_last":
            raise ConvertError(f"{where}: data_format={layer.data_format!r}; TREC_CONV_2D works on NHWC tensors "
                               "(data_format='channels_last')")
        if getattr(layer, "groups", 1) != 1:
            raise ConvertError(f"{where}: groups={layer.groups}; TREC_CONV_2D has no grouped form")
        strides, dilation = _pair(layer.strides), _pair(layer.dilation_rate)
        if max(strides) > 1 and max(dilation) > 1:
            raise ConvertError(f"{where}: strides {strides} with dilation_rate {dilation}: TensorFlow and TFLite "
                               "do not support strides > 1 together with dilation > 1")
        if layer.padding not in ("same", "valid"):
            raise ConvertError(f"{where}: padding={layer.padding!r}; TREC_CONV_2D supports 'same' and 'valid'")
        if not 1 <= layer.hash_bits <= MAX_HASH_BITS:
            raise ConvertError(f"{where}: hash_bits={layer.hash_bits} outside 1..{MAX_HASH_BITS}")
        act = _keras_activation(layer)
        if act is None:
            raise ConvertError(f"{where}: activation {layer.activation.__name__!r} cannot be fused into "
                               "TREC_CONV_2D (use None, 'relu' or 'relu6', or a separate activation layer)")
        if not getattr(layer, "built", False):
            raise ConvertError(f"{where} is not built")
        r = np.asarray(layer.hash_kernel.numpy())
        if not np.all(np.isfinite(r)) or np.max(np.abs(r)) == 0:
            raise ConvertError(f"{where}: the hash matrix is zero or not finite; it cannot be quantized")


def _keras_activation(layer) -> str | None:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    return {"linear": "NONE", "relu": "RELU", "relu6": "RELU6"}.get(name)


def measure_reuse(model, images: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """rc = clusters / rows of every TREC layer, averaged over ``images`` (float Keras forward)."""
    from trec_tflm.training.layers import trec_layers

    layers = trec_layers(model)
    if not layers or len(images) == 0:
        return {}
    sums = {layer.name: 0.0 for layer in layers}
    for start in range(0, len(images), batch_size):
        xb = images[start:start + batch_size]
        model(xb, training=False)
        for layer in layers:
            sums[layer.name] += layer.reuse_rate * len(xb)
    return {name: s / len(images) for name, s in sums.items()}


# ------------------------------------------------------------------------------------------------
# TF conversion of the dense twin
# ------------------------------------------------------------------------------------------------
def tf_int8_convert(twin, calib: np.ndarray, float_io: bool = False) -> bytes:
    """TensorFlow's full-integer int8 conversion of a Keras model (no TREC rewriting)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(twin)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    import contextlib
    import io
    import warnings

    # Keras' export prints "Saved artifact at ..." and its signature to Python's stdout, the
    # calibrator "fully_quantize: 0, ..." to the process's stderr: both are kept for errors only.
    chatter = io.StringIO()
    native = _NativeStderr()
    try:
        with contextlib.redirect_stdout(chatter), native, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ConvertError(f"TensorFlow's TFLite converter failed on the dense twin: {exc}\n"
                           f"{chatter.getvalue()[-2000:]}{native.text[-2000:]}") from exc


class _NativeStderr:
    """Redirects file descriptor 2 (what C++ code writes to) into a temporary file while active."""

    def __init__(self):
        self.text = ""

    def __enter__(self):
        import tempfile

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        return False


# ------------------------------------------------------------------------------------------------
# matching CONV_2D operators to Keras convolutions
# ------------------------------------------------------------------------------------------------
@dataclass
class Match:
    layer: object  # the Keras layer
    op_index: int
    residual: float


def _conv_ops(m) -> list[int]:
    s = tm.schema()
    sg = m.subgraphs[0]
    return [i for i, op in enumerate(sg.operators)
            if tm.builtin_code(m.operatorCodes[op.opcodeIndex]) == s.BuiltinOperator.CONV_2D]


def _geometry_matches(layer, op, m) -> bool:
    """Filter shape, strides, dilation and padding (equivalent geometry) of layer and op agree."""
    from trec_tflm.spec.golden import conv_geometry

    sg = m.subgraphs[0]
    opts = op.builtinOptions
    kernel = layer.kernel
    kh, kw, cin, cout = (int(v) for v in kernel.shape)
    w_shape = tuple(int(v) for v in sg.tensors[op.inputs[1]].shape)
    if w_shape != (cout, kh, kw, cin):
        return False
    if (opts.strideH, opts.strideW) != _pair(layer.strides):
        return False
    if (opts.dilationHFactor, opts.dilationWFactor) != _pair(layer.dilation_rate):
        return False
    in_shape = [int(v) for v in sg.tensors[op.inputs[0]].shape]
    if len(in_shape) != 4:
        return False
    op_pad = "SAME" if opts.padding == tm.schema().Padding.SAME else "VALID"
    try:
        a = conv_geometry(in_shape[1:3], (kh, kw), _pair(layer.strides), _pair(layer.dilation_rate), op_pad)
        b = conv_geometry(in_shape[1:3], (kh, kw), _pair(layer.strides), _pair(layer.dilation_rate),
                          layer.padding.upper())
    except ValueError:
        return False
    return a == b


def _filter_residual(layer, op, m) -> float:
    """Relative energy of (dequantized filter - a_c * kernel_c), a_c fitted per output channel."""
    sg = m.subgraphs[0]
    wq = tm.tensor_data(m, op.inputs[1])
    q = tm.tensor_quant(sg.tensors[op.inputs[1]])
    if wq is None or q is None:
        return float("inf")
    cout = wq.shape[0]
    scale = q.scale if q.scale.size == cout else np.full(cout, q.scale[0])
    wd = wq.reshape(cout, -1).astype(np.float64) * scale.astype(np.float64)[:, None]
    k = np.transpose(np.asarray(layer.kernel.numpy(), np.float64), (3, 0, 1, 2)).reshape(cout, -1)
    kk = np.einsum("ck,ck->c", k, k)
    a = np.divide(np.einsum("ck,ck->c", wd, k), kk, out=np.zeros(cout), where=kk > 0)
    energy = float(np.sum(wd * wd))
    res = float(np.sum((wd - a[:, None] * k) ** 2))
    if energy == 0.0:
        return 0.0 if not np.any(k) else 1.0
    return res / energy


def _name_hint(layer_name: str, m, op) -> bool:
    """The layer's name appears as a path component of the op's filter or output tensor name
    (TensorFlow scopes look like ``model_1/conv1_1/convolution``)."""
    sg = m.subgraphs[0]
    names = []
    for idx in (op.inputs[1], op.outputs[0]):
        n = sg.tensors[idx].name
        names.append(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n))
    pattern = re.compile(re.escape(layer_name) + r"(_\d+)?")
    return any(pattern.fullmatch(part) for n in names for part in re.split(r"[/;:]", n))


def match_trec_layers(model, m) -> list[Match]:
    """Map every TREC layer to the CONV_2D operator(s) it became; raise ConvertError if any TREC
    layer has none or if an operator could be more than one convolution.

    A candidate pair must agree in filter shape [Cout, kh, kw, Cin], strides, dilation and
    (equivalent) padding, and the op's dequantized filter must be the layer's kernel times one
    factor per output channel (BatchNorm folding multiplies each channel by a constant) up to
    int8 rounding (MATCH_TOLERANCE). Every convolution of the model (plain Conv2D included)
    competes for every op, so a plain conv can never be mistaken for a TREC layer silently. When
    two layers pass for one op (identical or tiny kernels), the layer whose name the op's tensor
    names carry wins; otherwise the conversion stops.
    """
    from trec_tflm.training.layers import TRECConv2D
    from trec_tflm.training.models import conv_layers

    sg = m.subgraphs[0]
    convs = conv_layers(model)
    trec = [layer for layer in convs if isinstance(layer, TRECConv2D)]
    matches: list[Match] = []
    matched_layers = set()
    for i in _conv_ops(m):
        op = sg.operators[i]
        cands = []
        for layer in convs:
            if not _geometry_matches(layer, op, m):
                continue
            res = _filter_residual(layer, op, m)
            if res <= MATCH_TOLERANCE:
                cands.append((layer, res))
        if len(cands) > 1:
            named = [c for c in cands if _name_hint(c[0].name, m, op)]
            if len(named) == 1:
                cands = named
            else:
                raise ConvertError(
                    f"CONV_2D operator {i} is ambiguous: it matches the convolutions "
                    f"{', '.join(repr(c[0].name) for c in cands)} (same geometry and proportional kernels) and "
                    "its tensor names do not tell them apart; give the layers distinct weights")
        if cands and isinstance(cands[0][0], TRECConv2D):
            matches.append(Match(cands[0][0], i, cands[0][1]))
            matched_layers.add(id(cands[0][0]))
    missing = [layer.name for layer in trec if id(layer) not in matched_layers]
    if missing:
        raise ConvertError(
            f"TREC layer(s) {', '.join(missing)} have no matching CONV_2D operator in the converted model "
            "(the TFLite converter changed them beyond recognition, e.g. into another op, or merged layers with "
            "identical weights on the same input into one op); nothing was written")
    return matches


# ------------------------------------------------------------------------------------------------
# the rewrite
# ------------------------------------------------------------------------------------------------
def quantize_hash(r: np.ndarray) -> tuple[np.ndarray, float]:
    """R float [L, H] -> int8 symmetric per tensor (max |R| -> 127); returns (Rq, scale)."""
    r = np.asarray(r, np.float64)
    amax = float(np.max(np.abs(r)))
    if not np.isfinite(amax) or amax == 0.0:
        raise ConvertError("the hash matrix is zero or not finite; it cannot be quantized")
    scale = amax / 127.0
    return np.clip(np.round(r / scale), -127, 127).astype(np.int8), scale


def _trec_custom_opcode(m) -> int:
    s = tm.schema()
    for i, oc in enumerate(m.operatorCodes):
        if tm.builtin_code(oc) == s.BuiltinOperator.CUSTOM and tm.opcode_name(oc) == tm.TREC_CUSTOM_CODE:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode = s.BuiltinOperator.CUSTOM
    oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    oc.customCode = tm.TREC_CUSTOM_CODE
    oc.version = 1
    m.operatorCodes.append(oc)
    return len(m.operatorCodes) - 1


def _rewrite_op(m, match: Match, opcode: int) -> dict:
    """CONV_2D -> TREC_CONV_2D in place; returns the layer's metadata entry."""
    s = tm.schema()
    layer, sg = match.layer, m.subgraphs[0]
    op = sg.operators[match.op_index]
    opts = op.builtinOptions
    activation = tm.fused_activation_name(opts.fusedActivationFunction)
    rq, r_scale = quantize_hash(layer.hash_kernel.numpy())
    dead = [h for h in range(rq.shape[1]) if not np.any(rq[:, h])]
    if dead:
        print(f"trec-tflm convert: warning: {layer.name}: hash column(s) {dead} round to all zeros in int8 "
              "(their bit is always 0)", file=sys.stderr)

    buf = s.BufferT()
    buf.data = rq.reshape(-1).view(np.uint8).copy()
    m.buffers.append(buf)
    t = s.TensorT()
    t.shape = np.array(rq.shape, np.int32)
    t.type = s.TensorType.INT8
    t.buffer = len(m.buffers) - 1
    t.name = f"{layer.name}/trec_hash"
    qp = s.QuantizationParametersT()
    qp.scale = np.array([r_scale], np.float32)
    qp.zeroPoint = np.array([0], np.int64)
    qp.quantizedDimension = 0
    t.quantization = qp
    sg.tensors.append(t)
    hash_index = len(sg.tensors) - 1

    options = {
        "version": tm.TREC_OP_VERSION,
        "sub_vector_length": int(layer.sub_vector_length),
        "hash_bits": int(layer.hash_bits),
        "hash_center": layer.hash_center,
        "stride_h": int(opts.strideH), "stride_w": int(opts.strideW),
        "dilation_h": int(opts.dilationHFactor), "dilation_w": int(opts.dilationWFactor),
        "padding": layer.padding.upper(),  # geometry-equivalent to the op's (checked when matching)
        "activation": activation,
    }
    inputs = [int(v) for v in op.inputs]
    if len(inputs) == 2:
        inputs.append(-1)
    op.inputs = np.array(inputs[:3] + [hash_index], np.int32)
    op.opcodeIndex = opcode
    op.builtinOptionsType = 0  # BuiltinOptions.NONE
    op.builtinOptions = None
    op.customOptions = np.frombuffer(tm.encode_trec_options(options), np.uint8).copy()
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    w_shape = [int(v) for v in sg.tensors[inputs[1]].shape]
    return {"name": layer.name, "operator_index": match.op_index, "sub_vector_length": options["sub_vector_length"],
            "hash_bits": options["hash_bits"], "hash_center": options["hash_center"],
            "filter_shape": w_shape, "hash_scale": r_scale, "activation": activation}


def _json_safe(obj):
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        return json.loads(json.dumps(obj, default=str))


def convert(model, representative_data, *, float_io: bool = False,
            calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, labels=None, training_info=None,
            dataset_name: str | None = None) -> bytes:
    """Keras model -> int8 .tflite bytes with TREC layers as ``TREC_CONV_2D``.

    ``representative_data``: float images [N, H, W, C] as the model takes them (real images of
    the dataset); the first ``calibration_samples`` calibrate the int8 ranges and measure rc.
    ``float_io``: keep float32 input/output (QUANTIZE/DEQUANTIZE at the ends) instead of int8.
    ``labels``: class names stored in the metadata. ``training_info``: a JSON-able dict stored
    in the metadata (e.g. the training settings and test accuracy).
    """
    from trec_tflm import __version__
    from trec_tflm.training.models import dense_twin

    check_model(model)
    x = np.asarray(representative_data, np.float32)
    if calibration_samples < 1:
        raise ConvertError(f"calibration_samples must be >= 1, got {calibration_samples}")
    in_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != in_shape:
        raise ConvertError(f"representative data has shape {tuple(x.shape)}; "
                           f"the model takes [N, {', '.join(map(str, in_shape))}]")
    calib = x[:calibration_samples]
    if len(calib) == 0:
        raise ConvertError("no representative images given")

    rc = measure_reuse(model, calib)
    twin = dense_twin(model)
    buf = tf_int8_convert(twin, calib, float_io)
    m = tm.load_model(buf, "the converted model")
    matches = match_trec_layers(model, m)

    entries = []
    if matches:
        opcode = _trec_custom_opcode(m)
        for match in matches:
            entry = _rewrite_op(m, match, opcode)
            entry["rc"] = rc.get(match.layer.name)
            entry["match_residual"] = round(match.residual, 6)
            entries.append(entry)
    doc = {
        "format_version": tm.METADATA_FORMAT_VERSION,
        "trec_op_version": tm.TREC_OP_VERSION,
        "trec_tflm_version": __version__,
        "model_name": model.name,
        "io": "float32" if float_io else "int8",
        "input_shape": [1, *in_shape],
        "trec_layers": entries,
        "labels": None if labels is None else [str(v) for v in labels],
        "calibration": {"images": int(len(calib)), "dataset": dataset_name,
                        "rc_source": "float Keras model on the calibration images" if rc else None},
        "training": None if training_info is None else _json_safe(portable_training_info(training_info)),
    }
    tm.write_metadata(m, doc)
    out = tm.save_model(m)
    _self_check(out, len(entries))
    return out


def _self_check(buf: bytes, n_trec: int) -> None:
    """Re-read the written model: every TREC op parses and has consistent tensors."""
    m = tm.load_model(buf, "the rewritten model")
    found = 0
    for i, op in enumerate(m.subgraphs[0].operators):
        if tm.is_trec(m, op):
            tm.trec_op_params(m, op, where=f"operator {i}")
            found += 1
    if found != n_trec:
        raise ConvertError(f"internal error: wrote {n_trec} TREC ops, found {found}")


# ------------------------------------------------------------------------------------------------
# files and the CLI
# ------------------------------------------------------------------------------------------------
def load_keras_model(path):
    """Load a .keras file (TREC layers registered); ConvertError when it is not one."""
    import zipfile

    import keras


    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix != ".keras" or not zipfile.is_zipfile(p):
        raise ConvertError(f"{p} is not a Keras model file (expected a Keras 3 '.keras' archive, as "
                           "`trec-tflm train` writes)")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:  # noqa: BLE001 - deserialization raises many types
        raise ConvertError(f"{p}: cannot load the Keras model: {exc}") from None


#: Training settings that are facts about the model, not about the machine it was trained on.
PORTABLE_SETTINGS = ("model", "dataset", "epochs", "batch_size", "lr", "trec", "sub_vector_length", "hash_bits",
                     "hash_center", "hash_trainable", "train_limit", "validation_size", "augment", "distill_weight",
                     "distill_temperature", "seed", "train_images", "trec_layers")
#: Settings that name a file: only the file's name is kept.
FILE_SETTINGS = ("init_from", "distill_from")


def portable_training_info(info: dict) -> dict:
    """The training record reduced to portable facts: names, settings and figures, never a local
    path (checkpoint directory, dataset location), so a model carries no directory layout and the
    same model converted from two directories gives the same bytes."""
    out = {}
    settings = info.get("settings")
    if isinstance(settings, dict):
        kept = {k: settings[k] for k in PORTABLE_SETTINGS if k in settings}
        for k in FILE_SETTINGS:
            if settings.get(k):
                kept[k] = Path(str(settings[k])).name
        if str(kept.get("model", "")).endswith(".keras"):  # train --model FILE.keras: the file's name only
            kept["model"] = Path(str(kept["model"])).name
        out["settings"] = kept
    elif "settings" in info:
        out["settings"] = None
    test = info.get("test")
    if isinstance(test, dict):
        out["test"] = {k: test[k] for k in ("accuracy", "loss", "reuse_rate") if k in test}
    return out


def _training_info(model_path: Path) -> dict | None:
    hist = model_path.with_name("history.json")
    if not hist.is_file():
        return None
    try:
        record = json.loads(hist.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    info = {"settings": record.get("settings")}
    if "test" in record:
        info["test"] = record["test"]
    return info


def convert_file(model_path, output_path, *, dataset: str = "fashion_mnist", dataset_path=None,
                 calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, float_io: bool = False) -> dict:
    """``trec-tflm convert``: load, convert with real calibration images, write atomically.
    Returns a summary (size, TREC layers)."""
    from trec_tflm.data import load_dataset
    from trec_tflm.paths import check_output_file

    model_path = Path(model_path)
    check_output_file(output_path, "-o")  # before minutes of conversion
    model = load_keras_model(model_path)
    ds = load_dataset(dataset, dataset_path)
    if tuple(ds.input_shape) != tuple(int(d) for d in model.inputs[0].shape[1:]):
        raise ConvertError(f"dataset {dataset} has images of shape {ds.input_shape}, the model takes "
                           f"{tuple(model.inputs[0].shape[1:])}: choose the dataset the model was trained on")
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(ds.x_train), size=min(calibration_samples, len(ds.x_train)), replace=False))
    buf = convert(model, ds.x_train[idx], float_io=float_io, calibration_samples=calibration_samples,
                  labels=ds.labels, training_info=_training_info(model_path), dataset_name=ds.name)
    tm.write_atomically(output_path, buf)
    meta = tm.read_metadata(tm.load_model(buf))
    return {"output": str(output_path), "bytes": len(buf), "trec_layers": meta["trec_layers"]}


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="Keras model (.keras) with TRECConv2D layers")
    p.add_argument("-o", "--output", required=True, help="output .tflite path")
    p.add_argument("--dataset", default="fashion_mnist",
                   help="dataset whose training images calibrate the int8 ranges (default fashion_mnist)")
    p.add_argument("--dataset-path", default=None, help="dataset directory (default: Debian package / Keras)")
    p.add_argument("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES,
                   help=f"calibration images (default {DEFAULT_CALIBRATION_SAMPLES})")
    p.add_argument("--float-io", action="store_true", help="float32 input and output (int8 inside)")
    p.set_defaults(func=convert_command)


def convert_command(args) -> int:
    summary = convert_file(args.model, args.output, dataset=args.dataset, dataset_path=args.dataset_path,
                           calibration_samples=args.calibration_samples, float_io=args.float_io)
    print(f"wrote {summary['output']} ({summary['bytes']:,} bytes), "
          f"{len(summary['trec_layers'])} TREC_CONV_2D op(s)")
    for e in summary["trec_layers"]:
        rc = "unknown" if e["rc"] is None else f"{e['rc']:.4f}"
        print(f"  op {e['operator_index']:>3}  {e['name']:<20} L={e['sub_vector_length']:<3} H={e['hash_bits']:<3} "
              f"centre={e['hash_center']:<5} act={e['activation']:<6} rc={rc}")
    from trec_tflm.tflite.describe import general_path_hint, kernel_path

    for e in summary["trec_layers"]:
        _, kh, kw, cin = e["filter_shape"]
        path = kernel_path(e["sub_vector_length"], cin, kw, kh * kw * cin)
        if path["path"] == "general":
            print(f"trec-tflm convert: warning: {e['name']}: "
                  + general_path_hint(e["sub_vector_length"], cin, kw, path["strip_lengths"]), file=sys.stderr)
    return 0

"""Keras model with TRECConv2D -> int8 ``.tflite`` whose TREC layers are CUSTOM ``TREC_CONV_2D`` ops.

Route (DESIGN §3, docs/CONVERTER.md):

1. check the model (one input, batch None or 1; every TREC layer expressible by the op);
2. measure the remaining ratio rc of every TREC layer with the float Keras model on the
   calibration images (recorded in the metadata; ``inspect`` uses it in its work model);
3. build the dense twin (``models.dense_twin``: TREC layers -> Conv2D with the same kernel/bias)
   and let TensorFlow's converter quantize it to full int8 with the calibration images;
4. find the CONV_2D operator of every TREC layer (:func:`match_trec_layers`: geometry plus the
   filter's content, which survives BatchNorm folding; names only break ties) and rewrite it into
   ``TREC_CONV_2D``: custom operator code, flexbuffer options, int8 hash tensor [L, H] as input 3
   (this step lives in :mod:`trec_tflm.tflite.rewrite`);
5. write the ``trec_tflm`` metadata entry (JSON) into the model's ``metadata`` table.

``trec-tflm convert MODEL.keras -o MODEL.tflite`` is the command-line form; it writes the output
through a temporary file, so a failed conversion leaves nothing new at ``-o``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from trec_tflm import __version__
from trec_tflm.data import load_dataset
from trec_tflm.host.capture import capture_fds
from trec_tflm.paths import check_output_file
from trec_tflm.spec import model as tm
from trec_tflm.spec.golden import general_path_hint, kernel_path
from trec_tflm.spec.op import MAX_HASH_BITS

# the matching and rewriting step (4.) has its own module; these names stay importable from here
from trec_tflm.tflite.rewrite import (  # noqa: F401
    MATCH_TOLERANCE,
    ConvertError,
    Match,
    match_trec_layers,
    pair,
    quantize_hash,
    rewrite_op,
    set_scratch_budgets,
    trec_custom_opcode,
)

DEFAULT_CALIBRATION_SAMPLES = 500


# ------------------------------------------------------------------------------------------------
# checks on the Keras side
# ------------------------------------------------------------------------------------------------
def check_model(model, scratch_budget: dict | None = None) -> None:
    """Refuse what TREC_CONV_2D (or this converter) cannot express, with the reason (and budgets
    for layers that are not TREC layers, before minutes of conversion)."""
    # lazy: training/ loads Keras and TensorFlow (`trec-tflm convert --help` must not)
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
        strides, dilation = pair(layer.strides), pair(layer.dilation_rate)
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
    names = [layer.name for layer in trec_layers(model)]
    for name in scratch_budget or {}:
        if name not in names:
            raise ConvertError(f"scratch budget for {name!r}: the model has no TREC layer of that name; its TREC "
                               f"layers: {', '.join(map(repr, names)) or 'none'}")


def _keras_activation(layer) -> str | None:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    return {"linear": "NONE", "relu": "RELU", "relu6": "RELU6"}.get(name)


def measure_reuse(model, images: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """rc = clusters / rows of every TREC layer, averaged over ``images`` (float Keras forward)."""
    from trec_tflm.training.layers import trec_layers  # lazy: Keras and TensorFlow

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
    import tensorflow as tf  # lazy: `trec-tflm convert --help` must not load TensorFlow

    conv = tf.lite.TFLiteConverter.from_keras_model(twin)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    # Keras' export prints "Saved artifact at ..." and its signature to Python's stdout, the
    # calibrator "fully_quantize: 0, ..." to the process's stderr: both are kept for errors only.
    chatter = io.StringIO()
    native: list = []
    try:
        with contextlib.redirect_stdout(chatter), capture_fds((2,)) as native, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        said = native[0] if native else ""
        raise ConvertError(f"TensorFlow's TFLite converter failed on the dense twin: {exc}\n"
                           f"{chatter.getvalue()[-2000:]}{said[-2000:]}") from exc


def _json_safe(obj):
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        return json.loads(json.dumps(obj, default=str))


def convert(model, representative_data, *, float_io: bool = False,
            calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, labels=None, training_info=None,
            dataset_name: str | None = None, scratch_budget: dict | None = None) -> bytes:
    """Keras model -> int8 .tflite bytes with TREC layers as ``TREC_CONV_2D``.

    ``representative_data``: float images [N, H, W, C] as the model takes them (real images of
    the dataset); the first ``calibration_samples`` calibrate the int8 ranges and measure rc.
    ``float_io``: keep float32 input/output (QUANTIZE/DEQUANTIZE at the ends) instead of int8.
    ``labels``: class names stored in the metadata. ``training_info``: a JSON-able dict stored
    in the metadata (e.g. the training settings and test accuracy). ``scratch_budget``: TREC layer
    name -> bytes, the op's ``scratch_budget`` option (caps the arena scratch that layer requests;
    docs/OP_SPEC.md); layers not named request their fast plan's scratch.
    """
    from trec_tflm.training.models import dense_twin  # lazy: Keras and TensorFlow

    check_model(model, scratch_budget)
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
        opcode = trec_custom_opcode(m)
        for match in matches:
            entry = rewrite_op(m, match, opcode)
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
    set_scratch_budgets(m, scratch_budget or {})
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
    """Load a .keras file (TREC layers registered, :func:`trec_tflm.training.saving.load_keras_model`);
    ConvertError when it is not one."""
    from trec_tflm.training import saving  # lazy: Keras and TensorFlow

    try:
        return saving.load_keras_model(path)
    except saving.KerasModelError as exc:
        raise ConvertError(str(exc)) from None


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
                 calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, float_io: bool = False,
                 scratch_budget: dict | None = None) -> dict:
    """``trec-tflm convert``: load, convert with real calibration images, write atomically.
    Returns a summary (size, TREC layers)."""
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
                  labels=ds.labels, training_info=_training_info(model_path), dataset_name=ds.name,
                  scratch_budget=scratch_budget)
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
    p.add_argument("--scratch-budget", action="append", default=[], metavar="LAYER=BYTES", type=_budget_arg,
                   help="cap the arena scratch of TREC layer LAYER at BYTES (its scratch_budget option, "
                        "docs/OP_SPEC.md; at least the layer's minimum); repeat for several layers")
    p.set_defaults(func=convert_command)


def _budget_arg(text: str) -> tuple[str, int]:
    name, sep, value = text.rpartition("=")
    try:
        nbytes = int(value)
    except ValueError:
        nbytes = 0
    if not sep or not name or nbytes < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAYER=BYTES with BYTES >= 1 (e.g. conv2=12000)")
    return name, nbytes


def convert_command(args) -> int:
    summary = convert_file(args.model, args.output, dataset=args.dataset, dataset_path=args.dataset_path,
                           calibration_samples=args.calibration_samples, float_io=args.float_io,
                           scratch_budget=dict(args.scratch_budget))
    print(f"wrote {summary['output']} ({summary['bytes']:,} bytes), "
          f"{len(summary['trec_layers'])} TREC_CONV_2D op(s)")
    for e in summary["trec_layers"]:
        rc = "unknown" if e["rc"] is None else f"{e['rc']:.4f}"
        print(f"  op {e['operator_index']:>3}  {e['name']:<20} L={e['sub_vector_length']:<3} H={e['hash_bits']:<3} "
              f"centre={e['hash_center']:<5} act={e['activation']:<6} rc={rc}")
    for e in summary["trec_layers"]:
        _, kh, kw, cin = e["filter_shape"]
        path = kernel_path(e["sub_vector_length"], cin, kw, kh * kw * cin)
        if path["path"] == "general":
            print(f"trec-tflm convert: warning: {e['name']}: "
                  + general_path_hint(e["sub_vector_length"], cin, kw, path["strip_lengths"]), file=sys.stderr)
    return 0

"""Reading and rewriting ``.tflite`` flatbuffers: the package's one reader of a model (TFLite's schema,
:func:`schema`), shared by the converter, ``inspect``, ``eval``, the host runtime and firmware generation;
:mod:`trec_tflm.spec.validate` checks a model with the same schema before native code sees it.

- :func:`load_model` / :func:`save_model`: bytes or a path <-> ``schema_py_generated.ModelT`` (the
  object API of TFLite's schema), with clear errors for files that are not TFLite flatbuffers.
- :func:`operators`: every operator of subgraph 0 with its name, tensors, shapes, dtypes and
  quantization (:class:`OpInfo`).
- :func:`operator_names` / :func:`custom_codes` / :func:`model_operators`: the operator names of every
  subgraph and the custom codes a model declares (what the host runtime and the firmware resolver need).
- :func:`encode_trec_options` / :func:`decode_trec_options`: the ``TREC_CONV_2D`` custom options
  (a flexbuffer map, docs/OP_SPEC.md "Options"); the decoder refuses unknown versions and missing,
  ill-typed or out-of-range keys, naming the key.
- :func:`read_metadata` / :func:`write_metadata`: the ``trec_tflm`` entry of the model's
  ``metadata`` table (a JSON document, docs/OP_SPEC.md "Converter").
- :func:`trec_op_params`: everything ``golden.trec_conv2d_s8`` needs for one TREC op, derived from
  the tensors the way TFLM's Prepare derives it (per-channel multiplier from the float32 scales in
  double, activation range as ``CalculateActivationRangeQuantized``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import flatbuffers
import numpy as np

from trec_tflm import paths
from trec_tflm.spec import quant
from trec_tflm.spec.op import (  # noqa: F401  (the reader's callers take these names from here too)
    ACTIVATIONS,
    METADATA_FORMAT_VERSION,
    METADATA_NAME,
    TREC_CUSTOM_CODE,
    TREC_OP_VERSION,
    TfliteModelError,
    activation_range_tflm,
    check_trec_options,
    decode_trec_options,
    encode_trec_options,
)

PathLike = Union[str, os.PathLike]


def schema():
    """TFLite's generated flatbuffer schema module (object API), from TensorFlow: the one schema every
    reader of a ``.tflite`` in this package uses."""
    # lazy: importing it imports TensorFlow, which `trec-tflm CMD --help` must not load
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


# ------------------------------------------------------------------------------------------------
# load / save
# ------------------------------------------------------------------------------------------------
def read_bytes(model: Union[bytes, bytearray, memoryview, PathLike]) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_bytes()


def check_identifier(buf: bytes, what: str = "the model") -> None:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TfliteModelError(f"{what} is not a TFLite flatbuffer (no 'TFL3' file identifier at byte 4; "
                               f"{len(buf)} bytes)")


def load_model(model: Union[bytes, bytearray, memoryview, PathLike], what: str | None = None):
    """Parse a .tflite (bytes or path) into a ``ModelT``; TfliteModelError when it is not one."""
    if what is None:
        what = str(model) if isinstance(model, (str, os.PathLike)) else "the model"
    buf = read_bytes(model)
    check_identifier(buf, what)
    s = schema()
    try:
        m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises anything
        raise TfliteModelError(f"{what} is not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    if not m.subgraphs:
        raise TfliteModelError(f"{what} has no subgraph")
    if m.buffers is None:
        m.buffers = []
    for b in m.buffers:
        if getattr(b, "offset", 0) not in (0, 1) and b.data is None:
            raise TfliteModelError(f"{what} keeps buffers outside the flatbuffer (models > 2 GB are not supported)")
    return m


def save_model(m) -> bytes:
    """``ModelT`` -> .tflite bytes (file identifier TFL3)."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_atomically(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (:func:`trec_tflm.paths.replace_atomically`)."""
    paths.replace_atomically(path, lambda tmp: tmp.write_bytes(data))


# ------------------------------------------------------------------------------------------------
# operators and tensors
# ------------------------------------------------------------------------------------------------
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}


def _enum_names(enum_cls) -> dict:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def tensor_type_name(t: int) -> str:
    return _enum_names(schema().TensorType).get(t, f"TYPE_{t}").lower()


def tensor_dtype(tensor) -> np.dtype:
    if tensor.type not in _DTYPES:
        raise TfliteModelError(f"tensor {tensor_name(tensor)!r} has type {tensor_type_name(tensor.type)}, "
                               "which this tool cannot read")
    return np.dtype(_DTYPES[tensor.type])


def tensor_name(tensor) -> str:
    n = tensor.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")


def builtin_code(opcode) -> int:
    return max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))


def opcode_name(opcode) -> str:
    s = schema()
    code = builtin_code(opcode)
    if code == s.BuiltinOperator.CUSTOM:
        cc = opcode.customCode
        return cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc or "CUSTOM")
    return _enum_names(s.BuiltinOperator).get(code, f"BUILTIN_{code}")


def op_name(m, op) -> str:
    if not 0 <= op.opcodeIndex < len(m.operatorCodes or []):
        raise TfliteModelError(f"operator refers to opcode index {op.opcodeIndex}, the model has "
                               f"{len(m.operatorCodes or [])}")
    return opcode_name(m.operatorCodes[op.opcodeIndex])


def is_trec(m, op) -> bool:
    return op_name(m, op) == TREC_CUSTOM_CODE


def operator_names(m) -> list[str]:
    """Operator names of every operator in every subgraph, in order (builtin names such as ``CONV_2D``,
    custom codes such as ``TREC_CONV_2D``; ``OPCODE_<i>`` for an operator-code index out of range)."""
    codes = [opcode_name(oc) for oc in m.operatorCodes or []]
    return [codes[op.opcodeIndex] if 0 <= op.opcodeIndex < len(codes) else f"OPCODE_{op.opcodeIndex}"
            for sg in m.subgraphs or [] for op in sg.operators or []]


def custom_codes(m) -> set[str]:
    """The custom operator codes the model declares (used or not)."""
    s = schema()
    return {opcode_name(oc) for oc in m.operatorCodes or [] if builtin_code(oc) == s.BuiltinOperator.CUSTOM}


def model_operators(model: Union[bytes, bytearray, memoryview, PathLike]) -> list[str]:
    """:func:`operator_names` of a ``.tflite`` (bytes or a path)."""
    return operator_names(load_model(model))


def tensor_data(m, index: int, subgraph: int = 0) -> np.ndarray | None:
    """A constant tensor's values (shaped), or None for a tensor without data (activations)."""
    t = m.subgraphs[subgraph].tensors[index]
    if not 0 <= t.buffer < len(m.buffers):
        raise TfliteModelError(f"tensor {tensor_name(t)!r} refers to buffer {t.buffer}, the model has {len(m.buffers)}")
    data = m.buffers[t.buffer].data
    if data is None or len(data) == 0:
        return None
    dtype = tensor_dtype(t)
    raw = np.asarray(data, np.uint8).tobytes()
    shape = tuple(int(v) for v in (t.shape if t.shape is not None else ()))
    n = int(np.prod(shape)) if shape else 1
    if len(raw) != n * dtype.itemsize:
        raise TfliteModelError(f"tensor {tensor_name(t)!r}: buffer holds {len(raw)} bytes, shape {list(shape)} "
                               f"of {dtype.name} needs {n * dtype.itemsize}")
    return np.frombuffer(raw, dtype).reshape(shape).copy()


@dataclass
class Quant:
    scale: np.ndarray  # float32 [n]
    zero_point: np.ndarray  # int64 [n]
    axis: int = 0

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1


def tensor_quant(tensor) -> Quant | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zp = q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else np.zeros(len(q.scale))
    return Quant(np.asarray(q.scale, np.float32), np.asarray(zp, np.int64), int(q.quantizedDimension))


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list
    dtype: str
    constant: bool
    scale: list | None = None
    zero_point: list | None = None

    def to_dict(self) -> dict:
        d = {"index": self.index, "name": self.name, "shape": self.shape, "dtype": self.dtype,
             "constant": self.constant}
        if self.scale is not None:
            d["quantization"] = {"scale": self.scale if len(self.scale) <= 4 else
                                 f"{len(self.scale)} per-channel scales",
                                 "zero_point": self.zero_point if len(self.zero_point) <= 4 else
                                 f"{len(self.zero_point)} per-channel zero points"}
        return d


def tensor_info(m, index: int, subgraph: int = 0) -> TensorInfo | None:
    if index < 0:
        return None
    t = m.subgraphs[subgraph].tensors[index]
    data = m.buffers[t.buffer].data if 0 <= t.buffer < len(m.buffers) else None
    q = tensor_quant(t)
    return TensorInfo(index, tensor_name(t), [int(v) for v in (t.shape if t.shape is not None else [])],
                      tensor_type_name(t.type), data is not None and len(data) > 0,
                      None if q is None else [float(v) for v in q.scale],
                      None if q is None else [int(v) for v in q.zero_point])


@dataclass
class OpInfo:
    index: int
    name: str
    inputs: list  # TensorInfo or None (optional input absent)
    outputs: list
    trec_options: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"index": self.index, "op": self.name,
             "inputs": [None if t is None else t.to_dict() for t in self.inputs],
             "outputs": [t.to_dict() for t in self.outputs]}
        if self.trec_options is not None:
            d["trec_options"] = self.trec_options
        d.update(self.extra)
        return d


def operators(m, subgraph: int = 0) -> list[OpInfo]:
    """Every operator of a subgraph in execution order; TREC ops get their decoded options."""
    out = []
    for i, op in enumerate(m.subgraphs[subgraph].operators or []):
        name = op_name(m, op)
        info = OpInfo(i, name, [tensor_info(m, j, subgraph) for j in (op.inputs if op.inputs is not None else [])],
                      [tensor_info(m, j, subgraph) for j in (op.outputs if op.outputs is not None else [])])
        if name == TREC_CUSTOM_CODE:
            info.trec_options = decode_trec_options(custom_options_bytes(op), where=f"operator {i}")
        out.append(info)
    return out


def custom_options_bytes(op) -> bytes:
    co = op.customOptions
    return b"" if co is None else np.asarray(co, np.uint8).tobytes()


# ------------------------------------------------------------------------------------------------
# metadata
# ------------------------------------------------------------------------------------------------
def read_metadata(m) -> dict | None:
    """Our JSON document from the ``metadata`` table, or None when the model has none."""
    for md in m.metadata or []:
        name = md.name.decode("utf-8", "replace") if isinstance(md.name, bytes) else md.name
        if name == METADATA_NAME:
            data = m.buffers[md.buffer].data if 0 <= md.buffer < len(m.buffers) else None
            raw = b"" if data is None else np.asarray(data, np.uint8).tobytes()
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TfliteModelError(f"the model's '{METADATA_NAME}' metadata is not JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise TfliteModelError(f"the model's '{METADATA_NAME}' metadata is not a JSON object")
            return doc
    return None


def write_metadata(m, doc: dict) -> None:
    """Set our metadata entry (replacing an earlier one) to the JSON of ``doc``."""
    s = schema()
    payload = np.frombuffer(json.dumps(doc, indent=None, sort_keys=True).encode("utf-8"), np.uint8).copy()
    for md in m.metadata or []:
        name = md.name.decode("utf-8", "replace") if isinstance(md.name, bytes) else md.name
        if name == METADATA_NAME:
            m.buffers[md.buffer].data = payload
            return
    buf = s.BufferT()
    buf.data = payload
    m.buffers.append(buf)
    md = s.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata = list(m.metadata or []) + [md]


# ------------------------------------------------------------------------------------------------
# integer parameters of a conv-like op, as TFLM's Prepare derives them
# ------------------------------------------------------------------------------------------------
def fused_activation_name(code: int) -> str:
    names = _enum_names(schema().ActivationFunctionType)
    name = names.get(code, f"ACT_{code}")
    if name not in ACTIVATIONS:
        raise TfliteModelError(f"fused activation {name} cannot be expressed by TREC_CONV_2D "
                               f"(allowed: {', '.join(ACTIVATIONS)})")
    return name


def _conv_params(m, op, subgraph: int, where: str, activation: str, n_inputs: tuple) -> dict:
    """Tensors and requantization of a conv-like int8 op (input 0, filter 1, bias 2 or -1)."""
    ins = list(op.inputs if op.inputs is not None else [])
    outs = list(op.outputs if op.outputs is not None else [])
    if len(ins) not in n_inputs or len(outs) != 1:
        raise TfliteModelError(f"{where}: unexpected operand count ({len(ins)} inputs, {len(outs)} outputs)")
    sg = m.subgraphs[subgraph]
    t_in, t_w, t_out = sg.tensors[ins[0]], sg.tensors[ins[1]], sg.tensors[outs[0]]
    w = tensor_data(m, ins[1], subgraph)
    b = tensor_data(m, ins[2], subgraph) if len(ins) > 2 and ins[2] >= 0 else None
    if w is None or w.dtype != np.int8 or w.ndim != 4:
        raise TfliteModelError(f"{where}: the filter must be a constant int8 [Cout, kh, kw, Cin] tensor")
    if b is not None and (b.dtype != np.int32 or b.shape != (w.shape[0],)):
        raise TfliteModelError(f"{where}: the bias must be int32 [{w.shape[0]}]")
    for t, what in ((t_in, "input"), (t_out, "output")):
        if t.type != schema().TensorType.INT8:
            raise TfliteModelError(f"{where}: the {what} must be int8, got {tensor_type_name(t.type)}")
    q_in, q_w, q_out = tensor_quant(t_in), tensor_quant(t_w), tensor_quant(t_out)
    if q_in is None or q_out is None or q_w is None:
        raise TfliteModelError(f"{where}: input, filter and output must be quantized")
    if not q_in.per_tensor or not q_out.per_tensor:
        raise TfliteModelError(f"{where}: input and output must have per-tensor quantization")
    cout = w.shape[0]
    w_scale = q_w.scale if q_w.scale.size == cout else np.full(cout, q_w.scale[0], np.float32)
    if np.any(q_w.zero_point != 0):
        raise TfliteModelError(f"{where}: the filter must be symmetric (zero point 0)")
    # TFLM's PopulateConvolutionQuantizationParams: double(in_scale) * double(w_scale[c]) / double(out_scale)
    eff = (np.float64(q_in.scale[0]) * w_scale.astype(np.float64)) / np.float64(q_out.scale[0])
    mult, shift = quant.quantize_multipliers(eff)
    amin, amax = activation_range_tflm(activation, float(q_out.scale[0]), int(q_out.zero_point[0]))
    kwargs = dict(input_zero_point=int(q_in.zero_point[0]), output_zero_point=int(q_out.zero_point[0]),
                  output_multiplier=mult, output_shift=shift, activation_min=amin, activation_max=amax)
    return {"filter": w, "bias": b, "kwargs": kwargs, "input_index": int(ins[0]), "output_index": int(outs[0])}


def trec_op_params(m, op, subgraph: int = 0, where: str = TREC_CUSTOM_CODE) -> dict:
    """Tensors and keyword arguments of ``golden.trec_conv2d_s8`` for one TREC_CONV_2D operator:
    ``{"filter", "bias", "hash", "kwargs", "options", "input_index", "output_index"}``."""
    opts = decode_trec_options(custom_options_bytes(op), where)
    ins = list(op.inputs if op.inputs is not None else [])
    if len(ins) != 4:
        raise TfliteModelError(f"{where}: expected 4 inputs (input, filter, bias or -1, hash), got {len(ins)}")
    p = _conv_params(m, op, subgraph, where, opts["activation"], (4,))
    r = tensor_data(m, ins[3], subgraph)
    if r is None or r.dtype != np.int8 or r.shape != (opts["sub_vector_length"], opts["hash_bits"]):
        raise TfliteModelError(f"{where}: the hash must be a constant int8 [L={opts['sub_vector_length']}, "
                               f"H={opts['hash_bits']}] tensor, got "
                               f"{None if r is None else (r.dtype.name, list(r.shape))}")
    k = int(np.prod(p["filter"].shape[1:]))
    if opts["sub_vector_length"] > k:
        raise TfliteModelError(f"{where}: sub_vector_length L={opts['sub_vector_length']} exceeds "
                               f"K = kh*kw*Cin = {k}")
    p["kwargs"].update(sub_vector_length=opts["sub_vector_length"], hash_bits=opts["hash_bits"],
                       hash_center=opts["hash_center"], stride=(opts["stride_h"], opts["stride_w"]),
                       dilation=(opts["dilation_h"], opts["dilation_w"]), padding=opts["padding"])
    p["hash"] = r
    p["options"] = opts
    return p


def conv_op_params(m, op, subgraph: int = 0, where: str = "CONV_2D") -> dict:
    """Tensors and keyword arguments of ``golden.conv2d_s8`` for one int8 CONV_2D operator."""
    s = schema()
    if builtin_code(m.operatorCodes[op.opcodeIndex]) != s.BuiltinOperator.CONV_2D:
        raise TfliteModelError(f"{where}: not a CONV_2D")
    o = op.builtinOptions
    p = _conv_params(m, op, subgraph, where, fused_activation_name(o.fusedActivationFunction), (2, 3))
    p["kwargs"].update(stride=(o.strideH, o.strideW), dilation=(o.dilationHFactor, o.dilationWFactor),
                       padding="SAME" if o.padding == s.Padding.SAME else "VALID")
    return p

"""One validator of a ``.tflite`` model, run by every reader before native code sees the bytes.

:func:`validate_model` (bytes -> ``ModelT``) refuses, with a :class:`ModelValidationError` naming
the problem, any model that

1. is not a well-formed flatbuffer: every offset, vtable, vector and string the schema's reader
   touches must lie inside the bytes (:func:`verified_parse`, in :mod:`trec_tflm.spec.flatbuffer_check`;
   TFLM reads the same fields without checking them, so an offset out of range there is a read past
   the model);
2. breaks the TFLite schema's invariants: operator-code, tensor, buffer and subgraph indices in
   range, constant buffers exactly as long as their tensor's shape and type need, each subgraph's
   inputs and outputs among its tensors, operators in execution order (every activation an
   operator reads is a subgraph input or was written by an earlier operator), quantization
   parameters consistent (one zero point per scale, finite scales, zero points in the type's
   range, per-channel scales along an existing dimension);
3. has a ``TREC_CONV_2D`` (or an int8 ``CONV_2D``, which the golden route also computes in
   Python) that breaks the rules of docs/OP_SPEC.md: options, constant filter/bias/hash of the
   right shapes, finite positive scales, one filter scale per output channel, zero points in
   range, the output shape the options give, ``L <= K``, geometry that fits int32.

Sizes are bounded where TFLM's ``int`` arithmetic ends: a tensor of 2^31 bytes or more is refused.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from trec_tflm.spec import model as tm
from trec_tflm.spec.flatbuffer_check import (  # noqa: F401  (part of this module's API)
    INT32_MAX,
    ModelValidationError,
    verified_parse,
)

#: TFLite's schema version (``Model.version``); TFLM refuses others.
SCHEMA_VERSION = 3
#: Highest tensor rank accepted (TFLite's kernels stop at 6; RuntimeShape's inline storage is 6).
MAX_RANK = 6


# ------------------------------------------------------------------------------------------------
# 2. schema invariants
# ------------------------------------------------------------------------------------------------
_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


def _s(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def _ints(v) -> list:
    return [] if v is None or isinstance(v, int) else [int(x) for x in np.ravel(v)]


class _Checker:
    def __init__(self, m, buf: bytes, what: str):
        self.m, self.buf, self.what = m, buf, what

    def fail(self, msg: str):
        raise ModelValidationError(f"{self.what}: {msg}")

    # --------------------------------------------------------------------------------------------
    def model(self):
        m = self.m
        if m.version != SCHEMA_VERSION:
            self.fail(f"schema version {m.version}, TFLite and TFLM read version {SCHEMA_VERSION}")
        if not m.subgraphs:
            self.fail("has no subgraph")
        m.buffers = list(m.buffers or [])
        for i, b in enumerate(m.buffers):
            if int(getattr(b, "offset", 0) or 0) > 1 or int(getattr(b, "size", 0) or 0) > 0:
                self.fail(f"buffer {i} keeps its data outside the flatbuffer (offset {b.offset}, size {b.size}); "
                          "models with external buffers are not supported")
        if m.externalBuffers or m.externalBufferGroups:
            self.fail("uses external buffers, which TFLM and this tool do not support")
        self.n_codes = len(m.operatorCodes or [])
        names = _enum_names(tm.schema().BuiltinOperator)
        for i, oc in enumerate(m.operatorCodes or []):
            code = tm.builtin_code(oc)
            if code not in names:
                self.fail(f"operator code {i} has builtin code {code}, which TFLite's schema does not define")
            if code == tm.schema().BuiltinOperator.CUSTOM and not _s(oc.customCode):
                self.fail(f"operator code {i} is CUSTOM without a custom_code name")
        for i, md in enumerate(m.metadata or []):
            if not 0 <= md.buffer < len(m.buffers):
                self.fail(f"metadata entry {i} ({_s(md.name)!r}) refers to buffer {md.buffer}, the model has "
                          f"{len(m.buffers)}")
        for j, sd in enumerate(m.signatureDefs or []):
            if not 0 <= sd.subgraphIndex < len(m.subgraphs):
                self.fail(f"signature {j} refers to subgraph {sd.subgraphIndex}, the model has {len(m.subgraphs)}")
            n_t = len(m.subgraphs[sd.subgraphIndex].tensors or [])
            for tmap in list(sd.inputs or []) + list(sd.outputs or []):
                if not 0 <= tmap.tensorIndex < n_t:
                    self.fail(f"signature {j} names tensor {tmap.tensorIndex}, its subgraph has {n_t}")
        for g in range(len(m.subgraphs)):
            self.subgraph(g)

    # --------------------------------------------------------------------------------------------
    def subgraph(self, g: int):
        m = self.m
        sg = m.subgraphs[g]
        sg.tensors = list(sg.tensors or [])
        sg.operators = list(sg.operators or [])
        n_t = len(sg.tensors)
        where = f"subgraph {g}"
        for i, t in enumerate(sg.tensors):
            self.tensor(g, i, t)
        ins, outs = _ints(sg.inputs), _ints(sg.outputs)
        if g == 0 and (not ins or not outs):
            self.fail(f"{where} has {len(ins)} inputs and {len(outs)} outputs; a model needs at least one of each")
        for kind, lst in (("input", ins), ("output", outs)):
            for t in lst:
                if not 0 <= t < n_t:
                    self.fail(f"{where}'s {kind} refers to tensor {t}, the subgraph has {n_t} tensors")
        written = set(ins)
        const = {i for i, t in enumerate(sg.tensors) if self.is_const(t)}
        for t in ins:
            if t in const:
                self.fail(f"{where}'s input tensor {t} has constant data")
        for k, op in enumerate(sg.operators):
            w = f"{where}, operator {k}"
            if not 0 <= op.opcodeIndex < self.n_codes:
                self.fail(f"{w} refers to operator code {op.opcodeIndex}, the model has {self.n_codes}")
            op_ins, op_outs = _ints(op.inputs), _ints(op.outputs)
            for t in op_ins + _ints(op.intermediates):
                if not -1 <= t < n_t:
                    self.fail(f"{w} reads tensor {t}, the subgraph has {n_t} tensors")
            if not op_outs:
                self.fail(f"{w} ({tm.op_name(m, op)}) has no output")
            for t in op_outs:
                if not 0 <= t < n_t:
                    self.fail(f"{w} writes tensor {t}, the subgraph has {n_t} tensors")
            for t in op_ins:
                if t >= 0 and t not in written and t not in const and not sg.tensors[t].isVariable:
                    self.fail(f"{w} ({tm.op_name(m, op)}) reads tensor {t} ({_s(sg.tensors[t].name)!r}) before any "
                              "operator writes it (operators must be in execution order)")
            for t in op_outs:
                if t in const:
                    self.fail(f"{w} ({tm.op_name(m, op)}) writes tensor {t} ({_s(sg.tensors[t].name)!r}), which "
                              "has constant data")
                if t in written and not sg.tensors[t].isVariable:
                    self.fail(f"{w} ({tm.op_name(m, op)}) writes tensor {t}, which is already written "
                              "(a subgraph input or an earlier operator's output)")
                written.add(t)
            if op.largeCustomOptionsOffset or op.largeCustomOptionsSize:
                self.fail(f"{w} keeps its custom options outside the flatbuffer, which is not supported")
            for attr in ("thenSubgraphIndex", "elseSubgraphIndex", "condSubgraphIndex", "bodySubgraphIndex",
                         "initSubgraphIndex", "subgraph", "decompositionSubgraphIndex"):
                for opts in (op.builtinOptions, op.builtinOptions2):
                    v = getattr(opts, attr, None) if opts is not None else None
                    if isinstance(v, int) and not 0 <= v < len(m.subgraphs):
                        self.fail(f"{w} ({tm.op_name(m, op)}) refers to subgraph {v}, the model has "
                                  f"{len(m.subgraphs)}")
        for t in outs:
            if t not in written and t not in const:
                self.fail(f"{where}'s output tensor {t} ({_s(sg.tensors[t].name)!r}) is never written")
        for k, op in enumerate(sg.operators):
            name = tm.op_name(m, op)
            if name == tm.TREC_CUSTOM_CODE:
                check_trec_op(m, op, g, f"{self.what}: {where}, operator {k} (TREC_CONV_2D)")
            elif name == "CONV_2D":
                check_conv_op(m, op, g, f"{self.what}: {where}, operator {k} (CONV_2D)")

    def is_const(self, t) -> bool:
        d = self.m.buffers[t.buffer].data
        return d is not None and len(d) > 0

    # --------------------------------------------------------------------------------------------
    def tensor(self, g: int, i: int, t):
        m = self.m
        w = f"subgraph {g}, tensor {i} ({_s(t.name)!r})"
        if not 0 <= t.buffer < len(m.buffers):
            self.fail(f"{w} refers to buffer {t.buffer}, the model has {len(m.buffers)}")
        if t.sparsity is not None:
            self.fail(f"{w} is sparse, which TFLM and this tool do not support")
        if getattr(t, "externalBuffer", 0):
            self.fail(f"{w} uses an external buffer, which is not supported")
        if t.type not in tm._DTYPES:
            self.fail(f"{w} has type {tm.tensor_type_name(t.type)}, which this tool does not support")
        dtype = np.dtype(tm._DTYPES[t.type])
        shape = _ints(t.shape)
        if len(shape) > MAX_RANK:
            self.fail(f"{w} has rank {len(shape)}; TFLite kernels support up to {MAX_RANK}")
        if any(d < 0 for d in shape):
            self.fail(f"{w} has shape {shape}: dimensions must be >= 0 (TFLM needs static shapes)")
        n = math.prod(shape) if shape else 1
        if n * dtype.itemsize > INT32_MAX:
            self.fail(f"{w} has shape {shape} of {dtype.name}: {n * dtype.itemsize} bytes, beyond the 2^31 "
                      "bytes TFLM can address")
        data = m.buffers[t.buffer].data
        if data is not None and len(data) and len(data) != n * dtype.itemsize:
            self.fail(f"{w}: its buffer {t.buffer} holds {len(data)} bytes, shape {shape} of {dtype.name} needs "
                      f"{n * dtype.itemsize}")
        q = t.quantization
        if q is None:
            return
        scale = np.asarray(q.scale if q.scale is not None and not isinstance(q.scale, int) else [], np.float32)
        zp = _ints(q.zeroPoint)
        if q.details is not None and q.detailsType:
            self.fail(f"{w} uses custom quantization details, which TFLM does not support")
        if scale.size == 0:
            if zp:
                self.fail(f"{w} has {len(zp)} zero points and no scale")
            return
        if len(zp) not in (0, scale.size):
            self.fail(f"{w} has {scale.size} scales and {len(zp)} zero points; they must match")
        if not np.all(np.isfinite(scale)):
            self.fail(f"{w} has a scale that is not finite ({_first_bad(scale, ~np.isfinite(scale))})")
        if np.any(scale < 0):
            self.fail(f"{w} has a negative scale ({_first_bad(scale, scale < 0)})")
        if scale.size > 1:
            qd = int(q.quantizedDimension)
            if not 0 <= qd < len(shape):
                self.fail(f"{w} has {scale.size} per-channel scales along dimension {qd}, its shape {shape} has "
                          f"{len(shape)} dimensions")
            if shape[qd] != scale.size:
                self.fail(f"{w} has {scale.size} per-channel scales, dimension {qd} of its shape {shape} has "
                          f"{shape[qd]} entries")
        lo, hi = _INT_RANGES.get(dtype, (-(2**31), INT32_MAX))
        for z in zp:
            if not lo <= z <= hi:
                self.fail(f"{w} has zero point {z}, outside the {dtype.name} range [{lo}, {hi}]")


def _first_bad(a: np.ndarray, mask: np.ndarray) -> str:
    j = int(np.flatnonzero(mask)[0])
    return f"entry {j} is {float(a[j])!r}"


def _enum_names(enum_cls) -> dict:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


# ------------------------------------------------------------------------------------------------
# 3. conv operators (docs/OP_SPEC.md)
# ------------------------------------------------------------------------------------------------
def conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str, where: str, axis: str):
    """(output size, padding before) as TFLite's ComputePaddingHeightWidth, refusing any step
    that would overflow int32 arithmetic."""
    eff = (kernel - 1) * dilation + 1
    if eff > INT32_MAX:
        raise ModelValidationError(f"{where}: the dilated filter {axis} ({kernel} taps, dilation {dilation}) spans "
                                   f"{eff} pixels, beyond int32 (the padding computation would overflow)")
    if padding == "SAME":
        if size + stride - 1 > INT32_MAX:
            raise ModelValidationError(f"{where}: stride_{axis[0]} = {stride} overflows int32 with input size {size}")
        out = (size + stride - 1) // stride
    else:
        out = (size - eff + stride) // stride if size >= eff else 0
    total = (out - 1) * stride + eff - size if out > 0 else 0
    if total > INT32_MAX:
        raise ModelValidationError(f"{where}: the padding of the {axis} axis ({total}) overflows int32")
    return out, max(total, 0) // 2


def _tensor(m, g, idx):
    return m.subgraphs[g].tensors[idx]


def _quant(t):
    q = t.quantization
    if q is None or q.scale is None or isinstance(q.scale, int) or len(q.scale) == 0:
        return None, None
    scale = np.asarray(q.scale, np.float32)
    zp = np.asarray(_ints(q.zeroPoint) or [0] * scale.size, np.int64)
    return scale, zp


def _check_conv_common(m, op, g: int, where: str, *, trec: bool, padding: str, stride, dilation, activation):
    """Tensors and quantization shared by TREC_CONV_2D and int8 CONV_2D; returns (in, filter, out) shapes."""
    ins, outs = _ints(op.inputs), _ints(op.outputs)
    if len(outs) != 1:
        raise ModelValidationError(f"{where}: expected 1 output, got {len(outs)}")

    def fail(msg):
        raise ModelValidationError(f"{where}: {msg}")

    if ins[0] < 0 or ins[1] < 0:
        fail("the input and the filter are required (index -1 given)")
    t_in, t_w, t_out = _tensor(m, g, ins[0]), _tensor(m, g, ins[1]), _tensor(m, g, outs[0])
    int8 = tm.schema().TensorType.INT8
    if not trec and (t_in.type != int8 or t_w.type != int8):
        return None  # float or int16 CONV_2D: TFLM's own kernel checks it
    for t, what in ((t_in, "input"), (t_w, "filter"), (t_out, "output")):
        if t.type != int8:
            fail(f"the {what} must be int8, got {tm.tensor_type_name(t.type)}")
    in_shape, w_shape, out_shape = _ints(t_in.shape), _ints(t_w.shape), _ints(t_out.shape)
    if len(in_shape) != 4 or in_shape[0] != 1 or min(in_shape) < 1:
        fail(f"the input must be [1, H, W, Cin] with H, W, Cin >= 1 (batch 1), got {in_shape}")
    if len(w_shape) != 4 or min(w_shape) < 1:
        fail(f"the filter must be [Cout, kh, kw, Cin] with every dimension >= 1, got {w_shape}")
    cout, kh, kw, cin = w_shape
    if cin != in_shape[3]:
        fail(f"the filter has {cin} input channels, the input {in_shape[3]}")
    if m.buffers[t_w.buffer].data is None or len(m.buffers[t_w.buffer].data) == 0:
        fail("the filter must be a constant tensor (its buffer holds no data)")
    bias_idx = ins[2] if len(ins) > 2 else -1
    if bias_idx >= 0:
        t_b = _tensor(m, g, bias_idx)
        b_shape = _ints(t_b.shape)
        if t_b.type != tm.schema().TensorType.INT32 or b_shape != [cout]:
            fail(f"the bias must be int32 [{cout}], got {tm.tensor_type_name(t_b.type)} {b_shape}")
        if m.buffers[t_b.buffer].data is None or len(m.buffers[t_b.buffer].data) == 0:
            fail("the bias must be a constant tensor (its buffer holds no data)")
        _, b_zp = _quant(t_b)
        if b_zp is not None and np.any(b_zp != 0):
            fail("the bias zero point must be 0")
    s_in, zp_in = _quant(t_in)
    s_w, zp_w = _quant(t_w)
    s_out, zp_out = _quant(t_out)
    if s_in is None or s_w is None or s_out is None:
        fail("the input, filter and output must be quantized")
    for s, zp, what in ((s_in, zp_in, "input"), (s_out, zp_out, "output")):
        if s.size != 1:
            fail(f"the {what} needs one (per-tensor) scale, got {s.size}")
        if not (np.isfinite(s[0]) and s[0] > 0):
            fail(f"the {what} scale must be finite and > 0, got {float(s[0])!r}")
        if not -128 <= int(zp[0]) <= 127:
            fail(f"the {what} zero point {int(zp[0])} is outside [-128, 127]")
    per_channel_ok = s_w.size == cout and (cout == 1 or t_w.quantization.quantizedDimension == 0)
    if not (per_channel_ok or (not trec and s_w.size == 1)):
        fail(f"the filter needs one scale per output channel along dimension 0: {cout} channels, got "
             f"{s_w.size} scale(s) along dimension {t_w.quantization.quantizedDimension}")
    bad = ~(np.isfinite(s_w) & (s_w > 0))
    if np.any(bad):
        fail(f"filter scales must be finite and > 0: {_first_bad(s_w, bad)}")
    if np.any(zp_w != 0):
        fail("the filter must be symmetric (every zero point 0)")
    eff = np.float64(s_in[0]) * s_w.astype(np.float64) / np.float64(s_out[0])
    if np.any(eff >= 2.0**30):
        fail(f"the requantization scale s_x * s_w / s_y = {float(eff.max()):.3g} is too large for int32 "
             "requantization (the shift would exceed 30)")
    out_h, _ = conv_output_size(in_shape[1], kh, stride[0], dilation[0], padding, where, "height")
    out_w, _ = conv_output_size(in_shape[2], kw, stride[1], dilation[1], padding, where, "width")
    if out_h < 1 or out_w < 1:
        fail(f"the {kh}x{kw} filter with dilation {dilation[0]}x{dilation[1]} does not fit the "
             f"{in_shape[1]}x{in_shape[2]} input ({padding} padding)")
    if out_shape != [1, out_h, out_w, cout]:
        fail(f"the output is {out_shape}, the options give [1, {out_h}, {out_w}, {cout}]")
    tm.activation_range_tflm(activation, float(s_out[0]), int(zp_out[0]))
    return in_shape, w_shape, out_shape


def check_trec_op(m, op, g: int = 0, where: str = tm.TREC_CUSTOM_CODE) -> dict:
    """Every rule docs/OP_SPEC.md states for one TREC_CONV_2D; returns its decoded options."""
    opts = tm.decode_trec_options(tm.custom_options_bytes(op), where)
    ins = _ints(op.inputs)
    if len(ins) != 4:
        raise ModelValidationError(f"{where}: expected 4 inputs (input, filter, bias or -1, hash), got {len(ins)}")
    if ins[3] < 0:
        raise ModelValidationError(f"{where}: input 3 (hash) is required")
    _, w_shape, _ = _check_conv_common(m, op, g, where, trec=True, padding=opts["padding"],
                                       stride=(opts["stride_h"], opts["stride_w"]),
                                       dilation=(opts["dilation_h"], opts["dilation_w"]),
                                       activation=opts["activation"])
    t_h = _tensor(m, g, ins[3])
    length, bits = opts["sub_vector_length"], opts["hash_bits"]
    h_shape = _ints(t_h.shape)
    if t_h.type != tm.schema().TensorType.INT8 or h_shape != [length, bits]:
        raise ModelValidationError(f"{where}: the hash must be int8 [L={length}, H={bits}], got "
                                   f"{tm.tensor_type_name(t_h.type)} {h_shape}")
    if m.buffers[t_h.buffer].data is None or len(m.buffers[t_h.buffer].data) == 0:
        raise ModelValidationError(f"{where}: the hash must be a constant tensor (its buffer holds no data)")
    _, h_zp = _quant(t_h)
    if h_zp is not None and np.any(h_zp != 0):
        raise ModelValidationError(f"{where}: the hash must be symmetric (zero point 0)")
    k = w_shape[1] * w_shape[2] * w_shape[3]
    if length > k:
        raise ModelValidationError(f"{where}: sub_vector_length L={length} exceeds K = kh*kw*Cin = {k}")
    return opts


def check_conv_op(m, op, g: int = 0, where: str = "CONV_2D") -> None:
    """An int8 CONV_2D's tensors and geometry (the golden route computes it in Python)."""
    o = op.builtinOptions
    s = tm.schema()
    if o is None or not hasattr(o, "strideH"):
        raise ModelValidationError(f"{where}: the operator has no Conv2DOptions")
    ins = _ints(op.inputs)
    if len(ins) not in (2, 3):
        raise ModelValidationError(f"{where}: expected 2 or 3 inputs, got {len(ins)}")
    for key in ("strideH", "strideW", "dilationHFactor", "dilationWFactor"):
        if getattr(o, key) < 1:
            raise ModelValidationError(f"{where}: option {key} = {getattr(o, key)} must be >= 1")
    if o.padding not in (s.Padding.SAME, s.Padding.VALID):
        raise ModelValidationError(f"{where}: padding {o.padding} is neither SAME nor VALID")
    names = _enum_names(s.ActivationFunctionType)
    if names.get(o.fusedActivationFunction) not in tm.ACTIVATIONS:
        raise ModelValidationError(f"{where}: fused activation {o.fusedActivationFunction} is not supported")
    _check_conv_common(m, op, g, where, trec=False, padding="SAME" if o.padding == s.Padding.SAME else "VALID",
                       stride=(o.strideH, o.strideW), dilation=(o.dilationHFactor, o.dilationWFactor),
                       activation=names[o.fusedActivationFunction])


# ------------------------------------------------------------------------------------------------
# the entry point
# ------------------------------------------------------------------------------------------------
def validate_model(model: Union[bytes, bytearray, memoryview, tm.PathLike], what: str | None = None):
    """Verify and check a model (bytes or a path); returns its ``ModelT``. Raises
    :class:`ModelValidationError` (a ``ValueError``) naming the first problem found."""
    if what is None:
        what = str(model) if not isinstance(model, (bytes, bytearray, memoryview)) else "the model"
    buf = tm.read_bytes(model)
    m = verified_parse(buf, what)
    try:
        _Checker(m, buf, what).model()
    except ModelValidationError:
        raise
    except tm.TfliteModelError as exc:
        raise ModelValidationError(str(exc) if str(exc).startswith(what) else f"{what}: {exc}") from None
    return m


def load_valid(model, what: str | None = None) -> tuple[bytes, object]:
    """``(bytes, ModelT)`` of a model that passed :func:`validate_model`."""
    buf = tm.read_bytes(model)
    if what is None and not isinstance(model, (bytes, bytearray, memoryview)):
        what = str(model)
    return buf, validate_model(buf, what)

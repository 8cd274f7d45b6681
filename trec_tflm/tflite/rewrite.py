"""Steps 4 of the converter (docs/CONVERTER.md): find the CONV_2D operator every TREC layer became, and
rewrite it in place into ``TREC_CONV_2D``.

- :func:`match_trec_layers`: geometry plus the filter's content (which survives BatchNorm folding); names
  only break ties;
- :func:`rewrite_op`: custom operator code (:func:`trec_custom_opcode`), flexbuffer options, the int8
  hash tensor [L, H] (:func:`quantize_hash`) as input 3;
- :func:`set_scratch_budgets` / :func:`with_scratch_budgets`: the optional per-op ``scratch_budget``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import numpy as np

from trec_tflm.errors import TrecTflmError
from trec_tflm.host import kernels as native
from trec_tflm.spec import model as tm
from trec_tflm.spec.golden import conv_geometry

#: A CONV_2D's dequantized filter must equal a layer's kernel times a per-channel factor (BN folding)
#: up to this relative residual energy. int8 rounding leaves < K/(4*127^2) (< 1.3% for K = 800 even
#: in the worst case); unrelated kernels leave ~(K-1)/K.
MATCH_TOLERANCE = 0.05


class ConvertError(TrecTflmError, ValueError):
    """The model cannot be converted; the message says why and what to change."""


def pair(v) -> tuple[int, int]:
    """A Keras stride/dilation argument as (h, w)."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    return tuple(int(a) for a in v)  # type: ignore[return-value]


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
    sg = m.subgraphs[0]
    opts = op.builtinOptions
    kernel = layer.kernel
    kh, kw, cin, cout = (int(v) for v in kernel.shape)
    w_shape = tuple(int(v) for v in sg.tensors[op.inputs[1]].shape)
    if w_shape != (cout, kh, kw, cin):
        return False
    if (opts.strideH, opts.strideW) != pair(layer.strides):
        return False
    if (opts.dilationHFactor, opts.dilationWFactor) != pair(layer.dilation_rate):
        return False
    in_shape = [int(v) for v in sg.tensors[op.inputs[0]].shape]
    if len(in_shape) != 4:
        return False
    op_pad = "SAME" if opts.padding == tm.schema().Padding.SAME else "VALID"
    try:
        a = conv_geometry(in_shape[1:3], (kh, kw), pair(layer.strides), pair(layer.dilation_rate), op_pad)
        b = conv_geometry(in_shape[1:3], (kh, kw), pair(layer.strides), pair(layer.dilation_rate),
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
    # lazy: training/ loads Keras and TensorFlow (`trec-tflm convert --help` must not)
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


def trec_custom_opcode(m) -> int:
    """Index of the TREC_CONV_2D operator code, appended when the model has none."""
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


def rewrite_op(m, match: Match, opcode: int) -> dict:
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


# ------------------------------------------------------------------------------------------------
# the per-op scratch budget (docs/OP_SPEC.md "Options")
# ------------------------------------------------------------------------------------------------
def min_scratch(m, op, opts: dict) -> int | None:
    """trec_convolve_s8_get_min_buffer_size of one TREC_CONV_2D through the host C library, or None
    when it cannot be built here (the TFLM op's Prepare checks the budget on the device anyway)."""
    sg = m.subgraphs[0]
    try:
        _, least = native.kernels().trec_buffer_sizes(
            tuple(int(v) for v in sg.tensors[op.inputs[0]].shape),
            tuple(int(v) for v in sg.tensors[op.inputs[1]].shape),
            sub_vector_length=opts["sub_vector_length"], hash_bits=opts["hash_bits"],
            hash_center=opts["hash_center"], stride=(opts["stride_h"], opts["stride_w"]),
            dilation=(opts["dilation_h"], opts["dilation_w"]), padding=opts["padding"])
    except Exception:  # noqa: BLE001 - no compiler or no library: Prepare is the check
        return None
    return int(least)


def set_scratch_budgets(m, budgets: dict) -> None:
    """Write the ``scratch_budget`` option of TREC_CONV_2D operators in place. ``budgets`` maps a TREC
    layer name (the ``trec_layers`` of the model's metadata) or an operator index to bytes, or to
    None to remove the option. A budget below the layer's minimum scratch is refused here when the
    host C library can say the minimum (else by the TFLM op's Prepare)."""
    if not budgets:
        return
    sg = m.subgraphs[0]
    trec = [i for i, op in enumerate(sg.operators) if tm.is_trec(m, op)]
    names = {e.get("name"): e.get("operator_index") for e in (tm.read_metadata(m) or {}).get("trec_layers") or []}
    known = ", ".join(f"{n!r} (op {i})" for n, i in names.items()) or ", ".join(f"op {i}" for i in trec) or "none"
    for key, budget in budgets.items():
        idx = names.get(key) if isinstance(key, str) else key
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or idx not in trec:
            raise ConvertError(f"scratch budget for {key!r}: the model has no TREC_CONV_2D layer of that name or "
                               f"operator index; its TREC layers: {known}")
        where = f"scratch budget of {key!r} (operator {idx})"
        op = sg.operators[idx]
        opts = tm.decode_trec_options(tm.custom_options_bytes(op), where)
        opts.pop("scratch_budget", None)
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
                raise ConvertError(f"{where}: {budget!r} is not a number of bytes >= 1")
            least = min_scratch(m, op, opts)
            if least is not None and budget < least:
                raise ConvertError(f"{where}: {int(budget):,} bytes is below the layer's minimum scratch of "
                                   f"{least:,} bytes (trec_convolve_s8_get_min_buffer_size); give at least that")
            opts["scratch_budget"] = int(budget)
        op.customOptions = np.frombuffer(tm.encode_trec_options(opts), np.uint8).copy()


def with_scratch_budgets(model, budgets: dict) -> bytes:
    """A copy of a .tflite (bytes or path) with :func:`set_scratch_budgets` applied."""
    m = tm.load_model(model)
    set_scratch_budgets(m, budgets)
    return tm.save_model(m)

"""``to_trec``: any functional or sequential Keras model with its convolutions made TREC.

The chosen ``Conv2D`` layers become ``TRECConv2D`` with the same configuration (activation,
bias, initializers, regularizers, constraints, name, dtype policy) and the same kernel and bias;
their hash matrices start from their initialiser. ``models.dense_twin`` is the inverse.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from trec_tflm.spec.golden import strip_width
from trec_tflm.spec.op import MAX_HASH_BITS
from trec_tflm.training.cloning import check_model, clone_replacing, graph_layers
from trec_tflm.training.layers import TRECConv2D
from trec_tflm.training.models import conv_layers, dense_twin

#: H when none is given: the zoo's most accurate setting, and the largest whose cluster ids fit one
#: byte (the int8 kernel's unrolled loops, tflm_ops trec_convolve_plan_s8.c id_size).
DEFAULT_HASH_BITS = 8
#: Longest default strip: the zoo's hand-chosen L are the longest strip j*Cin <= 32 of each layer
#: (5, 15, 21, 9 on 1- and 3-channel inputs; Cin itself from 16 channels up).
DEFAULT_MAX_STRIP = 32
#: TRECConv2D arguments to_trec passes through (Conv2D's own come from the layer).
TREC_ARGS = ("hash_center", "hash_initializer", "hash_regularizer", "hash_constraint", "hash_trainable")
#: activations TREC_CONV_2D fuses (convert.py); others cannot be converted
_FUSABLE = ("linear", "relu", "relu6")


def default_sub_vector_length(kernel_width: int, in_channels: int) -> int:
    """L = j*Cin, the longest strip with j dividing the kernel width and L <= DEFAULT_MAX_STRIP
    (j = 1 when even one pixel is longer): always on the int8 kernel's strip path."""
    fits = [j for j in range(1, kernel_width + 1)
            if kernel_width % j == 0 and j * in_channels <= DEFAULT_MAX_STRIP]
    return max(fits, default=1) * in_channels


def strip_lengths(kernel_width: int, in_channels: int) -> list[int]:
    """Every L that takes the strip path for this kernel width and channel count."""
    return [j * in_channels for j in range(1, kernel_width + 1) if kernel_width % j == 0]


def _input_shapes(layer) -> list[tuple]:
    shapes = []
    for node in getattr(layer, "_inbound_nodes", []):
        for tensor in node.input_tensors[:1]:
            shapes.append(tuple(tensor.shape))
    return shapes


def why_not(layer, swappable: set) -> str | None:
    """Why TREC cannot take this convolution (None: it can)."""
    if type(layer) not in (keras.layers.Conv2D, TRECConv2D):
        return (f"it is a {type(layer).__name__}, a subclass of Conv2D whose own behaviour a TRECConv2D would drop; "
                "use TRECConv2D in its code instead")
    if id(layer) not in swappable:
        return ("it sits inside a custom layer, which is copied whole; write TRECConv2D into that layer's code, "
                "or build the model with the functional API")
    if not layer.built:
        return "it is not built (the model never ran it); build the model on its input shape first"
    if layer.groups != 1:
        return f"groups={layer.groups}: TREC_CONV_2D has no grouped form"
    if layer.data_format != "channels_last":
        return f"data_format={layer.data_format!r}: TREC works on NHWC tensors (data_format='channels_last')"
    if getattr(layer, "lora_enabled", False):
        return "it has LoRA enabled; merge the LoRA weights into the kernel first"
    if getattr(layer, "quantization_mode", None):
        return f"it is quantized ({layer.quantization_mode}); give to_trec the float model"
    act = getattr(layer.activation, "__name__", str(layer.activation))
    if act not in _FUSABLE:
        return (f"activation {act!r} cannot be fused into TREC_CONV_2D; use None, 'relu' or 'relu6' and a separate "
                "activation layer")
    for shape in _input_shapes(layer):
        if len(shape) != 4 or shape[1] is None or shape[2] is None:
            return f"its input shape {shape} has unknown height or width; TREC needs static spatial dimensions"
    return None


def _resolve_layers(model, layers, convs, reasons) -> list:
    names = [c.name for c in convs]
    if layers is None:
        chosen = [c for c in convs if reasons[id(c)] is None]
        if not chosen:
            raise ValueError(f"to_trec: none of the convolutions of {model.name!r} can become TREC: "
                             + "; ".join(f"{c.name!r}: {reasons[id(c)]}" for c in convs))
        return chosen
    if isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    chosen = []
    for key in layers:
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
            raise TypeError(f"to_trec: layers must be names or indices of the model's convolutions, got {key!r}")
        if isinstance(key, str):
            matches = [c for c in convs if c.name == key]
            if not matches:
                raise ValueError(f"to_trec: {model.name!r} has no convolution named {key!r}; its Conv2D layers are "
                                 f"{names}")
            layer = matches[0]
        else:
            if not -len(convs) <= key < len(convs):
                raise ValueError(f"to_trec: convolution index {key} out of range; {model.name!r} has {len(convs)} "
                                 f"(indices 0..{len(convs) - 1}: {names})")
            layer = convs[key]
        if reasons[id(layer)] is not None:
            raise ValueError(f"to_trec: layer {layer.name!r} cannot become TREC: {reasons[id(layer)]}")
        if layer not in chosen:
            chosen.append(layer)
    return chosen


def _per_layer(value, option, chosen, default):
    """{layer name: value} from None / an int / a dict (missing names take ``default(layer)``)."""
    names = {layer.name for layer in chosen}
    if value is None:
        return {layer.name: default(layer) for layer in chosen}
    if isinstance(value, dict):
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"to_trec: {option} names {unknown}, which are not among the layers made TREC "
                             f"{sorted(names)}")
        return {layer.name: default(layer) if value.get(layer.name) is None else value[layer.name]
                for layer in chosen}
    return {layer.name: value for layer in chosen}


def _check_int(value, option, name, low, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        rule = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"to_trec: layer {name!r}: {option} must be an integer {rule}, got {value!r}")
    return int(value)


def plan(model, layers=None, sub_vector_length=None, hash_bits=None, **trec_args) -> dict:
    """What ``to_trec`` would do, validated: {id(layer): (layer, TRECConv2D config overrides)}."""
    check_model(model, "to_trec")
    unknown = sorted(set(trec_args) - set(TREC_ARGS))
    if unknown:
        raise TypeError(f"to_trec: unknown argument(s) {unknown}; TREC arguments are {list(TREC_ARGS)} "
                        "(Conv2D's own come from the layer)")
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"to_trec: {model.name!r} has no Conv2D layer; nothing to make TREC")
    swappable = {id(layer) for layer in graph_layers(model)}
    reasons = {id(c): why_not(c, swappable) for c in convs}
    chosen = _resolve_layers(model, layers, convs, reasons)

    def own(attr, fallback):
        return lambda layer: getattr(layer, attr) if isinstance(layer, TRECConv2D) else fallback(layer)

    lengths = _per_layer(sub_vector_length, "sub_vector_length", chosen,
                         own("sub_vector_length", lambda c: default_sub_vector_length(c.kernel_size[1],
                                                                                      int(c.kernel.shape[2]))))
    bits = _per_layer(hash_bits, "hash_bits", chosen, own("hash_bits", lambda c: DEFAULT_HASH_BITS))
    out = {}
    for layer in chosen:
        kh, kw = layer.kernel_size
        cin = int(layer.kernel.shape[2])
        k = kh * kw * cin
        length = _check_int(lengths[layer.name], "sub_vector_length", layer.name, 1)
        if length > k:
            raise ValueError(f"to_trec: layer {layer.name!r}: sub_vector_length L={length} does not fit K={k} "
                             f"(kernel {kh}x{kw} x {cin} input channels); choose L <= {k}, e.g. a strip length "
                             f"{strip_lengths(kw, cin)}, or leave it None for the default")
        if not strip_width(length, cin, kw):
            warnings.warn(f"to_trec: layer {layer.name!r}: L={length} is not a strip length (j*Cin with j dividing "
                          f"the kernel width {kw}): the int8 kernel's general path can be slower than dense; strip "
                          f"lengths are {strip_lengths(kw, cin)}", stacklevel=3)
        out[layer.name] = {"sub_vector_length": length,
                           "hash_bits": _check_int(bits[layer.name], "hash_bits", layer.name, 1, MAX_HASH_BITS),
                           **trec_args}
    return {id(layer): (layer, out[layer.name]) for layer in chosen}


def rebuild(model, trec: dict, dense: set = frozenset()):
    """Copy ``model`` with the layers of ``trec`` ({id: (layer, TREC overrides)}) as TRECConv2D and
    the TRECConv2D layers whose id is in ``dense`` as Conv2D; all weights carried over."""

    def replace(layer):
        if id(layer) in trec:
            config = layer.get_config()
            overrides = trec[id(layer)][1]
            if isinstance(layer, TRECConv2D) and all(config.get(k) == v for k, v in overrides.items()):
                return None  # unchanged: copied with its hash matrix
            return TRECConv2D.from_config({**config, **overrides})
        if id(layer) in dense and isinstance(layer, TRECConv2D):
            config = layer.get_config()
            for key in ("sub_vector_length", "hash_bits", *TREC_ARGS):
                config.pop(key)
            return keras.layers.Conv2D.from_config(config)
        return None

    return clone_replacing(model, replace, "to_trec")


def to_trec(model, layers=None, sub_vector_length=None, hash_bits=None, **trec_args):
    """A copy of ``model`` (functional or sequential, nested models included) where the chosen
    ``Conv2D`` layers are ``TRECConv2D`` with the same configuration, kernel and bias.

    Args:
        model: a built Keras 3 functional or sequential model (not changed).
        layers: names or indices (in ``trec_tflm.training.models.conv_layers`` order) of the convolutions
            to make TREC; None: every one TREC can take (groups 1, channels_last, an activation
            TREC_CONV_2D fuses, static height and width). Naming one it cannot take is an error.
        sub_vector_length: L, an int for all or {layer name: L}; None (or a layer missing from the
            dict): the longest strip L = j*Cin <= 32 with j dividing the kernel width, which the
            int8 kernel runs on its fast strip path. A layer that is TREC already keeps its own.
        hash_bits: H, an int or {layer name: H}; None: 8 (a TREC layer keeps its own).
        **trec_args: hash_center, hash_initializer, hash_regularizer, hash_constraint,
            hash_trainable, passed to every new TRECConv2D.

    A layer shared by several calls stays one (TREC) layer. The hash matrices start from their
    initialiser: fine-tune the result (docs/TRAINING.md).
    """
    return rebuild(model, plan(model, layers, sub_vector_length, hash_bits, **trec_args))


def _per_conv(values, option, names):
    """A command line's list of L or H: one value for all, or one per TREC conv (in order)."""
    if not values:
        return None
    if len(values) == 1:
        return int(values[0])
    if len(values) != len(names):
        raise ValueError(f"{option}: got {len(values)} values for the {len(names)} TREC convolutions {names}; "
                         "give one value per TREC conv or a single value")
    return {name: int(v) for name, v in zip(names, values)}


def select(model, trec=None, sub_vector_length=None, hash_bits=None, **trec_args):
    """``trec-tflm train --model FILE.keras``'s ``--trec/--L/--H`` on a loaded model.

    ``trec``: indices (``conv_layers`` order) of the convolutions that are TREC, the others
    dense; ``[]``: the dense twin; None: the model's own TREC layers if it has any, else every
    convolution TREC can take. ``sub_vector_length`` / ``hash_bits``: lists with one value for
    all or one per TREC conv (None: a TREC layer keeps its own, a new one takes to_trec's default).
    """
    current = [c for c in conv_layers(model) if isinstance(c, TRECConv2D)]
    if trec is not None and len(trec) == 0:
        return dense_twin(model) if current else model
    layers = list(trec) if trec is not None else ([c.name for c in current] if current else None)
    names = [layer.name for layer, _ in plan(model, layers).values()]
    chosen = plan(model, layers, _per_conv(sub_vector_length, "--L", names), _per_conv(hash_bits, "--H", names),
                  **trec_args)
    return rebuild(model, chosen, {id(c) for c in current if id(c) not in chosen})

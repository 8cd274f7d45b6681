"""Copy a functional or sequential Keras model with some layers swapped, weights carried over.

The one place that walks a model for ``to_trec`` and ``models.dense_twin``: nested functional and
sequential models are copied level by level (their layers can be swapped too), a layer called
several times (shared) stays one layer in the copy.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


def _is_graph_model(layer) -> bool:
    # Functional (and functional-like subclasses) run a layer graph; subclassed models do not
    return isinstance(layer, keras.Sequential) or (isinstance(layer, keras.Model)
                                                   and hasattr(layer, "_run_through_graph"))


def check_model(model, what: str) -> None:
    """ValueError/TypeError unless ``model`` is a built functional or sequential Keras model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} takes a Keras 3 model (keras.Model), got {type(model).__name__}; "
                        "load a .keras file with keras.models.load_model first")
    if not _is_graph_model(model):
        raise ValueError(f"{what}: {model.name!r} is a subclassed model ({type(model).__name__}); only functional "
                         "and sequential models can be copied layer by layer. Write TRECConv2D into its code "
                         "instead, or build it with the functional API")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(f"{what}: model {model.name!r} is not built (its input shape is unknown); give it an "
                         "input, e.g. keras.Input(shape) as the first layer, or call model.build(input_shape)")


def graph_layers(model) -> list:
    """The layers a copy can swap: those of the model and of the functional/sequential models
    nested in it, not those inside other layers (custom layers are copied whole)."""
    found = []
    for layer in model.layers:
        if _is_graph_model(layer):
            found.extend(graph_layers(layer))
        else:
            found.append(layer)
    return found


def _copy_weights(src, dst) -> None:
    if type(src) is type(dst) and [tuple(v.shape) for v in src.weights] == [tuple(v.shape) for v in dst.weights]:
        dst.set_weights(src.get_weights())
        return
    # a swapped or reshaped layer: variables of the same name and shape (kernel, bias, ...) carry
    # over; a hash matrix of the same L and fewer bits keeps its first H learned projections (a
    # tuner's move to a lower H starts from them); the others keep their initialisation
    by_name = {v.name: v for v in src.weights}
    for variable in dst.weights:
        other = by_name.get(variable.name)
        if other is None:
            continue
        if tuple(other.shape) == tuple(variable.shape):
            variable.assign(other)
        elif variable.name == "hash_kernel" and other.shape[0] == variable.shape[0] \
                and other.shape[1] > variable.shape[1]:
            variable.assign(other[:, :variable.shape[1]])


def clone_replacing(model, replace: Callable, what: str = "clone"):
    """A copy of ``model`` where ``replace(layer)`` gives each layer's stand-in (an unbuilt layer),
    or None to copy the layer as it is; weights are copied into the built copy."""
    check_model(model, what)
    pairs = []

    def clone(layer):
        new = replace(layer)
        if new is None:
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for src, dst in pairs:
        if src.built and dst.built:
            _copy_weights(src, dst)
    return copy

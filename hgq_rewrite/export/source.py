"""Accept an HGQ model or a proxy model wherever an export route needs a proxy."""

import keras

from ..compat.keras_private import functional_graph
from ..proxy.fixed_point_layer import FixedPointQuantizer
from ..walker import model_calls


def is_proxy(model):
    """True when ``model`` is a proxy model (it holds FixedPointQuantizer layers and no HGQ layers)."""
    from ..layers.base import HLayerBase
    from ..layers.links import walk_layers

    layers = list(walk_layers(model))
    return any(isinstance(layer, FixedPointQuantizer) for layer in layers) and not any(
        isinstance(layer, HLayerBase) for layer in layers
    )


def as_proxy(model, aggressive=None):
    """Return ``model`` if it is a proxy, else ``hr.to_proxy_model(model, aggressive)`` (the model must be traced)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected an HGQ keras.Model or its proxy model, got {type(model).__name__}.")
    if is_proxy(model):
        return model
    from ..proxy.convert import to_proxy_model

    return to_proxy_model(model, aggressive=aggressive)


def call_order(model):
    """The functional graph of a flat model, and its ``(layer, node)`` pairs in execution order (inputs first)."""
    return functional_graph(model), [(call.layer, call.node) for call in model_calls(model).calls]

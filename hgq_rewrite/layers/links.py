"""Find which layer produces each input of a layer, through nested models.

Layers need the bitwidth map of what feeds them (EBOPs of a multiply depend on
both operands). Keras 3 records every layer call as a node; this module follows
those nodes. A nested model's inner input is linked to the outer producer by
``link_nested_inputs(model)``, which every entry point (callbacks, trace,
quantize) calls. A nested model called several times is linked to its first call.
"""

import weakref

import keras

# inner InputLayer -> (outer producer, output index); kept outside the layer so Keras
# does not track the outer producer as part of the InputLayer's state.
_outer_sources = weakref.WeakKeyDictionary()


def _history(tensor):
    op, node_index, tensor_index = tensor._keras_history
    return op, node_index, tensor_index


def is_model(op):
    return isinstance(op, keras.Model)


def resolve(op, tensor_index=0):
    """The (layer, output index) that really computes output ``tensor_index`` of ``op``.

    Steps out of nested models' inputs (via links) and into nested models' outputs.
    Returns (op, index); ``op`` may be an unlinked ``InputLayer``.
    """
    while True:
        if isinstance(op, keras.layers.InputLayer):
            source = _outer_sources.get(op)
            if source is None:
                return op, tensor_index
            op, tensor_index = source
        elif is_model(op):
            op, _, tensor_index = _history(op.outputs[tensor_index])
        else:
            return op, tensor_index


def input_producers(layer, node_index=0):
    """Resolved producers ``[(op, index), ...]`` of each input of one call of ``layer``."""
    nodes = layer._inbound_nodes
    if not nodes:
        raise RuntimeError(
            f"Layer {layer.name!r} was never called in a model: build the model (functional or Sequential "
            "with a known input shape) before asking for its bitwidths."
        )
    node = nodes[node_index]
    return [resolve(*_history(t)[::2]) for t in node.arguments.keras_tensors]


def input_shapes(layer, node_index=0):
    """Static shapes of the inputs of one call of ``layer``."""
    return [tuple(t.shape) for t in layer._inbound_nodes[node_index].arguments.keras_tensors]


def link_nested_inputs(model):
    """Point every nested model's inner inputs at the outer producers (recursively)."""
    for layer in model.layers:
        if not is_model(layer):
            continue
        inner_inputs = layer.inputs if isinstance(layer.inputs, (list, tuple)) else [layer.inputs]
        if layer._inbound_nodes:
            outer = layer._inbound_nodes[0].arguments.keras_tensors
            for inner, outer_t in zip(inner_inputs, outer):
                inner_op = _history(inner)[0]
                op, _, idx = _history(outer_t)
                _outer_sources[inner_op] = (op, idx)
        link_nested_inputs(layer)


def walk_layers(model):
    """Every non-model layer of ``model``, nested models included, each once."""
    seen = set()
    for layer in model.layers:
        if is_model(layer):
            for inner in walk_layers(layer):
                if id(inner) not in seen:
                    seen.add(id(inner))
                    yield inner
        elif id(layer) not in seen:
            seen.add(id(layer))
            yield layer

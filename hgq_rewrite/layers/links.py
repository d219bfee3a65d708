"""Find which layer produces each input of a layer, through nested models.

Layers need the bitwidth map of what feeds them (EBOPs of a multiply depend on
both operands). Keras 3 records every layer call as a node; this module follows
those nodes. A nested model's inner input is linked to the outer producer by
``link_model(model)``, which every entry point (callbacks, trace,
quantize, proxy) calls; it also records which calls belong to the model graph (read with
`hgq_rewrite.walker`). A nested model called several times is linked to its first call.
"""

import weakref

import keras

from ..compat.keras_private import inbound_nodes, keras_history
from ..walker import model_calls

# inner InputLayer -> (outer producer, output index); kept outside the layer so Keras
# does not track the outer producer as part of the InputLayer's state.
_outer_sources = weakref.WeakKeyDictionary()
# layer -> indices of its calls that belong to the linked model graph
_graph_nodes = weakref.WeakKeyDictionary()


def _history(tensor):
    op, node_index, tensor_index = keras_history(tensor)
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
    nodes = inbound_nodes(layer)
    if not nodes:
        raise RuntimeError(
            f"Layer {layer.name!r} was never called in a model: build the model (functional or Sequential "
            "with a known input shape) before asking for its bitwidths."
        )
    node = nodes[node_index]
    return [resolve(*_history(t)[::2]) for t in node.arguments.keras_tensors]


def input_shapes(layer, node_index=0):
    """Static shapes of the inputs of one call of ``layer``."""
    return [tuple(t.shape) for t in inbound_nodes(layer)[node_index].arguments.keras_tensors]


def graph_node_indices(layer):
    """Indices of ``layer``'s calls that belong to the linked model graph.

    A reloaded Sequential leaves stale calls in ``_inbound_nodes``; only the calls of the
    graph count (for EBOPs and bitwidth maps). Unlinked layers count every call.
    """
    return _graph_nodes.get(layer) or list(range(len(inbound_nodes(layer)))) or [0]


def link_model(model):
    """Record the graph's calls of every layer and point nested models' inner inputs at
    their outer producers (recursively). Every entry point (callbacks, trace, quantize,
    proxy) calls this."""
    level = model_calls(model)
    calls = {}
    for call in level.calls:
        if call.index is not None:
            calls.setdefault(call.layer, []).append(call)
    for op, op_calls in calls.items():
        _graph_nodes[op] = sorted(c.index for c in op_calls)
        if not is_model(op):
            continue
        first = min(op_calls, key=lambda c: c.index)
        inner_inputs = op.inputs if isinstance(op.inputs, (list, tuple)) else [op.inputs]
        for inner, outer in zip(inner_inputs, first.inputs):
            producer, j = level.producer[id(outer)]
            _outer_sources[_history(inner)[0]] = (producer.layer, j)
        link_model(op)


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

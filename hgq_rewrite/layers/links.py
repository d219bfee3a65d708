"""Find which layer produces each input of a layer, through nested models.

Layers need the bitwidth map of what feeds them (EBOPs of a multiply depend on
both operands). Keras 3 records every layer call as a node; this module follows
those nodes. A nested model's inner input is linked to the outer producer by
``link_model(model)``, which every entry point (callbacks, trace,
quantize, proxy) calls; it also records which calls belong to the model graph. A nested model called several times is linked to its first call.
"""

import weakref

import keras

# inner InputLayer -> (outer producer, output index); kept outside the layer so Keras
# does not track the outer producer as part of the InputLayer's state.
_outer_sources = weakref.WeakKeyDictionary()
# layer -> indices of its calls that belong to the linked model graph
_graph_nodes = weakref.WeakKeyDictionary()


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


def _graph(model):
    """The functional graph behind ``model`` (a Sequential keeps one in ``_functional``)."""
    return getattr(model, "_functional", None) or model


def graph_node_indices(layer):
    """Indices of ``layer``'s calls that belong to the linked model graph.

    A reloaded Sequential leaves stale calls in ``_inbound_nodes``; only the calls of the
    graph count (for EBOPs and bitwidth maps). Unlinked layers count every call.
    """
    return _graph_nodes.get(layer) or list(range(len(layer._inbound_nodes))) or [0]


def link_model(model):
    """Record the graph's calls of every layer and point nested models' inner inputs at
    their outer producers (recursively). Every entry point (callbacks, trace, quantize,
    proxy) calls this."""
    graph = _graph(model)
    calls = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            op = node.operation
            if node in op._inbound_nodes:
                calls.setdefault(op, []).append(op._inbound_nodes.index(node))
    for op, indices in calls.items():
        _graph_nodes[op] = sorted(indices)
    for layer in model.layers:
        if not is_model(layer):
            continue
        inner_inputs = layer.inputs if isinstance(layer.inputs, (list, tuple)) else [layer.inputs]
        if layer._inbound_nodes:
            outer = layer._inbound_nodes[graph_node_indices(layer)[0]].arguments.keras_tensors
            for inner, outer_t in zip(inner_inputs, outer):
                inner_op = _history(inner)[0]
                op, _, idx = _history(outer_t)
                _outer_sources[inner_op] = (op, idx)
        link_model(layer)


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

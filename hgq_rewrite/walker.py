"""The one graph walker: the layer calls of one level of a Functional or Sequential model.

`model_calls(model)` lists every call the model's graph makes (an ``InputLayer``, a layer or
op called on tensors, a nested model called like a layer) with producers before consumers,
and who produces and who reads each tensor. Every stage reads the graph through it: the
rewrite (`rewrite.graph`), the bitwidth links (`layers.links`), the proxy rebuild and the
export checks. Only the model's own call records are read and nothing is modified; the result
is cached per graph (a built Functional graph never changes).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import keras

from .compat.keras_private import Functional, calls_in_order, functional_graph, graph_io, inbound_nodes


@dataclass(eq=False)
class Call:
    """One call of an operation in a model graph.

    Attributes:
        layer: the called operation (a layer, an op or a nested model).
        node: the Keras node recording the call.
        index: position of ``node`` among the layer's calls (its inbound nodes), None if absent.
        repeat: 0 for the layer's first call in this graph, 1 for the second, ...
        inputs / outputs: the call's input / output tensors, flattened.
    """

    layer: object
    node: object
    index: int | None
    repeat: int
    inputs: list
    outputs: list

    @property
    def is_input(self) -> bool:
        return isinstance(self.layer, keras.layers.InputLayer)


@dataclass(eq=False)
class ModelCalls:
    """The calls of one model graph (see the module docstring).

    Attributes:
        calls: every call, producers first (deepest Keras depth first).
        inputs / outputs: the graph's input / output tensors, flattened.
        producer: ``id(tensor) -> (Call, output index)``.
        consumers: ``id(tensor) -> [Call, ...]`` (each call once).
    """

    calls: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    producer: dict = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)

    def consumers_of(self, tensor) -> list:
        return self.consumers.get(id(tensor), [])


_cache = weakref.WeakKeyDictionary()


def model_calls(model) -> ModelCalls:
    """The `ModelCalls` of ``model`` (empty for a Sequential model that is not built)."""
    graph = functional_graph(model)
    if not isinstance(graph, Functional):
        return ModelCalls()
    cached = _cache.get(graph)
    if cached is not None:
        return cached
    inputs, outputs = graph_io(graph)
    level = ModelCalls(inputs=list(keras.tree.flatten(inputs)), outputs=list(keras.tree.flatten(outputs)))
    repeats = {}
    for node in calls_in_order(graph):
        op = node.operation
        nodes = inbound_nodes(op)
        index = nodes.index(node) if node in nodes else None
        repeat = repeats[id(op)] = repeats.get(id(op), -1) + 1
        call = Call(op, node, index, repeat, list(node.arguments.keras_tensors), list(node.outputs))
        level.calls.append(call)
        for j, t in enumerate(call.outputs):
            level.producer[id(t)] = (call, j)
    for call in level.calls:
        for t in call.inputs:
            readers = level.consumers.setdefault(id(t), [])
            if call not in readers:
                readers.append(call)
    _cache[graph] = level
    return level

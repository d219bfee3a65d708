"""Graph walker: the layer *calls* of a Functional or Sequential model.

`build_graph(model)` returns a `ModelGraph`: a `networkx.DiGraph` whose nodes
are the calls made at one level of the model (an ``InputLayer``, a layer
called on tensors, an op, or a nested model) and whose edges follow the
tensors from producer to consumer. A nested Functional/Sequential model is one
node of its parent's graph and carries its own `ModelGraph` (``call.sub``),
so nesting is kept at any depth. A layer called several times gives several
nodes that share one layer object.

Layers are addressed by *paths*: the layer name, prefixed by the names of the
models that contain it (``"encoder/dense_1"``).

Only the model's own call records are read (``model._nodes_by_depth``): calls
a layer made in other models are ignored, and nothing is modified.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field

import keras
import networkx as nx
from keras.src.layers.core.input_layer import InputLayer
from keras.src.models.functional import Functional

from .errors import UnsupportedModelError


@dataclass(eq=False)
class Call:
    """One call of an operation (layer, op or nested model) in a model.

    Attributes:
        key: node id in its `ModelGraph`: the layer name for its first call
            in that model, ``"name@i"`` for the i-th further call.
        layer: the called `keras.Operation` (usually a `keras.Layer`).
        path: nested path of the layer (``"encoder/dense_1"``).
        node: the Keras ``Node`` recording the call.
        inputs: the input `KerasTensor`s of the call, flattened.
        outputs: the output `KerasTensor`s of the call, flattened.
        sub: the `ModelGraph` of a nested Functional/Sequential model.
    """

    key: str
    layer: object
    path: str
    node: object
    inputs: list
    outputs: list
    sub: "ModelGraph | None" = None

    @property
    def is_input(self) -> bool:
        return isinstance(self.layer, InputLayer)


@dataclass(eq=False)
class ModelGraph:
    """The calls of one model level (see the module docstring).

    Attributes:
        model: the float model.
        prefix: path of the model inside the top-level model ("" at the top).
        kind: ``"functional"`` or ``"sequential"``.
        graph: `networkx.DiGraph`; node attribute ``call`` holds the `Call`,
            edge attribute ``tensors`` the ids of the tensors on that edge.
        order: call keys in topological order (model order among equals).
        inputs / outputs: the model's input / output tensors, flattened.
    """

    model: object
    prefix: str
    kind: str
    graph: nx.DiGraph
    order: list
    inputs: list
    outputs: list
    producer: dict = field(default_factory=dict)  # id(tensor) -> (key, output index)
    consumers: dict = field(default_factory=dict)  # id(tensor) -> [key, ...]

    @property
    def calls(self):
        """Calls in topological order."""
        cached = self.__dict__.get("_calls")
        if cached is None or len(cached) != len(self.order):
            cached = self.__dict__["_calls"] = [self.graph.nodes[k]["call"] for k in self.order]
        return cached

    def call(self, key) -> Call:
        return self.graph.nodes[key]["call"]

    def producer_of(self, tensor) -> Call | None:
        hit = self.producer.get(id(tensor))
        return None if hit is None else self.call(hit[0])

    def consumers_of(self, tensor) -> list:
        return [self.call(k) for k in self.consumers.get(id(tensor), [])]

    def is_output(self, tensor) -> bool:
        return any(t is tensor for t in self.outputs)

    def walk(self):
        """Yield ``(graph, call)`` for every call, depth first, nested models included.

        A nested model called several times is walked once.
        """
        seen = set()
        yield from self._walk(seen)

    def _walk(self, seen):
        for c in self.calls:
            yield self, c
            if c.sub is not None and id(c.sub) not in seen:
                seen.add(id(c.sub))
                yield from c.sub._walk(seen)

    def graphs(self):
        """Every `ModelGraph` in the tree, this one first, each once."""
        out, seen = [self], {id(self)}
        for _, c in self.walk():
            if c.sub is not None and id(c.sub) not in seen:
                seen.add(id(c.sub))
                out.append(c.sub)
        return out


FRAMES_PER_CALL = 4  # Keras' recursive graph mapping (``Function._build_map``) and margin
FRAMES_BASE = 1000


def count_calls(mg) -> int:
    """Number of calls in a `ModelGraph` tree (nested levels included, each once)."""
    return sum(len(g.order) for g in mg.graphs())


@contextlib.contextmanager
def recursion_room(n_calls: int):
    """Raise Python's recursion limit for a model of ``n_calls`` calls, and restore it afterwards.

    Keras builds a Functional model with a recursive walk (one frame per node, several per
    layer), so a chain of about 1,000 layers exceeds Python's default limit of 1,000. The limit
    is only raised (never lowered), and put back on exit unless someone changed it meanwhile.
    """
    old = sys.getrecursionlimit()
    need = FRAMES_BASE + FRAMES_PER_CALL * int(n_calls)
    if need <= old:
        yield
        return
    sys.setrecursionlimit(need)
    try:
        yield
    finally:
        if sys.getrecursionlimit() == need:
            sys.setrecursionlimit(old)


def join_path(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def is_nested_model(layer) -> bool:
    """True for models this walker can enter (Functional or Sequential)."""
    return isinstance(layer, (Functional, keras.Sequential))


def _check_model(model, where):
    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            raise UnsupportedModelError(
                f"Sequential model {where} is not built, so its layer graph is unknown. "
                "Give it an input shape first: start it with `keras.Input(shape=...)`, "
                "or call `model.build((None, ...))` before quantizing."
            )
        return
    if isinstance(model, Functional):
        return
    if isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"Model {where} ({type(model).__name__}) is a subclassed keras.Model: its call() is "
            "Python code, so its layer graph cannot be read or rebuilt. Write it with the "
            "Functional API (`keras.Model(inputs, outputs)`) or as a `keras.Sequential`, or "
            "quantize the Functional/Sequential models it is made of and compose the results, "
            "or build it by hand from `hgq_rewrite.layers`."
        )
    raise UnsupportedModelError(f"Expected a keras.Model, got {type(model).__name__}.")


def build_graph(model, prefix: str = "", _cache=None) -> ModelGraph:
    """Return the `ModelGraph` of a Functional or Sequential model.

    Args:
        model: a built Functional or Sequential `keras.Model`.
        prefix: path of the model inside its parent ("" for the top level).

    Raises:
        UnsupportedModelError: subclassed top-level model, unbuilt Sequential.
    """
    if _cache is None:
        _cache = {}
    _check_model(model, repr(prefix or model.name))
    if id(model) in _cache:
        return _cache[id(model)]
    if isinstance(model, keras.Sequential):
        fn, kind = model._functional, "sequential"
    else:
        fn, kind = model, "functional"

    nodes = [n for d in sorted(fn._nodes_by_depth, reverse=True) for n in fn._nodes_by_depth[d]]
    # model inputs first (in input order), then Keras' operation order
    inputs = list(keras.tree.flatten(fn._inputs_struct))
    rank = {id(op): i for i, op in enumerate(fn.operations)}
    for i, t in enumerate(inputs):
        rank[id(t._keras_history.operation)] = i - len(inputs)
    g = nx.DiGraph()
    producer, consumers = {}, {}
    key_of_node, calls_seen, sort_key = {}, {}, {}
    for node in nodes:
        op = node.operation
        n_call = calls_seen.get(id(op), 0)
        calls_seen[id(op)] = n_call + 1
        key = op.name if n_call == 0 else f"{op.name}@{n_call}"
        path = join_path(prefix, op.name)
        sub = None
        if is_nested_model(op):
            # A nested subclassed model stays a leaf: like any layer without a
            # converter it must be registered or kept float.
            sub = build_graph(op, prefix=path, _cache=_cache)
        call = Call(key, op, path, node, list(node.arguments.keras_tensors), list(node.outputs), sub)
        g.add_node(key, call=call)
        key_of_node[id(node)] = key
        sort_key[key] = (rank.get(id(op), len(rank)), n_call)
        for j, t in enumerate(call.outputs):
            producer[id(t)] = (key, j)
    for key in list(g.nodes):
        call = g.nodes[key]["call"]
        for t in call.inputs:
            hit = producer.get(id(t))
            if hit is None:
                raise UnsupportedModelError(
                    f"Cannot find the producer of input {t.name!r} of {call.path!r}."
                )
            consumers.setdefault(id(t), [])
            if key not in consumers[id(t)]:
                consumers[id(t)].append(key)
            if g.has_edge(hit[0], key):
                g.edges[hit[0], key]["tensors"].append(id(t))
            else:
                g.add_edge(hit[0], key, tensors=[id(t)])
    order = list(nx.lexicographical_topological_sort(g, key=lambda k: sort_key[k]))
    mg = ModelGraph(
        model=model,
        prefix=prefix,
        kind=kind,
        graph=g,
        order=order,
        inputs=inputs,
        outputs=list(keras.tree.flatten(fn._outputs_struct)),
        producer=producer,
        consumers=consumers,
    )
    _cache[id(model)] = mg
    return mg

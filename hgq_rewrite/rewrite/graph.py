"""The rewrite's view of a model: its layer *calls* as a graph, nested models included.

`build_graph(model)` returns a `ModelGraph`: a `networkx.DiGraph` whose nodes
are the calls made at one level of the model (an ``InputLayer``, a layer
called on tensors, an op, or a nested model) and whose edges follow the
tensors from producer to consumer. A nested Functional/Sequential model is one
node of its parent's graph and carries its own `ModelGraph` (``call.sub``),
so nesting is kept at any depth. A layer called several times gives several
nodes that share one layer object.

Layers are addressed by *paths*: the layer name, prefixed by the names of the
models that contain it (``"encoder/dense_1"``).

The calls come from the package's one walker (`hgq_rewrite.walker`): only the
model's own call records are read, and nothing is modified.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field

import keras
import networkx as nx
from ..compat.keras_private import Functional, functional_graph, keras_history
from ..walker import model_calls
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
        return isinstance(self.layer, keras.layers.InputLayer)


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
        if functional_graph(model) is None:
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
    kind = "sequential" if isinstance(model, keras.Sequential) else "functional"
    fn = functional_graph(model)
    level = model_calls(model)
    # model inputs first (in input order), then Keras' operation order
    rank = {id(op): i for i, op in enumerate(fn.operations)}
    for i, t in enumerate(level.inputs):
        rank[id(keras_history(t)[0])] = i - len(level.inputs)
    g = nx.DiGraph()
    key_of, sort_key = {}, {}
    for wc in level.calls:
        op = wc.layer
        key = op.name if wc.repeat == 0 else f"{op.name}@{wc.repeat}"
        path = join_path(prefix, op.name)
        sub = None
        if is_nested_model(op):
            # A nested subclassed model stays a leaf: like any layer without a
            # converter it must be registered or kept float.
            sub = build_graph(op, prefix=path, _cache=_cache)
        g.add_node(key, call=Call(key, op, path, wc.node, wc.inputs, wc.outputs, sub))
        key_of[id(wc)] = key
        sort_key[key] = (rank.get(id(op), len(rank)), wc.repeat)
    producer = {t: (key_of[id(wc)], j) for t, (wc, j) in level.producer.items()}
    consumers = {t: [key_of[id(wc)] for wc in readers] for t, readers in level.consumers.items()}
    for key in list(g.nodes):
        call = g.nodes[key]["call"]
        for t in call.inputs:
            hit = producer.get(id(t))
            if hit is None:
                raise UnsupportedModelError(
                    f"Cannot find the producer of input {t.name!r} of {call.path!r}."
                )
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
        inputs=level.inputs,
        outputs=level.outputs,
        producer=producer,
        consumers=consumers,
    )
    _cache[id(model)] = mg
    return mg

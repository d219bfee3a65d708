"""Graph walker: calls, edges, nesting, sharing, and the model kinds it refuses."""

import keras
import pytest
from keras import layers as L
from test_rewrite_models import nested_shared, residual_convnet, subclassed_model, two_input

from hgq_rewrite.rewrite import UnsupportedModelError
from hgq_rewrite.rewrite.graph import build_graph


def test_sequential_chain():
    m = keras.Sequential([keras.Input((4,), name="x"), L.Dense(3, name="a"), L.ReLU(name="b")], name="s")
    g = build_graph(m)
    assert g.kind == "sequential"
    assert [c.key for c in g.calls] == ["x", "a", "b"]
    assert list(g.graph.edges) == [("x", "a"), ("a", "b")]


def test_functional_branches_and_order():
    g = build_graph(residual_convnet())
    keys = [c.key for c in g.calls]
    assert keys[0] == "image"
    assert keys.index("relu1") < keys.index("conv2") < keys.index("skip")
    assert set(g.graph.predecessors("skip")) == {"relu1", "conv2"}
    relu_out = g.call("relu1").outputs[0]
    assert {c.key for c in g.consumers_of(relu_out)} == {"conv2", "skip"}


def test_nested_and_shared():
    g = build_graph(nested_shared())
    enc = g.call("encoder")
    assert enc.sub is not None and enc.sub.kind == "sequential"
    assert [c.path for c in enc.sub.calls][1:] == [
        "encoder/dense_1", "encoder/bn", "encoder/relu", "encoder/dense_2"]
    # the shared layer: two calls, one layer object
    assert g.call("shared").layer is g.call("shared@1").layer
    assert g.call("shared@1").path == "shared"
    paths = [c.path for _, c in g.walk()]
    assert paths.count("shared") == 2 and "encoder/bn" in paths


def test_deep_nesting_paths():
    inner = keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")], name="inner")
    x = keras.Input((3,))
    mid = keras.Model(x, inner(x), name="mid")
    y = keras.Input((3,))
    top = keras.Model(y, mid(y), name="top")
    paths = [c.path for _, c in build_graph(top).walk()]
    assert "mid/inner/d" in paths


def test_two_inputs_two_outputs():
    g = build_graph(two_input())
    assert len(g.inputs) == 2 and len(g.outputs) == 2
    assert [c.key for c in g.calls if c.is_input] == ["tracks", "towers"]


def test_nested_model_called_twice_walked_once():
    inner = keras.Sequential([keras.Input((3,)), L.Dense(3, name="d")], name="inner")
    x = keras.Input((3,))
    y = inner(inner(x))
    g = build_graph(keras.Model(x, y))
    assert g.call("inner").sub is g.call("inner@1").sub
    assert [c.path for _, c in g.walk()].count("inner/d") == 1


def test_subclassed_model_rejected():
    net = subclassed_model()
    with pytest.raises(UnsupportedModelError, match="subclassed.*Functional API"):
        build_graph(net)


def test_unbuilt_sequential_rejected():
    with pytest.raises(UnsupportedModelError, match="not built.*keras.Input"):
        build_graph(keras.Sequential([L.Dense(2)]))


def test_sequential_built_with_build_call():
    m = keras.Sequential([L.Dense(2, name="d")])
    m.build((None, 5))
    g = build_graph(m)
    assert [c.key for c in g.calls][1:] == ["d"]


def test_not_a_model():
    with pytest.raises(UnsupportedModelError, match="keras.Model"):
        build_graph(L.Dense(3))


def test_walker_does_not_touch_model():
    m = nested_shared()
    before = {l.name: len(l._inbound_nodes) for l in m.layers}
    build_graph(m)
    assert {l.name: len(l._inbound_nodes) for l in m.layers} == before

"""quantize on deep models: no recursion-limit trap for the user."""

import sys

import keras
import numpy as np

import hgq_rewrite as hr
from hgq_rewrite.rewrite.graph import recursion_room


def test_quantize_a_1000_layer_chain_under_the_default_recursion_limit():
    # 1,000 Dropout layers after a Dense: the smallest chain whose rewrite used to raise
    # RecursionError inside keras.Model(...) (Keras maps the graph recursively). Dropout
    # becomes the passive PDropout, which keeps the test fast.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # only to build the float model: keras.Model(...) recurses too
    try:
        x = keras.Input((4,), name="x")
        h = keras.layers.Dense(4, name="d")(x)
        for i in range(1000):
            h = keras.layers.Dropout(0.1, name=f"drop_{i}")(h)
        model = keras.Model(x, h)
    finally:
        sys.setrecursionlimit(limit)
    sys.setrecursionlimit(1000)  # Python's default, as a user has it
    try:
        qmodel = hr.quantize(model, beta=1e-6)
        assert sys.getrecursionlimit() == 1000  # put back
    finally:
        sys.setrecursionlimit(limit)
    assert len(qmodel.layers) == 1 + 1 + 1 + 1000  # input, its HQuantize, HDense, the PDropouts
    out = qmodel.predict(np.ones((2, 4), "float32"), verbose=0)
    assert out.shape == (2, 4) and np.isfinite(out).all()


def test_recursion_room_raises_only_when_needed_and_restores():
    limit = sys.getrecursionlimit()
    with recursion_room(0):
        assert sys.getrecursionlimit() == limit  # no more room needed: untouched
    with recursion_room(limit):
        assert sys.getrecursionlimit() > limit
    assert sys.getrecursionlimit() == limit

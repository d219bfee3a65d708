"""Save / load round trip with no custom_objects, for a model using every layer."""

import keras
import numpy as np
from models import every_layer_data, every_layer_model

import hgq_rewrite as hr


def test_every_layer_round_trip(tmp_path):
    model = every_layer_model()
    (x, y) = every_layer_data()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[hr.FreeBOPs(), hr.ResetMinMax()])
    ebops = hr.trace_minmax(model, x)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert {type(layer).__name__ for layer in loaded.layers} == {type(layer).__name__ for layer in model.layers}
    for a, b in zip(model.layers, loaded.layers):
        if hasattr(a, "output_kif_map") and not isinstance(a, keras.layers.InputLayer):
            for ma, mb in zip(a.output_kif(), b.output_kif()):
                np.testing.assert_array_equal(ma, mb)
    assert sum(layer.ebops for layer in hr.trace.h_layers(loaded)) == ebops
    assert loaded.get_layer("out").beta == model.get_layer("out").beta


def test_reloaded_sequential_counts_each_layer_once(tmp_path):
    """A reloaded Sequential keeps stale calls in its layers; EBOPs must count only the graph's."""
    from hgq_rewrite.layers import HDense, HQuantize

    model = keras.Sequential([keras.Input((8,)), HQuantize(), HDense(16, activation="relu"), HDense(4)])
    x = np.random.default_rng(0).normal(size=(100, 8)).astype("float32")
    ebops = hr.trace_minmax(model, x)
    model.save(tmp_path / "s.keras")
    loaded = keras.saving.load_model(tmp_path / "s.keras")
    assert max(len(layer._inbound_nodes) for layer in loaded.layers) > 1  # the stale calls exist
    assert hr.trace_minmax(loaded, x) == ebops

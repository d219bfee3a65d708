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

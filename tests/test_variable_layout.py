"""Packed state variables (fewer variables: cheaper quantize) and loading files saved before the packing."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import hgq_rewrite as hr
from hgq_rewrite.proxy.convert import traced_overflow_is_wrap
from hgq_rewrite.quantizers import HQuantizer
from hgq_rewrite.quantizers.saved_layouts import own_variables
from hgq_rewrite.trace import h_layers

DATA = os.path.join(os.path.dirname(__file__), "data")
UNPACKED = ("fbw", "min", "max", "calibrated", "saturate", "fw_k", "fw_i", "fw_f")


@pytest.mark.parametrize("name", ["layout_v1", "layout_v2"])
def test_a_file_saved_in_an_earlier_layout_loads_unchanged(name):
    """Saved after training and trace_minmax(aggressive=False); the .npz holds the values then.
    layout_v1.keras: by commit 0c3ed79 (min, max, calibrated, saturate, fw_k/i/f, beta, ebops one variable
    each). layout_v2.keras: by 08a9453 (minmax, fw_mode = [calibrated, saturate], fw_kif = [k, i, f]; finetune's
    optimizer state with the bitwidths' Adam moments packed), saved by tests/data/make_layout_v2.py."""
    model = keras.saving.load_model(os.path.join(DATA, f"{name}.keras"))
    expected = np.load(os.path.join(DATA, f"{name}.npz"))
    np.testing.assert_array_equal(model.predict(expected["x"], verbose=0), expected["y"])
    for layer in h_layers(model):
        assert layer.beta == expected[f"{layer.name}/beta"] and layer.ebops == expected[f"{layer.name}/ebops"]
        for name in UNPACKED:
            np.testing.assert_array_equal(ops.convert_to_numpy(getattr(layer.paq, name)),
                                          expected[f"{layer.name}/{name}"], err_msg=f"{layer.name}/{name}")
        assert layer.paq.is_traced()
    assert sum(layer.ebops for layer in h_layers(model)) > 0
    assert traced_overflow_is_wrap(model) is False  # saved with SAT
    np.testing.assert_array_equal(hr.to_proxy_model(model).predict(expected["x"], verbose=0), expected["y"])
    if name == "layout_v2":  # finetune's optimizer state came along: training goes on from it
        assert int(model.optimizer.iterations) == 8
        assert all(np.any(np.asarray(pack.velocity) > 0) for pack in model.optimizer._packs)


def _quantizer(shape, **config):
    q = HQuantizer({"init_bw": 3, **config}, "activation")
    q.build(shape)
    return q


def test_a_quantizer_saved_before_the_firmware_state_loads_uncalibrated():
    old = {"0": np.full((1, 4), 5.0, "float32"), "1": np.full((1, 4), -2.0, "float32"),
           "2": np.full((1, 4), 3.0, "float32")}
    q = _quantizer((None, 4))
    q.load_own_variables(old)
    for name, j in (("fbw", "0"), ("min", "1"), ("max", "2")):
        np.testing.assert_array_equal(ops.convert_to_numpy(getattr(q, name)), old[j])
    assert q.has_firmware_state and q.has_ranges() and not q.is_traced()


def test_a_quantizer_of_unknown_feature_dims_loads_its_old_range():
    old = {"0": np.full((1, 1, 1), 4.0, "float32"), "1": np.full((1, 1, 1), -1.5, "float32"),
           "2": np.full((1, 1, 1), 2.5, "float32")}
    q = _quantizer((None, None, 2), granularity="tensor")
    assert not q.has_firmware_state
    q.load_own_variables(old)
    np.testing.assert_array_equal(ops.convert_to_numpy(q.fbw), old["0"])
    np.testing.assert_array_equal(ops.convert_to_numpy(q.minmax), np.stack([old["1"], old["2"], np.zeros((1, 1, 1))]))


def test_a_store_of_another_layout_is_refused_naming_the_layer():
    q = HQuantizer({"init_bw": 3}, "activation", owner="dense_7")
    q.build((None, 4))
    with pytest.raises(ValueError, match=r"Layer 'dense_7' \(activation quantizer\).*expected 3 variables"):
        q.load_own_variables({str(j): np.zeros((1, 4), "float32") for j in range(6)})


def test_state_variables_per_h_layer():
    """The cost of quantize is mostly variable creation, and each is a state array of every JAX training step:
    the output quantizer makes 3 (was 8), the layer 1 besides Dense+BatchNorm's 6 (was 2)."""
    L = keras.layers
    q = hr.quantize(keras.Sequential([L.Input((4,)), L.Dense(5), L.BatchNormalization(), L.ReLU()]))
    layer = next(layer for layer in h_layers(q) if type(layer).__name__ == "HDenseBatchNorm")
    assert [v.name for v in own_variables(layer.paq)] == ["fbw", "minmax", "fw_kif"]
    assert [v.name for v in own_variables(layer)] == ["kernel", "bias", "bn_gamma", "bn_beta", "moving_mean",
                                                      "moving_variance", "beta_ebops"]


def test_beta_and_ebops_are_set_independently():
    q = hr.quantize(keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)]), beta=2e-6)
    layer = h_layers(q)[-1]
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    ebops = hr.trace_minmax(q, x)
    layer.beta = 5e-6
    assert layer.beta == np.float32(5e-6) and sum(h.ebops for h in h_layers(q)) == ebops
    q.compile("adam", "mse")
    q.fit(x, np.zeros((32, 3), "float32"), epochs=1, batch_size=32, verbose=0)
    assert layer.beta == np.float32(5e-6) and layer.ebops > 0

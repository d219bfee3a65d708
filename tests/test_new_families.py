"""The merges Subtract/Multiply/Average/Maximum/Minimum, GlobalMaxPooling1D/2D and the element-wise
activation layers with arguments: each goes quantize → fit → trace_minmax → to_proxy_model with the
HGQ model and its proxy equal on every sample, and (slow) through hls4ml's C simulation."""


import keras
import numpy as np
import pytest
from keras import layers as L

import hgq_rewrite as hr
from hgq_rewrite.layers import HMultiply
from hgq_rewrite.layers.base import bits_of
from hgq_rewrite.rewrite import UnsupportedLayerError
from flow import assert_hls4ml_exact, mismatching_rows, needs_gxx, random_inputs, train_trace_proxy

N_TEST = 500


def _merges_model():
    x = keras.Input((6,))
    a, b, c = (L.Dense(8, name=n)(x) for n in "abc")
    outs = [L.Subtract(name="sub")([a, b]), L.Multiply(name="mul")([a, c]), L.Multiply(name="mul3")([a, b, c]),
            L.Average(name="avg")([b, c]), L.Maximum(name="max")([a, b, c]), L.Minimum(name="min")([a, c])]
    return keras.Model(x, L.Dense(3, name="out")(L.Concatenate(name="cat")(outs)), name="merges")


def _pooling_model():
    x1, x2 = keras.Input((10, 3)), keras.Input((6, 6, 2))
    h1, h2 = L.Conv1D(4, 3, name="c1")(x1), L.Conv2D(4, 3, name="c2")(x2)
    pooled = [L.GlobalMaxPooling1D(name="g1")(h1), L.Flatten()(L.GlobalMaxPooling1D(keepdims=True, name="g1k")(h1)),
              L.GlobalMaxPooling2D(name="g2")(h2), L.Flatten()(L.GlobalMaxPooling2D(keepdims=True, name="g2k")(h2))]
    return keras.Model([x1, x2], L.Dense(3, name="out")(L.Concatenate()(pooled)), name="global_max")


ACTIVATIONS = {
    "leaky": lambda: L.LeakyReLU(negative_slope=0.1, name="leaky"),
    "elu": lambda: L.ELU(alpha=0.5, name="elu"),
    "relu_args": lambda: L.ReLU(max_value=2.0, negative_slope=0.25, threshold=0.5, name="relu_args"),
    "hsig": lambda: L.Activation("hard_sigmoid", name="hsig"),
    "swish": lambda: L.Activation("swish", name="swish"),
    "silu": lambda: L.Activation("silu", name="silu"),
    "gelu": lambda: L.Activation("gelu", name="gelu"),
}


def _activations_model():
    x = keras.Input((6,))
    h = L.Dense(8, name="d")(x)
    outs = [make()(h) for make in ACTIVATIONS.values()]
    return keras.Model(x, L.Dense(3, name="out")(L.Concatenate(name="cat")(outs)), name="activations")


# -- merges --------------------------------------------------------------------------------------------------
def test_merges_convert_and_export_exactly():
    model = _merges_model()
    plan = hr.explain(model)
    for name, target in [("sub", "HSubtract"), ("mul", "HMultiply"), ("avg", "HAverage"), ("max", "HMaximum"),
                         ("min", "HMinimum")]:
        assert (plan[name].decision, plan[name].target, plan[name].exports) == ("convert", target, "yes")
    q, proxy, x = train_trace_proxy(model)
    assert [type(lay).__name__ for lay in proxy.layers].count("Multiply") == 3  # mul3 chained pairwise
    assert mismatching_rows(q, proxy, x) == 0


def test_multiply_ebops_are_bit_products_and_other_merges_cost_nothing():
    q, _, _ = train_trace_proxy(_merges_model(), seed=3)
    bits = {n: np.asarray(bits_of(q.get_layer(n).output_kif()), np.float64) for n in "abc"}
    assert q.get_layer("mul").ebops == np.sum(bits["a"] * bits["c"]) > 0
    chained = np.sum(bits["a"] * bits["b"]) + np.sum((bits["a"] + bits["b"]) * bits["c"])
    assert q.get_layer("mul3").ebops == chained
    for name in ("sub", "avg", "max", "min"):
        assert q.get_layer(name).ebops == 0.0 and not q.get_layer(name).has_cost()
    assert isinstance(q.get_layer("mul"), HMultiply) and q.get_layer("mul").has_cost()


def test_the_export_keeps_every_fractional_bit_a_product_or_an_average_carries():
    keras.utils.set_random_seed(1)
    model = _merges_model()
    q = hr.quantize(model)
    for name in ("mul", "avg"):  # output quantizers asking for more bits than the results carry
        fbw = q.get_layer(name).paq.fbw
        fbw.assign(np.full(fbw.shape, 30.0, "float32"))
    hr.trace_minmax(q, random_inputs(model, 256, 0))
    proxy = hr.to_proxy_model(q)
    f = {n: q.get_layer(n).output_kif()[2] for n in ("a", "b", "c", "mul", "avg")}
    np.testing.assert_array_equal(f["mul"], f["a"] + f["c"])
    np.testing.assert_array_equal(f["avg"], np.maximum(f["b"], f["c"]) + 1)
    assert mismatching_rows(q, proxy, random_inputs(model, N_TEST, 2, scale=1.5)) == 0


def test_average_of_three_inputs_is_refused_with_the_remedy():
    x = keras.Input((4,))
    model = keras.Model(x, L.Average(name="avg3")([L.Dense(4)(x), L.Dense(4)(x), L.Dense(4)(x)]))
    exports = hr.explain(model)["avg3"].exports
    assert exports.startswith("no: Average of 3 inputs") and "remedy: use Average layers of two inputs" in exports
    with pytest.raises(UnsupportedLayerError, match="'avg3': Average of 3 inputs"):
        hr.quantize(model, strict=True)


def test_merge_of_broadcast_shapes_is_unsupported():
    x = keras.Input((4,))
    model = keras.Model(x, L.Multiply(name="bcast")([L.Dense(4)(x), L.Dense(1)(x)]))
    entry = hr.explain(model)["bcast"]
    assert entry.decision == "unsupported" and "inputs of different shapes" in entry.reason


# -- global max pooling ----------------------------------------------------------------------------------
def test_global_max_pooling_exports_as_max_pooling_over_the_whole_extent():
    model = _pooling_model()
    plan = hr.explain(model)
    assert (plan["g1"].target, plan["g2k"].target, plan["g2"].exports) == (
        "PGlobalMaxPooling1D", "PGlobalMaxPooling2D", "yes")
    q, proxy, x = train_trace_proxy(model)
    for pool, conv, axes in [("g1", "c1", (1,)), ("g2", "c2", (1, 2))]:
        expected = [m.max(axis=axes) for m in q.get_layer(conv).output_kif()]  # union format, no rounding
        for got, want in zip(q.get_layer(pool).output_kif(), expected):
            np.testing.assert_array_equal(np.broadcast_to(got, want.shape), want)
    kinds = [type(lay).__name__ for lay in proxy.layers]
    assert "GlobalMaxPooling1D" not in kinds and "GlobalMaxPooling2D" not in kinds
    assert kinds.count("MaxPooling1D") == 2 and kinds.count("MaxPooling2D") == 2
    assert mismatching_rows(q, proxy, x) == 0


# -- activations -----------------------------------------------------------------------------------------
def test_activation_layers_with_arguments_export_through_the_table(tmp_path):
    model = _activations_model()
    plan = hr.explain(model)
    assert plan["leaky"].target == "HActivation(leaky_relu(negative_slope=0.1))"
    assert plan["relu_args"].target == "HActivation(relu(max_value=2.0, negative_slope=0.25, threshold=0.5))"
    assert all(plan[n].exports == "yes" and plan[n].decision == "convert" for n in ACTIVATIONS)
    q, proxy, x = train_trace_proxy(model)
    assert [type(lay).__name__ for lay in proxy.layers].count("UnaryLUT") == len(ACTIVATIONS)
    assert mismatching_rows(q, proxy, x) == 0
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert loaded.get_layer("elu").activation_name == "elu(alpha=0.5)"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), q.predict(x, verbose=0))


def test_default_arguments_keep_the_plain_activation_and_relu_fuses():
    x = keras.Input((4,))
    h = L.ReLU(name="relu")(L.Dense(4, name="d")(x))
    h = L.ELU(name="elu")(L.Dense(4, name="d2")(h))
    h = L.ReLU(max_value=6.0, name="r6")(h)
    plan = hr.explain(keras.Model(x, L.LeakyReLU(negative_slope=0.2, name="leaky")(h)))
    assert plan["relu"].decision == "fuse"
    assert [plan[n].target for n in ("elu", "r6", "leaky")] == [
        "HActivation(elu)", "HActivation(relu6)", "HActivation(leaky_relu)"]


# -- all together, through hls4ml ------------------------------------------------------------------------
@pytest.mark.slow
@needs_gxx
def test_all_new_families_together_are_bit_exact_in_hls4ml():
    seq, img = keras.Input((8, 3)), keras.Input((5, 5, 2))
    a = L.LeakyReLU(negative_slope=0.1)(L.GlobalMaxPooling1D()(L.Conv1D(6, 3)(seq)))
    b = L.ELU(alpha=0.5)(L.GlobalMaxPooling2D()(L.Conv2D(6, 3)(img)))
    merged = [L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]), L.Maximum()([a, b]),
              L.Minimum()([a, b])]
    acts = [L.ReLU(max_value=2.0, negative_slope=0.25, threshold=0.5)(merged[0]), L.Activation("hard_sigmoid")(merged[1]),
            L.Activation("swish")(merged[2]), L.Activation("gelu")(merged[3]), merged[4]]
    model = keras.Model([seq, img], L.Dense(3)(L.Concatenate()(acts)), name="all_new")
    q, proxy, x = train_trace_proxy(model)
    assert mismatching_rows(q, proxy, x) == 0
    assert_hls4ml_exact(proxy, x)

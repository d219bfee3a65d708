"""DepthwiseConv1D, SeparableConv1D/2D, ZeroPadding1D/2D (folded into the convolution after it) and PReLU:
each goes quantize → fit → trace_minmax → to_proxy_model with the HGQ model and its proxy equal on every
sample, keeps the float weights, refuses what hls4ml 1.3 cannot export, and (slow) matches hls4ml's C
simulation bit for bit."""


import keras
import numpy as np
import pytest
from keras import layers as L

import hgq_rewrite as hr
from hgq_rewrite.layers.base import bits_of
from hgq_rewrite.layers.conv import HConv1D, HConv2DBatchNorm, HDepthwiseConv1D, HDepthwiseConv2D
from hgq_rewrite.layers.passive import PZeroPadding1D, PZeroPadding2D
from hgq_rewrite.layers.prelu import HPReLU
from hgq_rewrite.proxy import ProxyConversionError
from hgq_rewrite.rewrite import UnsupportedLayerError
from flow import assert_hls4ml_exact, mismatching_rows, needs_gxx, random_inputs, train_trace_proxy

N_TEST = 400
WIDE = {"defaults": {"kernel": {"init_bw": 20}, "activation": {"init_bw": 20}}}


def _kinds(model):
    return [type(lay).__name__ for lay in model.layers]


def _sequence_model():
    x = keras.Input((12, 3))
    h = L.DepthwiseConv1D(3, name="dw")(x)
    h = L.SeparableConv1D(5, 3, strides=2, padding="same", activation="relu", name="sep")(h)
    h = L.ZeroPadding1D(1, name="pad")(h)
    h = L.Conv1D(4, 3, name="conv")(h)
    h = L.PReLU(shared_axes=[1], name="prelu")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.Flatten()(h)), name="sequence")


def _image_model():
    x = keras.Input((7, 7, 2))
    h = L.ZeroPadding2D(((1, 1), (1, 1)), name="pad2")(x)
    h = L.SeparableConv2D(4, 3, name="sep2")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="relu")(h)
    h = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad_s2")(h)
    h = L.DepthwiseConv2D(2, strides=2, name="dw2")(h)
    h = L.PReLU(name="prelu2")(h)  # a slope per element: exported on the flattened input
    return keras.Model(x, L.Dense(3, name="out")(L.Flatten()(h)), name="image")


# -- conversion ------------------------------------------------------------------------------------------
def test_explain_shows_the_new_families_and_that_they_export():
    plan = hr.explain(_sequence_model())
    assert plan["dw"].target == "HDepthwiseConv1D"
    assert plan["sep"].target == "HDepthwiseConv1D + HConv1D"
    assert plan["pad"].target == "PZeroPadding1D (exported folded into 'conv')"
    assert plan["prelu"].target == "HPReLU"
    assert all(plan[n].exports == "yes" for n in ("dw", "sep", "pad", "prelu"))
    plan = hr.explain(_image_model())
    assert plan["sep2"].target == "HDepthwiseConv2D + HConv2DBatchNorm"
    assert (plan["bn"].decision, plan["relu"].decision) == ("fold", "fuse")
    assert all(plan[n].exports == "yes" for n in ("pad2", "sep2", "pad_s2", "dw2", "prelu2"))


def test_separable_becomes_depthwise_then_pointwise_with_the_float_weights():
    keras.utils.set_random_seed(0)
    model = _image_model()
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(0, 0.3, 4))
    bn.moving_variance.assign(rng.uniform(0.5, 2, 4))
    q = hr.quantize(model)
    sep, dw, pw = model.get_layer("sep2"), q.get_layer("sep2_depthwise"), q.get_layer("sep2")
    assert isinstance(dw, HDepthwiseConv2D) and isinstance(pw, HConv2DBatchNorm)
    assert (dw.use_bias, dw.padding, pw.kernel_size, pw.activation_name) == (False, "valid", (1, 1), "relu")
    np.testing.assert_array_equal(dw.kernel.numpy(), sep.depthwise_kernel.numpy())
    np.testing.assert_array_equal(pw.kernel.numpy(), sep.pointwise_kernel.numpy())
    np.testing.assert_array_equal(pw.bias.numpy(), sep.bias.numpy())
    np.testing.assert_array_equal(pw.moving_variance.numpy(), bn.moving_variance.numpy())
    # fully parallel by default: both halves count every output position (7 x 7 here)
    assert dw.parallel_factor == pw.parallel_factor == 49
    assert isinstance(q.get_layer("pad2"), PZeroPadding2D) and isinstance(q.get_layer("prelu2"), HPReLU)


@pytest.mark.parametrize("make", [_sequence_model, _image_model])
def test_quantized_model_computes_the_float_model_at_high_bitwidths(make):
    keras.utils.set_random_seed(1)
    model = make()
    for layer in model.layers:  # non-zero PReLU slopes and BN statistics
        if isinstance(layer, L.PReLU):
            layer.alpha.assign(np.random.default_rng(0).uniform(0.05, 0.5, layer.alpha.shape))
        if isinstance(layer, L.BatchNormalization):
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1.7, "float32"))
    q = hr.quantize(model, config=WIDE)
    x = random_inputs(model, 64, 3)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(q.predict(x, verbose=0), want, atol=1e-3 * np.max(np.abs(want)))


def test_ebops_of_the_convolutions_count_every_output_position():
    q, _, _ = train_trace_proxy(_sequence_model(), seed=2, n_test=N_TEST, strict=True)
    for name, producer in [("dw", "dw_input_quantizer"), ("sep_depthwise", "dw"), ("sep", "sep_depthwise")]:
        layer = q.get_layer(name)
        b_in = np.asarray(bits_of(layer.input_kif_maps(True)[0]), np.float32)
        b_w = np.asarray(layer.kq.kernel_bits(layer.qkernel, exact=True), np.float32)
        want = np.sum(np.asarray(layer.conv(b_in, b_w)))  # every output position, each multiply once
        assert layer.ebops == pytest.approx(want) and want > 0, name
    prelu = q.get_layer("prelu")
    b_in = np.asarray(bits_of(prelu.input_kif_maps(True)[0]), np.float64)
    b_alpha = np.asarray(prelu.kq.kernel_bits(prelu.qkernel, exact=True), np.float64)
    assert prelu.ebops == pytest.approx(np.sum(b_in * b_alpha))


# -- proxy -------------------------------------------------------------------------------------------------
def test_sequence_families_export_exactly_and_padding_folds_into_the_conv():
    q, proxy, x = train_trace_proxy(_sequence_model(), n_test=N_TEST, strict=True)
    assert "ZeroPadding1D" not in _kinds(proxy) and "PReLU" not in _kinds(proxy)
    assert proxy.get_layer("conv").padding == "same"  # the ZeroPadding, folded
    assert isinstance(q.get_layer("pad"), PZeroPadding1D) and isinstance(q.get_layer("dw"), HDepthwiseConv1D)
    assert isinstance(q.get_layer("sep"), HConv1D)
    assert mismatching_rows(q, proxy, x) == 0


def test_image_families_export_exactly_with_strided_folded_padding_and_per_element_slopes():
    q, proxy, x = train_trace_proxy(_image_model(), seed=1, n_test=N_TEST, strict=True)
    assert "ZeroPadding2D" not in _kinds(proxy)
    assert proxy.get_layer("sep2_depthwise").padding == proxy.get_layer("dw2").padding == "same"
    assert _kinds(proxy).count("Reshape") == 1  # per-element slopes: Flatten, Dense, Reshape
    assert mismatching_rows(q, proxy, x) == 0


def test_hgq_models_with_the_new_layers_save_and_load(tmp_path):
    q, _, x = train_trace_proxy(_sequence_model(), seed=4, n_test=N_TEST, strict=True)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert loaded.get_layer("prelu").shared_axes == [1]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), q.predict(x, verbose=0))


def test_a_reloaded_sequential_model_still_folds_its_padding(tmp_path):
    # a reloaded Sequential keeps stale calls in its layers' nodes: only the model graph's calls count
    model = keras.Sequential([keras.Input((6, 6, 2)), L.ZeroPadding2D(1, name="pad"), L.Conv2D(3, 3, name="conv"),
                              L.PReLU(shared_axes=[1, 2], name="prelu"), L.Flatten(), L.Dense(2, name="out")])
    q = hr.quantize(model, strict=True)
    x = random_inputs(model, N_TEST, 0)
    hr.trace_minmax(q, x)
    q.save(tmp_path / "seq.keras")
    loaded = keras.models.load_model(tmp_path / "seq.keras")
    proxy = hr.to_proxy_model(loaded)
    assert proxy.get_layer("conv").padding == "same" and "ZeroPadding2D" not in _kinds(proxy)
    assert mismatching_rows(loaded, proxy, x) == 0


# -- refusals ----------------------------------------------------------------------------------------------
def _refused(model, name, why, remedy):
    exports = hr.explain(model)[name].exports
    assert exports.startswith("no: ") and why in exports and f"remedy: {remedy}" in exports, exports
    with pytest.raises(UnsupportedLayerError, match=name):
        hr.quantize(model, strict=True)


@pytest.mark.parametrize("pad, conv, why", [
    (L.ZeroPadding1D((2, 0)), L.Conv1D(2, 3), "is not what padding='same' adds"),
    (L.ZeroPadding1D(1), L.Conv1D(2, 3, padding="same"), "has padding='same'"),
    (L.ZeroPadding1D(1), L.Conv1D(2, 5), "is not what padding='same' adds"),
    (L.ZeroPadding1D(1), L.Flatten(), "not a convolution"),
])
def test_zero_padding_that_does_not_fold_is_refused_with_the_remedy(pad, conv, why):
    x = keras.Input((8, 3))
    pad.name = "pad"
    model = keras.Model(x, L.Dense(2)(L.Flatten()(conv(pad(x)))))
    _refused(model, "pad", why, "remove the ZeroPadding and give the convolution padding='same'")


def test_zero_padding2d_alone_is_refused_at_export_too():
    x = keras.Input((4, 4, 2))
    model = keras.Model(x, L.Dense(2)(L.Flatten()(L.ZeroPadding2D(1, name="pad")(x))))
    _refused(model, "pad", "no rule for zero padding", "remove the ZeroPadding")
    q = hr.quantize(model)
    hr.trace_minmax(q, random_inputs(model, 32, 0))
    with pytest.raises(ProxyConversionError, match="'pad'.*not a convolution"):
        hr.to_proxy_model(q)


def test_zero_padding_that_is_also_a_model_output_is_refused_at_export():
    x = keras.Input((6, 2))
    pad = L.ZeroPadding1D(1, name="pad")(x)
    model = keras.Model(x, [L.Conv1D(2, 3, name="conv")(pad), pad])
    q = hr.quantize(model)
    hr.trace_minmax(q, random_inputs(model, 32, 0))
    with pytest.raises(ProxyConversionError, match="'pad'.*model output"):
        hr.to_proxy_model(q)


@pytest.mark.parametrize("layer, remedy", [
    (L.SeparableConv1D(4, 3, depth_multiplier=2, name="big"), "the pointwise convolution sets the number"),
    (L.DepthwiseConv1D(3, depth_multiplier=2, name="big"), "followed by a Conv1D with kernel size 1"),
])
def test_depth_multiplier_above_one_is_refused_with_the_remedy(layer, remedy):
    x = keras.Input((8, 3))
    entry = hr.explain(keras.Model(x, layer(x)))["big"]
    assert entry.decision == "unsupported"
    assert "depth_multiplier=2, which hls4ml 1.3's bit-exact flow cannot convert" in entry.reason
    assert remedy in entry.reason


def test_1d_and_2d_depthwise_convolutions_together_are_refused_before_hls4ml():
    from hgq_rewrite.proxy import export_problems

    a, b = keras.Input((8, 3)), keras.Input((5, 5, 2))
    both = keras.Model([a, b], [L.DepthwiseConv1D(3, name="d1")(a), L.DepthwiseConv2D(3, name="d2")(b)])
    problems = [p for p in export_problems(both) if "include guard" in p.reason]
    assert [p.layer for p in problems] == ["d1"] and "separate models" in problems[0].remedy
    alone = keras.Model(a, L.DepthwiseConv1D(3)(a))
    assert not [p for p in export_problems(alone) if "include guard" in p.reason]


# -- through hls4ml ----------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_gxx
@pytest.mark.parametrize("make", [_sequence_model, _image_model])
def test_conv_families_are_bit_exact_in_hls4ml(make):
    q, proxy, x = train_trace_proxy(make(), n_test=N_TEST, strict=True)
    assert mismatching_rows(q, proxy, x) == 0
    assert_hls4ml_exact(proxy, x)

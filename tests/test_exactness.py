"""The traced HGQ model computes what its firmware computes (issue: firmware = model, everywhere).

Each test reproduces one way the HGQ model, its proxy or its firmware used to disagree.
"""

import math
import os
import sys

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import hgq_rewrite as hr
from hgq_rewrite.layers import HDense, HDepthwiseConv2D, HQuantize, PAveragePooling1D
from hgq_rewrite.proxy import predict_float64
from hgq_rewrite.quantizers import NotTracedError
from hgq_rewrite.quantizers.fixed_point import quantize
from proxy_harness import reference_quantize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import fuzz_exactness  # noqa: E402


def _fit(model, x, y, epochs=1):
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[hr.ResetMinMax()])


def _same(a, b):
    for u, v in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_array_equal(np.asarray(u, np.float64), np.asarray(v, np.float64))


@pytest.mark.parametrize("mode", ["RND", "TRN", "RND_CONV"])
def test_rounding_is_exact_beyond_the_float32_mantissa(mode):
    # |x * 2**f| >= 2**23: floor(y + 0.5) in float32 rounds 2**23 + 1 up to 2**23 + 2
    x = np.array([2.0**23 + 1, -(2.0**23 + 1), 2.0**24 - 1, 3.0 * 2**22 + 1], dtype=np.float32) / 2.0**20
    got = ops.convert_to_numpy(quantize(ops.convert_to_tensor(x), 1, 10, 20, mode, "SAT"))
    np.testing.assert_array_equal(got, reference_quantize(x, 1, 10, 20, mode, "SAT"))


def _pool3_model():
    x = L.Input((3, 2))
    h = L.AveragePooling1D(3)(x)
    return keras.Model(x, L.Dense(2)(L.Flatten()(h)))


def test_average_pooling_by_three_is_exact_and_rounded_before_the_next_multiply():
    rng = np.random.default_rng(0)
    q = hr.quantize(_pool3_model(), beta=1e-6)
    # the quotient is rounded by a quantizer before the Dense multiplies it
    kinds = [type(layer).__name__ for layer in q.layers]
    assert kinds.index("HQuantize", 2) == kinds.index("PAveragePooling1D") + 1
    x = rng.normal(0, 1, (200, 3, 2)).astype("float32")
    _fit(q, x, rng.normal(0, 1, (200, 2)))
    hr.trace_minmax(q, x)
    proxy = hr.to_proxy_model(q)
    _same(q.predict(x, verbose=0), predict_float64(proxy, x))
    # the Dense's EBOPs count the rounded quotient's bits, not ~54 fractional bits
    dense = next(layer for layer in q.layers if isinstance(layer, HDense))
    k, i, f = dense.input_kif_maps(exact=True)[0]
    assert float(ops.max(k + i + f)) < 20


def test_pooling_layers_count_the_fractional_bits_of_the_reciprocal():
    layer = PAveragePooling1D(3)
    maps = [tuple(ops.zeros((1, 3, 1)) + v for v in (1.0, 2.0, 4.0))]
    _, _, f = layer.transform_kif(maps, True)
    assert float(ops.max(f)) == 4 + 54  # float64 1/3 has 54 fractional bits, as hls4ml counts them


def test_frozen_batchnorm_stays_frozen():
    rng = np.random.default_rng(1)
    x = L.Input((4,))
    bn = L.BatchNormalization()
    m = keras.Model(x, bn(L.Dense(3)(x)))
    m.compile("adam", "mse")
    m.fit(rng.normal(2, 3, (64, 4)), rng.normal(0, 1, (64, 3)), epochs=2, verbose=0)
    bn.trainable = False
    q = hr.quantize(m)
    layer = next(layer for layer in q.layers if hasattr(layer, "bn_gamma"))
    assert not layer.bn_gamma.trainable and not layer.bn_beta.trainable
    before = [ops.convert_to_numpy(v).copy() for v in (layer.moving_mean, layer.moving_variance, layer.bn_gamma)]
    xs = rng.normal(-5, 10, (64, 4)).astype("float32")
    _fit(q, xs, rng.normal(0, 1, (64, 3)))
    after = [ops.convert_to_numpy(v) for v in (layer.moving_mean, layer.moving_variance, layer.bn_gamma)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # training uses the moving statistics: the folded kernel is the same in both modes
    k_train, _ = layer.folded_kernel_bias(ops.convert_to_tensor(xs), training=True)
    k_infer, _ = layer.folded_kernel_bias()
    np.testing.assert_array_equal(ops.convert_to_numpy(k_train), ops.convert_to_numpy(k_infer))


def test_h_layers_in_a_subclassed_model_refuse_to_train_without_ebops():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.inp = HQuantize()
            self.dense = HDense(2, beta=1e-3)

        def call(self, x, training=None):
            return self.dense(self.inp(x, training=training), training=training)

    model = Sub()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="subclassed keras.Model"):
        model.fit(np.ones((8, 3), "float32"), np.ones((8, 2), "float32"), verbose=0)


def test_depthwise_channel_granularity_keeps_one_bitwidth_per_output_channel():
    layer = HDepthwiseConv2D(3, depth_multiplier=2, kq_conf={"granularity": "channel"})
    layer.build((None, 6, 6, 3))
    assert layer.kq.bw_shape == (1, 1, 3, 2)


def test_training_ranges_are_not_a_calibration():
    rng = np.random.default_rng(2)
    q = hr.quantize(keras.Sequential([L.Input((4,)), L.Dense(3, activation="relu"), L.Dense(2)]))
    x, y = rng.normal(0, 1, (64, 4)).astype("float32"), rng.normal(0, 1, (64, 2))
    q.compile("adam", "mse")
    q.fit(x, y, epochs=1, verbose=0)  # no ResetMinMax: the last epoch's ranges stay
    with pytest.raises(NotTracedError, match="trace_minmax"):
        hr.to_proxy_model(q)
    hr.trace_minmax(q, x)
    hr.to_proxy_model(q)
    q.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(NotTracedError):
        hr.to_proxy_model(q)


def test_a_saved_uncalibrated_member_does_not_export(tmp_path):
    rng = np.random.default_rng(3)
    q = hr.quantize(keras.Sequential([L.Input((4,)), L.Dense(2)]))
    q.compile("adam", "mse")
    q.fit(rng.normal(0, 1, (32, 4)), rng.normal(0, 1, (32, 2)), epochs=1, verbose=0)
    q.save(tmp_path / "member.keras")
    loaded = keras.models.load_model(tmp_path / "member.keras")
    with pytest.raises(NotTracedError):
        hr.to_proxy_model(loaded)
    hr.trace_minmax(loaded, rng.normal(0, 1, (32, 4)))
    loaded.save(tmp_path / "traced.keras")
    assert keras.models.load_model(tmp_path / "traced.keras").layers[-1].paq.is_traced()


@pytest.mark.parametrize("aggressive", [True, False])
def test_traced_model_overflows_like_its_proxy(aggressive):
    rng = np.random.default_rng(4)
    q = hr.quantize(keras.Sequential([L.Input((5,)), L.Dense(4, activation="tanh"), L.Dense(3)]), beta=1e-6)
    x = rng.normal(0, 1, (128, 5)).astype("float32")
    _fit(q, x, rng.normal(0, 1, (128, 3)))
    hr.trace_minmax(q, x, aggressive=aggressive)
    proxy = hr.to_proxy_model(q)
    far = (x * rng.uniform(1, 30, (128, 1))).astype("float32")
    y_q = q.predict(far, verbose=0)
    _same(y_q, predict_float64(proxy, far))
    # the other overflow mode at export: a warning, and the model is left as it is
    with pytest.warns(UserWarning, match=f"trace_minmax\\(model, data, aggressive={not aggressive}\\)"):
        other = hr.to_proxy_model(q, aggressive=not aggressive)
    _same(y_q, q.predict(far, verbose=0))
    assert not np.array_equal(y_q, predict_float64(other, far))
    hr.trace_minmax(q, x, aggressive=not aggressive)
    _same(q.predict(far, verbose=0), predict_float64(other, far))


def test_a_failed_trace_keeps_the_earlier_calibration():
    rng = np.random.default_rng(5)
    q = hr.quantize(keras.Sequential([L.Input((8,)), L.Dense(2)]))
    x = rng.normal(0, 1, (32, 8)).astype("float32")
    hr.trace_minmax(q, x)
    with pytest.raises(ValueError, match=r"input 0 expects samples of shape \(8,\), got \(5,\)"):
        hr.trace_minmax(q, x[:, :5])
    hr.to_proxy_model(q)  # still calibrated


@pytest.mark.parametrize(
    "family, rounding, aggressive, granularity",
    [
        ("mlp_lut", "RND_CONV", False, "element"),
        ("two_inputs_two_outputs", "TRN", False, "channel"),
        ("depthwise_bn_gap", "RND", True, "channel"),
        ("nested", "RND", False, "tensor"),
    ],
)
def test_fuzz_slice_hgq_model_equals_proxy(family, rounding, aggressive, granularity):
    record = fuzz_exactness.run_case(family, 11, rounding, aggressive, granularity, 400, compile_hls=False,
                                     n_train=128, epochs=1)
    assert record["hgq_vs_proxy"] == 0, record


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, rounding, aggressive, granularity",
    [("mlp_lut", "RND", False, "element"), ("pool2d_mix", "RND_CONV", False, "channel")],
)
def test_fuzz_slice_firmware_equals_proxy(family, rounding, aggressive, granularity):
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("hls4ml's C simulation needs g++")
    record = fuzz_exactness.run_case(family, 12, rounding, aggressive, granularity, 500, n_train=128, epochs=1)
    assert record["compiled"], record
    assert record["proxy_vs_hls"] == 0 and record["hgq_vs_proxy"] == 0, record
    assert math.isfinite(record["seconds"])


def test_trace_warns_where_float32_sums_can_round():
    rng = np.random.default_rng(6)
    wide = {"defaults": {"kernel": {"init_bw": 16}, "activation": {"init_bw": 16}}}
    q = hr.quantize(keras.Sequential([L.Input((64,)), L.Dense(2)]), wide)
    x = rng.normal(0, 100, (64, 64)).astype("float32")
    with pytest.warns(UserWarning, match="float32's 24 significant bits"):
        hr.trace_minmax(q, x)
    narrow = hr.quantize(keras.Sequential([L.Input((4,)), L.Dense(2)]), {"defaults": {"activation": {"init_bw": 3}}})
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hr.trace_minmax(narrow, x[:, :4] / 100)
    assert not [w for w in caught if "float32" in str(w.message)]


def test_depth_multiplier_above_one_is_refused_by_quantize_not_at_export():
    x = L.Input((6, 6, 2))
    m = keras.Model(x, L.DepthwiseConv2D(3, depth_multiplier=2)(x))
    with pytest.raises(Exception, match="depth_multiplier=2"):
        hr.quantize(m)
    assert "depth_multiplier=2" in str(hr.explain(m))


@pytest.mark.parametrize("aggressive", [True, False])
def test_table_input_cast_keeps_the_modes_of_the_quantizer_before_it(aggressive):
    # hls4ml fuses consecutive quantizers into one type with the last one's rounding and overflow
    rng = np.random.default_rng(7)
    conf = {"defaults": {"activation": {"rounding": "RND_CONV"}}}
    q = hr.quantize(keras.Sequential([L.Input((4,)), L.Dense(1, activation="sigmoid")]), conf)
    hr.trace_minmax(q, rng.normal(0, 1, (64, 4)), aggressive=aggressive)
    proxy = hr.to_proxy_model(q)
    quantizers = [layer for layer in proxy.layers if type(layer).__name__ == "FixedPointQuantizer"]
    before, table_input = quantizers[1], quantizers[2]
    assert table_input.name.endswith("_lut_in")
    assert (table_input.RND, table_input.SAT) == (before.RND, before.SAT) == ("RND_CONV", "WRAP" if aggressive else "SAT")


def test_explain_says_before_anything_is_built_that_log_softmax_does_not_export_and_softmax_does():
    x = L.Input((4,))
    h = L.Dense(3)(x)
    plan = hr.explain(keras.Model(x, [L.Activation("log_softmax", name="logsm")(h), L.Softmax(name="sm")(h)]))
    assert "does not export" in plan["logsm"].exports and plan["sm"].exports == "yes"


@pytest.mark.parametrize("aggressive", [True, False])
def test_huge_inputs_overflow_like_the_proxy_instead_of_nan(aggressive):
    rng = np.random.default_rng(8)
    q = hr.quantize(keras.Sequential([L.Input((3,)), L.Dense(2)]))
    hr.trace_minmax(q, rng.normal(0, 1, (64, 3)), aggressive=aggressive)
    x = np.array([[1e38, -1e38, 3e37], [-2.5e38, 1.0, 7e30]], dtype="float32")
    y = q.predict(x, verbose=0)
    assert np.all(np.isfinite(y))
    _same(y, predict_float64(hr.to_proxy_model(q), x))


def test_wrap_keeps_the_low_bits_of_small_negative_values_in_float32():
    # a floor-mod adds the period to a small negative value, and float32 then rounds its low bits away
    x = ops.convert_to_tensor(np.array([-(0.0625 + 2.0**-28), -(2.0**-30), 3.0 + 2.0**-20], dtype=np.float32))
    got = ops.convert_to_numpy(quantize(x, 1, 1, 3, "RND", "WRAP"))
    np.testing.assert_array_equal(got, reference_quantize(ops.convert_to_numpy(x), 1, 1, 3, "RND", "WRAP"))
    q = hr.quantize(keras.Sequential([L.Input((3,)), L.Dense(2)]))
    hr.trace_minmax(q, np.random.default_rng(9).normal(0, 1, (64, 3)))
    inner = q.layers[0].paq
    k, i, f = (ops.convert_to_numpy(v) for v in (inner.fw_k, inner.fw_i, inner.fw_f))
    step = 2.0 ** -f[0, 0]
    xs = np.array([[-(step / 2 + 2.0**-28), -(2.0**-30), -(step / 2)]], dtype=np.float32)
    _same(q.predict(xs, verbose=0), predict_float64(hr.to_proxy_model(q), xs))


def test_compare_samples_counts_rows_and_refuses_other_shapes():
    from hgq_rewrite.proxy.bit_exact import compare_samples

    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    b = a.copy()
    b[1, 1] = 4.5
    bad, diff = compare_samples(a, b)
    assert bad.tolist() == [1] and diff == 0.5
    with pytest.raises(RuntimeError, match="Output shapes differ"):
        compare_samples(a, b[:2])

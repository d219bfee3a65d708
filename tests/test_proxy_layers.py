"""Fast tests of the proxy layers (no hls4ml compile)."""

import numpy as np
import pytest
import keras

from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT, build_table, lut_inputs
from hgq_rewrite.quantizers.fixed_point import quantize
from proxy_harness import F64, q, random_kif, reference_quantize

MODES = [(r, s) for r in ("RND", "TRN", "RND_CONV") for s in ("WRAP", "SAT", "SAT_SYM")]


@pytest.mark.parametrize("round_mode,overflow_mode", MODES)
def test_quantize_matches_exact_reference(round_mode, overflow_mode):
    """quantizers.fixed_point.quantize vs the exact reference; the only known difference is SAT_SYM on 1-bit
    signed elements (ap_fixed saturates like SAT there), which FixedPointQuantizer handles itself."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 8, (600,))
    x[:200] = np.round(x[:200] * 4) / 8  # many exact ties
    k, i, f = random_kif(rng, x.shape, i=(-3, 5), f=(-3, 6))
    if overflow_mode == "SAT_SYM":
        f = np.where((k == 1) & (k + i + f == 1), f + 1, f)
    got = keras.ops.convert_to_numpy(quantize(keras.ops.convert_to_tensor(x, F64), k, i, f, round_mode, overflow_mode))
    np.testing.assert_array_equal(got, reference_quantize(x, k, i, f, round_mode, overflow_mode))


@pytest.mark.parametrize("round_mode,overflow_mode", MODES)
def test_fixed_point_quantizer_layer_matches_reference(round_mode, overflow_mode):
    rng = np.random.default_rng(2)
    k, i, f = random_kif(rng, (3, 4), i=(-2, 4), f=(-2, 5))
    layer = q((k, i, f), RND=round_mode, SAT=overflow_mode)
    x = rng.normal(0, 10, (50, 3, 4))
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, reference_quantize(x, k[None], i[None], f[None], round_mode, overflow_mode))


@pytest.mark.parametrize("round_mode", ["RND", "TRN"])
def test_one_bit_signed_sat_sym_saturates_like_ap_fixed(round_mode):
    # ap_fixed<1,0,*,AP_SAT_SYM>: -3 -> -0.5, -0.5 -> -0.5, 3 -> 0 (values from the hls4ml ap_types headers)
    layer = FixedPointQuantizer(keep_negative=[[1, 1]], bits=[[1, 3]], integers=[[0, 1]], RND=round_mode, SAT="SAT_SYM")
    y = keras.ops.convert_to_numpy(layer(np.array([[-3.0, -3.0], [-0.5, -1.0], [3.0, 3.0]])))
    np.testing.assert_array_equal(y, [[-0.5, -0.75], [-0.5, -0.75], [0.0, 0.75]])


def test_masks_are_int16_clamped_and_zeroed():
    layer = FixedPointQuantizer(keep_negative=[[1, 1, 0]], bits=[[4, -2, 0]], integers=[[2, 3, 1]])
    layer.build((None, 3))
    k, b, i = layer.mask_kbi
    assert all(m.dtype == np.int16 for m in (k, b, i))
    assert all(v.dtype == "int16" for v in layer.weights)
    np.testing.assert_array_equal(b, [[4, 0, 0]])
    np.testing.assert_array_equal(k, [[1, 0, 0]])
    np.testing.assert_array_equal(i, [[2, 0, 0]])
    y = keras.ops.convert_to_numpy(layer(np.array([[1.3, 5.0, -7.0]])))
    np.testing.assert_array_equal(y, [[1.25, 0.0, 0.0]])
    assert not layer.trainable and not layer.trainable_weights


def test_homogeneous_mask_is_one_element_and_broadcasts():
    layer = FixedPointQuantizer.from_kif(1, 2, 3)
    y = layer(np.full((2, 4, 5), 1.06))
    assert layer.keep_negative.shape == (1,)
    assert layer.homogeneous
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), np.full((2, 4, 5), 1.0))
    assert layer.kif == (np.array([1]), np.array([2]), np.array([3]))


def test_broadcastable_mask_is_expanded_to_feature_shape():
    layer = FixedPointQuantizer.from_kif(np.ones((1, 1, 3)), np.array([[[1, 2, 3]]]), 2)
    layer(np.zeros((1, 4, 3)))
    assert layer.bits.shape == (1, 4, 3)


def test_float32_input_is_computed_in_float64():
    layer = FixedPointQuantizer.from_kif(1, 30, 20)  # 51 bits: float32 cannot hold the result
    x = np.array([[2.0**29 + 2.0**-20]])
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.dtype == np.float64 and y[0, 0] == 2.0**29 + 2.0**-20


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(keep_negative=1, bits=4, integers=2, RND="ROUND"), "rounding mode"),
        (dict(keep_negative=1, bits=4, integers=2, SAT="CLIP"), "overflow mode"),
        (dict(keep_negative=1, bits=4), "all of keep_negative"),
        (dict(), "needs either"),
        (dict(keep_negative=2, bits=4, integers=2), "0 or 1"),
        (dict(keep_negative=1, bits=4.5, integers=2), "integers"),
        (dict(keep_negative=1, bits=70000, integers=2), "int16"),
    ],
)
def test_fixed_point_quantizer_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FixedPointQuantizer(**kwargs)


def test_mask_shape_must_match_input():
    layer = FixedPointQuantizer.from_kif(np.ones((1, 3)), 2, 2)
    with pytest.raises(ValueError, match="does not broadcast"):
        layer(np.zeros((1, 4)))


def test_constructor_does_not_modify_user_arrays():
    bits = np.array([[3, -1]])
    k = np.array([[1, 1]])
    FixedPointQuantizer(keep_negative=k, bits=bits, integers=np.array([[1, 1]]))
    np.testing.assert_array_equal(bits, [[3, -1]])
    np.testing.assert_array_equal(k, [[1, 1]])


def _small_proxy():
    rng = np.random.default_rng(0)
    inp = keras.Input((6,), dtype=F64)
    x = q((1, 2, 3), SAT="SAT", name="q_in")(inp)
    dense = keras.layers.Dense(4, dtype=F64, name="dense")
    x = dense(x)
    x = q(random_kif(rng, (4,)), overrides={"layers": {"dense": {"parallelization_factor": 2}}}, name="q_dense")(x)
    x = q((1, 2, 3), SAT="SAT", name="q_lut")(x)
    x = UnaryLUT.from_function("tanh", (1, 2, 3), (1, 0, 5), name="lut")(x)
    model = keras.Model(inp, x, name="small_proxy")
    dense.set_weights([np.round(rng.normal(0, 1, (6, 4)) * 4) / 4, np.zeros(4)])
    return model


def test_proxy_save_and_load_without_custom_objects(tmp_path):
    model = _small_proxy()
    x = np.random.default_rng(3).normal(0, 3, (64, 6))
    path = tmp_path / "proxy.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    lq = loaded.get_layer("q_dense")
    assert isinstance(lq, FixedPointQuantizer)
    assert lq.overrides == {"layers": {"dense": {"parallelization_factor": 2}}}
    for a, b in zip(model.get_layer("q_dense").mask_kbi, lq.mask_kbi):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_layer("lut").kif_in == (1, 2, 3)
    assert loaded.get_layer("q_in").keep_negative.shape == (1,)


def test_lut_inputs_are_in_bit_pattern_order():
    np.testing.assert_array_equal(lut_inputs((1, 1, 1)), [0, 0.5, 1, 1.5, -2, -1.5, -1, -0.5])
    np.testing.assert_array_equal(lut_inputs((0, 1, 1)), [0, 0.5, 1, 1.5])


@pytest.mark.parametrize("fn", ["tanh", "sigmoid", np.sin])
def test_unary_lut_equals_quantized_function(fn):
    kif_in, kif_out = (1, 2, 4), (1, 0, 7)
    lut = UnaryLUT.from_function(fn, kif_in, kif_out)
    x = np.sort(lut_inputs(kif_in))[None, :]
    y = keras.ops.convert_to_numpy(lut(x))[0]
    func = keras.activations.get(fn) if isinstance(fn, str) else fn
    expected = quantize(keras.ops.cast(func(keras.ops.convert_to_tensor(x[0], F64)), F64), *kif_out, "RND", "SAT")
    np.testing.assert_array_equal(y, keras.ops.convert_to_numpy(expected))


def test_unary_lut_from_callable_table():
    table = build_table(lambda v: v * v, (0, 2, 1), (0, 4, 2))
    np.testing.assert_array_equal(table, (np.arange(8) / 2.0) ** 2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(table=np.zeros(7), kif_in=(1, 1, 1), kif_out=(1, 1, 1)), "8 codes"),
        (dict(table=np.full(8, 0.3), kif_in=(1, 1, 1), kif_out=(1, 1, 1)), "grid"),
        (dict(table=np.zeros(8), kif_in=(2, 1, 0), kif_out=(1, 1, 1)), "k must be 0 or 1"),
        (dict(table=np.zeros(8), kif_in=(1, 1, 1)), "kif_in and kif_out"),
        (dict(table=None, kif_in=(1, 20, 10), kif_out=(1, 1, 1)), "too large"),
    ],
)
def test_unary_lut_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UnaryLUT(**kwargs)


def test_unary_lut_rejects_non_elementwise_function():
    with pytest.raises(ValueError, match="element-wise"):
        build_table(lambda v: keras.ops.sum(v, keepdims=True), (1, 1, 1), (1, 1, 1))

"""The trainable heterogeneous quantizer: forward, gradients, granularity, ranges."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from hgq_rewrite.quantizers import HQuantizer, NotTracedError, set_default_kq_conf, significant_bits


def make(role="activation", shape=(None, 4, 3), **conf):
    q = HQuantizer(conf, role)
    q.build(shape)
    return q


def test_forward_rounds_half_up_on_the_bit_grid():
    q = make(init_bw=2)
    x = np.array([[[0.125, 0.375, -0.125]] * 4], "float32")  # ties at f=2
    out = ops.convert_to_numpy(q(x, training=False))
    np.testing.assert_array_equal(out[0, 0], [0.25, 0.5, 0.0])


def test_gradients_straight_through_and_bit_surrogate():
    q = make(init_bw=1, granularity="element")
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 4, 3)), "float32")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = q(x, training=True)
        total = ops.sum(y)
    gx = tape.gradient(total, x)
    gf = tape.gradient(total, q.fbw)
    np.testing.assert_allclose(gx.numpy(), np.ones_like(x.numpy()))
    xq = np.floor(x.numpy() * 2 + 0.5) / 2
    expected = -math.log(2) * (xq - x.numpy()).sum(axis=0, keepdims=True) + q.config["l1"]  # shared over the batch
    np.testing.assert_allclose(gf.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), xq)  # training forward value is exactly x_q


@pytest.mark.parametrize(
    "granularity, bw_shape",
    [("element", (1, 4, 3)), ("channel", (1, 1, 3)), ("tensor", (1, 1, 1)), ((1,), (1, 1, 3))],
)
def test_activation_granularity_shapes(granularity, bw_shape):
    assert make(granularity=granularity).bw_shape == bw_shape


@pytest.mark.parametrize(
    "granularity, bw_shape", [("element", (4, 3)), ("channel", (1, 3)), ("tensor", (1, 1)), ((1,), (4, 1))]
)
def test_kernel_granularity_shapes_and_gradient_sums_over_shared(granularity, bw_shape):
    q = make("kernel", (4, 3), granularity=granularity, init_bw=1)
    assert q.bw_shape == bw_shape
    w = tf.constant(np.random.default_rng(2).normal(size=(4, 3)), "float32")
    with tf.GradientTape() as tape:
        total = ops.sum(q(w, training=True))
    g = tape.gradient(total, q.fbw).numpy()
    f = np.round(q.fbw.numpy())
    delta = np.floor(w.numpy() * 2.0**f + 0.5) / 2.0**f - w.numpy()
    axes = tuple(a for a in range(2) if bw_shape[a] == 1)
    expected = -math.log(2) * delta.sum(axis=axes, keepdims=True) + q.config["l1"]
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


def test_minmax_recorded_in_training_only_and_reset():
    q = make(init_bw=3)
    x = np.random.default_rng(3).normal(size=(8, 4, 3)).astype("float32")
    q(x, training=False)
    assert not q.is_traced()
    q(x, training=True)
    xq = np.floor(x * 8 + 0.5) / 8
    np.testing.assert_array_equal(ops.convert_to_numpy(q.min)[0], xq.min(axis=0))
    np.testing.assert_array_equal(ops.convert_to_numpy(q.max)[0], xq.max(axis=0))
    q.reset_minmax()
    assert not q.is_traced()
    with pytest.raises(NotTracedError, match="trace_minmax"):
        q.activation_kif(exact=True)


def test_exact_integer_bits_cover_the_range():
    q = make(shape=(None, 3), init_bw=2)
    q.set_range([[-1.0, 0.0, 0.0]], [[3.75, 4.0, 0.0]])
    k, i, f = (ops.convert_to_numpy(v) for v in q.activation_kif(exact=True))
    np.testing.assert_array_equal(k[0], [1, 0, 0])
    np.testing.assert_array_equal(i[0], [2, 3, -2])  # 3.75 fits <1,2,2>; 4.0 needs 3 int bits; 0 -> 0 bits
    np.testing.assert_array_equal((k + i + f)[0], [5, 5, 0])


def test_training_estimate_of_integer_bits_and_sign_from_the_range():
    """The estimate behind the EBOPs penalty: sign bit if the range goes below 0, integer bits of the
    larger magnitude; an element with no recorded range counts like a range of zeros."""
    q = make(shape=(None, 5), init_bw=2)
    q.set_range([[-3.0, 0.25, -6.0, 0.0, np.inf]], [[0.5, 5.0, -0.5, 0.0, -np.inf]])
    k, i, f = (ops.convert_to_numpy(v) for v in q.activation_kif(exact=False))
    np.testing.assert_array_equal(k[0], [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(i[0], [2, 3, 3, -59, -59])  # 0 and no range: log2 of the 2**-60 floor, + 1
    np.testing.assert_array_equal(f[0], [2, 2, 2, 2, 2])


def test_kernel_bits_adapt_to_weight_magnitude():
    set_default_kq_conf(init_bw=3)
    q = make("kernel", (3,))
    q.adapt_to(np.array([1.5, 0.1, 0.0], "float32"))
    np.testing.assert_array_equal(q.fbw.numpy(), [2, 6, 3])  # |1.5| has 1 int bit; 0.1 has -3


def test_significant_bits_span():
    np.testing.assert_array_equal(significant_bits([0.5, 0.75, 4.0, 0.0, -3.0, 0.625]), [1, 2, 1, 0, 2, 3])


def test_unknown_shape_for_heterogeneous_quantizer_is_a_clear_error():
    q = HQuantizer({"granularity": "element"}, "activation", owner="my_layer")
    with pytest.raises(ValueError, match="my_layer.*known shape"):
        q.build((None, None, 3))
    HQuantizer({"granularity": "tensor"}, "activation").build((None, None, 3))  # fine per tensor


def test_bad_config_fields_are_named():
    with pytest.raises(ValueError, match="unknown field.*init_bits"):
        HQuantizer({"init_bits": 3}, "kernel", owner="d1")
    with pytest.raises(ValueError, match="granularity 'row'"):
        HQuantizer({"granularity": "row"}, "kernel")
    with pytest.raises(ValueError, match="rounding"):
        HQuantizer({"rounding": "UP"}, "kernel")


@pytest.mark.parametrize("role", ["activation", "kernel"])
def test_l1_adds_to_every_bit_gradient(role):
    """``l1`` is the gradient of ``l1 * sum(f)``: added to each bitwidth's gradient in training (no loss term)."""
    q = make(role, shape=(3, 2), init_bw=30, l1=0.5)
    x = tf.constant(np.random.default_rng(1).normal(size=(3, 2)), "float32")
    with tf.GradientTape() as tape:
        total = 0.0 * ops.sum(q(x, training=True))
    np.testing.assert_array_equal(tape.gradient(total, q.fbw).numpy(), np.full(q.bw_shape, 0.5))
    assert not q.losses


def test_bits_clip():
    q = make(shape=(None, 2), init_bw=30, bw_clip=(-4, 8))
    q.fbw.assign(q.fbw.constraint(q.fbw))
    np.testing.assert_array_equal(q.fbw.numpy(), [[8, 8]])


def test_defaults_change_globally_and_per_layer():
    set_default_kq_conf(init_bw=7)
    layer = keras.layers.Layer()  # noqa: F841 - defaults are read when a quantizer is created
    assert HQuantizer(None, "kernel").config["init_bw"] == 7
    assert HQuantizer({"init_bw": 2}, "kernel").config["init_bw"] == 2


def _bit_gradient(q, w):
    """Value of the kernel-bits estimate and its gradient with respect to the fractional bits."""
    with tf.GradientTape() as tape:
        bits = q.kernel_bits(q(w, training=False), values=w)
        total = ops.sum(bits)
    return bits.numpy(), tape.gradient(total, q.fbw).numpy()


def test_pruned_weights_keep_their_bit_gradient_within_the_prune_margin():
    # 0.3 has integer bits -1: f = 1 rounds it to 0.5 (1 bit), f = 0 rounds it to 0 (pruned)
    w = tf.constant([0.3, 0.3, 0.3, 0.3], "float32")
    q = make("kernel", (4,), prune_margin=2)
    q.fbw.assign([1.0, 0.0, -1.0, -2.0])
    bits, grad = _bit_gradient(q, w)
    np.testing.assert_array_equal(bits, [1, 0, 0, 0])  # the value stays the exact bit count
    np.testing.assert_array_equal(grad, [1, 1, 0, 0])  # pushed on while -1 + f + 2 > 0
    q0 = make("kernel", (4,), prune_margin=0)
    q0.fbw.assign([1.0, 0.0, -1.0, -2.0])
    _, grad0 = _bit_gradient(q0, w)
    np.testing.assert_array_equal(grad0, [1, 0, 0, 0])  # margin 0: the push stops where the weight rounds to 0


def test_prune_margin_is_checked_and_kernel_only():
    with pytest.raises(ValueError, match="prune_margin must be a finite number >= 0"):
        HQuantizer({"prune_margin": -1}, "kernel", owner="d1")
    with pytest.raises(ValueError, match="'prune_margin' applies to kernel quantizers only"):
        HQuantizer({"prune_margin": 2}, "activation", owner="d1")
    assert HQuantizer(None, "kernel").config["prune_margin"] == 3


def test_kernel_bits_adapt_exactly_just_below_a_power_of_two():
    """7.9999995 has 3 integer bits (its float32 log2 rounds to 3.0, which would say 4)."""
    set_default_kq_conf(init_bw=6)
    q = make("kernel", (2,))
    q.adapt_to(np.array([np.nextafter(np.float32(8), np.float32(0)), np.float32(8)], "float32"))
    np.testing.assert_array_equal(q.fbw.numpy(), [3, 2])


def _traced_range_quantizer(lo, hi, f):
    q = HQuantizer({"granularity": "element"}, "activation", owner="t")
    q.build((None, len(lo)))
    q.fbw.assign(np.full(q.fbw.shape, f, "float32"))
    q.set_range(np.asarray(lo, "float32"), np.asarray(hi, "float32"))
    return q


def test_exact_range_format_holds_a_power_of_two_bound_at_many_fractional_bits():
    """[0, 16] at f=20 needs 5 integer bits (ap_ufixed<24,4> stops at 16 - 2**-20); float32's log2 of 16 + 2**-20
    rounds to 4.0, which gave 4 and wrapped 16 to 0 in the firmware."""
    below_minus_16 = np.nextafter(np.float32(-16), np.float32(-32))
    q = _traced_range_quantizer([0, 0, -16, below_minus_16], [16, 8, 0, 0], 23)
    k, i, f = (ops.convert_to_numpy(v)[0] for v in q.range_kif(exact=True))
    np.testing.assert_array_equal(k, [0, 0, 1, 1])
    np.testing.assert_array_equal(i, [5, 4, 4, 5])
    q.set_firmware_format((k, i, f), saturate=False)
    bounds = np.array([[16, 8, -16, below_minus_16]], "float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(q.firmware_quantize(ops.convert_to_tensor(bounds))), bounds)


def test_exact_range_format_is_the_smallest_that_holds_the_range():
    """Against exact rational arithmetic, ranges at f from -4 to 30 (on the grid, but where float32 rounds them):
    the bounds fit, one integer bit less would not (or i is already the floor -f - k)."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    n = 400
    f = rng.integers(-4, 31, n).astype("float32")
    e = rng.integers(-8, 12, n)
    mag = [np.float32(np.ldexp(m, int(x))) for m, x in zip(rng.uniform(0.5, 1.0, n), e)]
    hi = np.ldexp(np.round(np.ldexp(np.asarray(mag, "float64"), f.astype(int))), -f.astype(int))  # on the grid
    hi[::7] = np.ldexp(1.0, e[::7])  # powers of two exactly
    lo = -hi[::-1].copy()
    lo[::3] = 0.0
    q = _traced_range_quantizer(lo.astype("float32"), hi.astype("float32"), 0)
    q.fbw.assign(f.reshape(q.fbw.shape))
    k, i, _ = (ops.convert_to_numpy(v)[0].astype(int) for v in q.range_kif(exact=True))

    def fits(kk, ii, ff, a, b):
        step = Fraction(2) ** -int(ff)
        top = Fraction(2) ** int(ii)
        return Fraction(float(b)) <= top - step and Fraction(float(a)) >= -kk * top

    for j in range(n):
        a, b = float(np.float32(lo[j])), float(np.float32(hi[j]))
        assert fits(k[j], i[j], f[j], a, b), (j, lo[j], hi[j], f[j], i[j])
        assert i[j] == -f[j] - k[j] or not fits(k[j], i[j] - 1, f[j], a, b), (j, lo[j], hi[j], f[j], i[j])

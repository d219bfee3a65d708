"""JAX backend specifics: gradients through ``stateless_call`` (the JAX trainer's path), state updates
returned by it, ``add_loss`` collection, and float64 proxies. Skipped unless ``KERAS_BACKEND=jax``.

(tests/test_quantizer.py checks the same gradients with ``tf.GradientTape``; the JAX step of CI
deselects those and runs these.)
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX backend only")

from hgq_rewrite.layers import HDense, HDenseBatchNorm, HQuantize  # noqa: E402
from hgq_rewrite.quantizers import HQuantizer  # noqa: E402


def _grads(layer, x, training=True):
    """d sum(layer(x)) / d(x, trainable variables), and the non-trainable values after the call."""
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def total(x, trainable):
        y, new_state = layer.stateless_call(trainable, non_trainable, x, training=training)
        return ops.sum(y), (y, new_state)

    (gx, gw), (y, state) = jax.grad(total, argnums=(0, 1), has_aux=True)(x, trainable)
    return np.asarray(gx), [np.asarray(g) for g in gw], np.asarray(y), [np.asarray(s) for s in state]


def test_gradients_straight_through_and_bit_surrogate():
    q = HQuantizer({"init_bw": 1}, "activation")
    q.build((None, 4, 3))
    x = np.random.default_rng(0).normal(size=(5, 4, 3)).astype("float32")
    gx, (gf,), y, state = _grads(q, x)
    named = dict(zip([v.name for v in q.non_trainable_variables], state))
    lo, hi, calibrated = named["minmax"]
    xq = np.floor(x * 2 + 0.5) / 2
    np.testing.assert_array_equal(gx, np.ones_like(x))
    np.testing.assert_allclose(gf, -math.log(2) * (xq - x).sum(axis=0, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, xq)
    # the range recorded in the call comes back as new state (JAX training is stateless)
    np.testing.assert_array_equal(lo[0], xq.min(axis=0))
    np.testing.assert_array_equal(hi[0], xq.max(axis=0))
    assert np.all(calibrated == 0)  # ranges from training are not a calibration


@pytest.mark.parametrize("granularity, bw_shape", [("element", (4, 3)), ("channel", (1, 3)), ((1,), (4, 1))])
def test_kernel_gradient_sums_over_shared_axes(granularity, bw_shape):
    import jax

    q = HQuantizer({"init_bw": 1, "granularity": granularity}, "kernel")
    q.build((4, 3))
    w = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    (fbw,) = [v.value for v in q.trainable_variables]

    def total(fbw):
        y, _ = q.stateless_call([fbw], [], w, training=True)
        return ops.sum(y)

    g = np.asarray(jax.grad(total)(fbw))
    f = np.round(np.asarray(q.fbw))
    delta = np.floor(w * 2.0**f + 0.5) / 2.0**f - w
    axes = tuple(a for a in range(2) if bw_shape[a] == 1)
    np.testing.assert_allclose(g, -math.log(2) * delta.sum(axis=axes, keepdims=True), rtol=1e-5, atol=1e-6)


def test_ebops_loss_and_state_come_back_from_a_jitted_train_step():
    import jax

    inp = keras.Input((6,))
    x = HQuantize(name="q")(inp)
    x = HDenseBatchNorm(5, activation="relu", beta=1e-3, name="d1")(x)
    model = keras.Model(inp, HDense(2, beta=1e-3, name="d2")(x))
    data = np.random.default_rng(1).normal(size=(32, 6)).astype("float32")
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def step(trainable, non_trainable, x):
        y, state, losses = model.stateless_call(trainable, non_trainable, x, training=True, return_losses=True)
        return y, state, losses

    _, state, losses = step(trainable, non_trainable, data)
    new = {v.path: np.asarray(s) for v, s in zip(model.non_trainable_variables, state)}
    assert new["d1/beta_ebops"][1] > 0 and new["d2/beta_ebops"][1] > 0
    # one beta * EBOPs term per H-layer with multiplies (the others are the bit-count L1 terms)
    values = np.asarray([float(v) for v in losses])
    for name in ("d1", "d2"):
        assert np.sum(np.isclose(values, 1e-3 * new[f"{name}/beta_ebops"][1], rtol=1e-6)) == 1, (name, values)
    assert np.all(np.isfinite(new["d1/d1_paq/minmax"][0])) and np.any(new["d1/moving_mean"] != 0)


def test_float64_proxy_computes_in_float64():
    """With jax_enable_x64 on (tests/conftest.py), proxies compute in float64, exact beyond 24 bits."""
    from hgq_rewrite.proxy import FixedPointQuantizer

    layer = FixedPointQuantizer.from_kif(1, 30, 20)
    x = np.array([[2.0**29 + 2.0**-20, -(2.0**28) - 3 * 2.0**-20]])
    y = ops.convert_to_numpy(layer(x))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, x)


def test_pruned_weights_keep_their_bit_gradient_within_the_prune_margin():
    import jax

    q = HQuantizer({"prune_margin": 2}, "kernel")
    q.build((4,))
    w = np.full(4, 0.3, "float32")  # integer bits -1: f = 1 keeps one bit, f <= 0 rounds to zero
    fbw = np.array([1.0, 0.0, -1.0, -2.0], "float32")

    def total(fbw):
        with keras.StatelessScope(state_mapping=[(q.fbw, fbw)]):
            return ops.sum(q.kernel_bits(q(w, training=False), values=w))

    np.testing.assert_array_equal(np.asarray(jax.grad(total)(fbw)), [1, 1, 0, 0])  # pushed on while -1 + f + 2 > 0


@pytest.mark.parametrize("kernel_size, padding, dilation", [
    ((3, 3), "valid", (1, 1)), ((3, 2), "same", (1, 1)), ((3, 3), "same", (2, 1)), ((3, 3), "valid", (2, 2)),
    ((2,), "valid", (1,)), ((3,), "same", (2,)),
])
def test_tap_conv_equals_xla_convolution_and_its_gradients(kernel_size, padding, dilation):
    """The stacked-taps convolution gives XLA's values bit for bit on fixed-point grids (exact sums) and to
    float rounding elsewhere, and XLA's gradients to float rounding."""
    import jax

    from hgq_rewrite.layers.conv_gradient import tap_conv

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, *(9,) * len(kernel_size), 2)).astype("float32")
    kernel = rng.normal(size=(*kernel_size, 2, 3)).astype("float32")

    def xla(x, kernel):
        return ops.conv(x, kernel, 1, padding, "channels_last", dilation)

    def taps(x, kernel):
        return tap_conv(x, kernel, padding, dilation)

    z, pull = jax.vjp(xla, x, kernel)
    dz = rng.normal(size=z.shape).astype("float32")
    tz, tap_pull = jax.vjp(taps, x, kernel)
    np.testing.assert_allclose(np.asarray(tz), np.asarray(z), rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(tap_pull(dz), pull(dz)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)
    on_grid = (np.round(x * 16) / 16, np.round(kernel * 8) / 8)
    np.testing.assert_array_equal(np.asarray(taps(*on_grid)), np.asarray(xla(*on_grid)))


@pytest.mark.parametrize("filters, strides, taps", [(2, 1, True), (128, 1, False), (2, 2, False)])
def test_small_convolutions_run_on_stacked_taps_with_the_same_values(filters, strides, taps, monkeypatch):
    """Small stride-1 kernels run as the stacked-taps matmul: the outputs of XLA's convolution bit for bit (on
    the grids), its gradients to float rounding."""
    from hgq_rewrite.layers import HConv2D, conv_gradient

    calls = []
    tap_conv = conv_gradient.tap_conv
    monkeypatch.setattr("hgq_rewrite.layers.conv.tap_conv", lambda *a: calls.append(1) or tap_conv(*a))
    inp = keras.Input((8, 8, 3))
    h = HQuantize(name="q")(inp)
    layer = HConv2D(filters, 3, strides=strides, beta=1e-4, name="c")
    model = keras.Model(inp, layer(h))
    x = np.random.default_rng(5).normal(size=(4, 8, 8, 3)).astype("float32")
    gx, gw, y, _ = _grads(layer, model.get_layer("q")(x))
    assert bool(calls) == taps
    monkeypatch.setattr(conv_gradient, "MAX_TAP_CHANNELS", 0)
    gx0, gw0, y0, _ = _grads(layer, model.get_layer("q")(x))
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_allclose(gx, gx0, rtol=1e-5, atol=1e-5)
    for g, g0 in zip(gw, gw0):
        np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("shape, pool_size", [((3, 9, 7, 2), (2, 2)), ((2, 10, 3), (3,)), ((2, 9, 9, 2), (3, 2))])
def test_phase_max_pool_gradient_equals_xla_gradient_ties_included(shape, pool_size, sliced):
    import jax

    from hgq_rewrite.layers.pool_gradient import phase_max_pool

    rng = np.random.default_rng(6)
    x = (np.round(rng.normal(size=shape) * 2) / 2).astype("float32")  # on a coarse grid: many tied maxima
    z, pull = jax.vjp(lambda x: ops.max_pool(x, pool_size, pool_size, "valid", "channels_last"), x)
    dz = rng.normal(size=z.shape).astype("float32")
    pz, phase_pull = jax.vjp(lambda x: phase_max_pool(x, pool_size, sliced=sliced), x)
    np.testing.assert_array_equal(np.asarray(pz), np.asarray(z))
    np.testing.assert_array_equal(np.asarray(phase_pull(dz)[0]), np.asarray(pull(dz)[0]))


@pytest.mark.parametrize("strides, phases", [(None, True), (1, False)])
def test_max_pooling_layers_take_the_phase_gradient_when_windows_do_not_overlap(strides, phases, monkeypatch):
    from hgq_rewrite.layers import PMaxPooling2D, pool_gradient

    calls = []
    phase_max_pool = pool_gradient.phase_max_pool
    monkeypatch.setattr("hgq_rewrite.layers.pooling.phase_max_pool", lambda *a: calls.append(1) or phase_max_pool(*a))
    layer = PMaxPooling2D(2, strides=strides)
    x = np.random.default_rng(7).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)),
                                  ops.convert_to_numpy(ops.max_pool(x, 2, strides or 2, "valid", "channels_last")))
    assert bool(calls) == phases

"""quantize() starts the new layers' variables from copies of the float weights (set_initial_weights) and
adapts the kernel bits to them once, in build: the result is what assigning the weights after build and
adapting again gives."""

import keras
import numpy as np
import pytest
from keras import layers as L

from hgq_rewrite.layers import HConv1DBatchNorm, HDense, HDenseBatchNorm
from hgq_rewrite.layers.kernel_base import HKernelLayer
from hgq_rewrite.rewrite import quantize


def _hand_fbw(kernel, axes, init_bw, bw_clip):
    """Fractional bits keeping ``init_bw`` significant bits of each group's largest weight (numpy)."""
    a = np.abs(np.asarray(kernel, np.float64))
    m = a.max(axis=axes, keepdims=True) if axes else a
    int_bits = np.where(m > 0, np.floor(np.log2(np.maximum(m, 2.0**-60))) + 1.0, 0.0)
    return np.clip(init_bw - int_bits, *bw_clip)


def _float_model(seed=0):
    rng = np.random.default_rng(seed)
    x = keras.Input((12, 3))
    h = L.Conv1D(4, 3, name="conv")(x)
    h = L.BatchNormalization(name="conv_bn")(h)
    h = L.Flatten()(h)
    h = L.Dense(6, name="dense")(h)
    h = L.BatchNormalization(scale=False, name="dense_bn")(h)
    h = L.ReLU()(h)
    y = L.Dense(3, use_bias=False, name="head")(h)
    model = keras.Model(x, y)
    for layer in model.layers:  # non-trivial statistics, gammas and biases
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.7 for w in layer.weights])
        if isinstance(layer, L.BatchNormalization):
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, layer.moving_variance.shape).astype("float32"))
    return model


def _folded(float_model, name):
    """The float layer ``name``'s kernel with its BatchNormalization (``{name}_bn``, if any) folded in, and
    the BatchNormalization variables the HGQ layer must hold."""
    kernel = float_model.get_layer(name).kernel.numpy().astype(np.float64)
    bn = next((la for la in float_model.layers if la.name == f"{name}_bn"), None)
    if bn is None:
        return kernel, {}
    scale = 1.0 / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    if bn.scale:
        scale = scale * bn.gamma.numpy()
    expected = {"moving_mean": bn.moving_mean, "moving_variance": bn.moving_variance, "bn_beta": bn.beta}
    if bn.scale:
        expected["bn_gamma"] = bn.gamma
    return kernel * scale, expected


@pytest.mark.parametrize("granularity", ["element", "channel"])
def test_converted_weights_and_bits_are_the_transferred_ones(granularity):
    m = _float_model()
    kq = {"init_bw": 5, "granularity": granularity}
    q = quantize(m, {"defaults": {"kernel": kq}}, beta=1e-6)
    expected_types = {"conv": HConv1DBatchNorm, "dense": HDenseBatchNorm, "head": HDense}
    for name, cls in expected_types.items():
        layer = q.get_layer(name)
        assert type(layer) is cls and not layer._initial_weights  # consumed by build
        src = m.get_layer(name)
        np.testing.assert_array_equal(layer.kernel.numpy(), src.kernel.numpy())
        if src.use_bias:
            np.testing.assert_array_equal(layer.bias.numpy(), src.bias.numpy())
        else:
            assert layer.bias is None
        folded, bn_vars = _folded(m, name)
        for attr, value in bn_vars.items():
            np.testing.assert_array_equal(getattr(layer, attr).numpy(), value.numpy(), err_msg=f"{name}.{attr}")
        cfg = layer.kq.config
        want = _hand_fbw(folded, layer.kq.axes, cfg["init_bw"], cfg["bw_clip"])
        np.testing.assert_array_equal(layer.kq.fbw.numpy(), want.astype("float32"), err_msg=name)


def test_hand_built_layer_adapts_its_initial_kernel():
    layer = HDense(5, kq_conf={"init_bw": 3})
    layer.build((None, 7))
    kernel = layer.kernel.numpy()
    assert np.any(kernel != 0)  # drawn from glorot_uniform, not zeros
    want = _hand_fbw(kernel, layer.kq.axes, 3.0, layer.kq.config["bw_clip"])
    np.testing.assert_array_equal(layer.kq.fbw.numpy(), want.astype("float32"))


def test_reloaded_converted_layer_builds_like_a_hand_built_one(tmp_path):
    q = quantize(_float_model(), beta=1e-6)
    path = tmp_path / "q.keras"
    q.save(path)
    loaded = keras.models.load_model(path)
    for layer in loaded.layers:
        if isinstance(layer, HKernelLayer):
            for a, b in zip(layer.weights, q.get_layer(layer.name).weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_initial_weights_equal_assigning_after_build():
    rng = np.random.default_rng(3)
    values = {"kernel": rng.normal(size=(7, 5)).astype("float32"), "bias": rng.normal(size=5).astype("float32"),
              "bn_gamma": rng.normal(size=5).astype("float32"), "moving_variance": rng.uniform(0.1, 4, 5).astype("float32")}
    given = HDenseBatchNorm(5, name="given")
    given.set_initial_weights(**values, bn_beta=None)  # None: keeps the initializer
    given.build((None, 7))
    assigned = HDenseBatchNorm(5, name="assigned")
    assigned.build((None, 7))
    for name, value in values.items():
        getattr(assigned, name).assign(value)
    assigned.adapt_kernel_bits()
    for a, b in zip(given.weights, assigned.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_bad_initial_weights_are_refused_naming_the_layer():
    layer = HDense(5, name="d")
    layer.set_initial_weights(kernel=np.zeros((7, 5), "float32"), kernal=np.zeros((7, 5), "float32"))
    with pytest.raises(ValueError, match=r"Layer 'd': set_initial_weights named \['kernal'\]"):
        layer.build((None, 7))
    layer = HDense(5, name="d2")
    layer.set_initial_weights(kernel=np.zeros((3, 5), "float32"))
    with pytest.raises(ValueError, match=r"Layer 'd2', variable 'kernel': the initial value has shape \(3, 5\)"):
        layer.build((None, 7))
    layer = HDense(5, name="d3")
    layer.build((None, 7))
    with pytest.raises(RuntimeError, match="'d3' is built already"):
        layer.set_initial_weights(kernel=np.zeros((7, 5), "float32"))


@pytest.mark.parametrize("granularity", ["element", "channel"])
def test_adapted_bits_are_exact_next_to_powers_of_two(granularity):
    """adapt_to counts a weight group's integer bits exactly (float32's log2 misplaces some values just below
    powers of two: 8 - ulp would get 4 integer bits instead of 3)."""
    powers = np.float32(2.0) ** np.arange(-40, 24, dtype="float32")
    values = np.concatenate([powers, np.nextafter(powers, np.float32(0)), -powers, np.zeros(64, "float32")])
    kernel = np.random.default_rng(0).permutation(values).reshape(32, 8)
    layer = HDense(8, kq_conf={"init_bw": 4, "granularity": granularity})
    layer.set_initial_weights(kernel=kernel)
    layer.build((None, 32))
    m = np.abs(kernel).max(axis=layer.kq.axes, keepdims=True) if layer.kq.axes else np.abs(kernel)
    int_bits = np.where(m > 0, np.frexp(m)[1], 0)  # m = mantissa * 2**e, mantissa in [0.5, 1): e integer bits
    np.testing.assert_array_equal(layer.kq.fbw.numpy(), np.clip(4.0 - int_bits, -23.0, 23.0))


def test_a_layer_built_while_traced_keeps_init_bw():
    """Keras builds a subclassed model's layers while tracing it: the kernel has no value then, so its bits
    keep ``init_bw`` (numpy cannot read a traced kernel)."""

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = HDense(2, kq_conf={"init_bw": 4})

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model.predict(np.ones((4, 3), "float32"), verbose=0)
    np.testing.assert_array_equal(model.dense.kq.fbw.numpy(), np.full((3, 2), 4.0, "float32"))

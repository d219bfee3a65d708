"""Issue 11: bitwidth step size, data-driven initial bitwidths, default parallel_factor of converted convs."""

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.bitwidth_step import BitwidthAdam, is_bitwidth_variable
from hgq_rewrite.layers import HConv2D
from hgq_rewrite.trace import h_layers


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", name="d1"),
        keras.layers.Dense(3, name="d2"),
    ])


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.integers(0, 3, n)
    return x, y


def _fbw(model):
    return [np.array(v) for v in model.trainable_variables if is_bitwidth_variable(v)]


def _others(model):
    return [np.array(v) for v in model.trainable_variables if not is_bitwidth_variable(v)]


# -- bitwidth step size ---------------------------------------------------------------------------
def _one_step(scale):
    x, y = _data(64)
    q = hr.quantize(_mlp(), beta=1e-3)
    q.compile(BitwidthAdam(1e-3, bitwidth_lr_scale=scale),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    f0, w0 = _fbw(q), _others(q)
    q.fit(x, y, batch_size=64, epochs=1, verbose=0)
    df = max(np.abs(a - b).max() for a, b in zip(_fbw(q), f0))
    dw = max(np.abs(a - b).max() for a, b in zip(_others(q), w0))
    return df, dw


def test_bitwidth_lr_scale_multiplies_only_the_bitwidth_steps():
    df1, dw1 = _one_step(1.0)
    df10, dw10 = _one_step(10.0)
    assert df1 == pytest.approx(1e-3, rel=0.05)  # Adam's first step is lr
    assert df10 == pytest.approx(1e-2, rel=0.05)
    assert dw10 == pytest.approx(dw1, rel=1e-3)  # the weights keep their learning rate


def test_bitwidth_adam_round_trips_its_config():
    opt = BitwidthAdam(2e-3, bitwidth_lr_scale=7.0)
    again = BitwidthAdam.from_config(opt.get_config())
    assert again.bitwidth_lr_scale == 7.0
    assert float(again.learning_rate) == pytest.approx(2e-3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, BitwidthAdam) and restored.bitwidth_lr_scale == 7.0


def test_finetune_uses_the_bitwidth_scale_and_checks_it():
    x, y = _data(64)
    q = hr.quantize(_mlp(), beta=1e-3)
    hr.finetune(q, x, y, epochs=1, batch_size=64, verbose=0, bitwidth_lr_scale=4.0)
    assert isinstance(q.optimizer, BitwidthAdam) and q.optimizer.bitwidth_lr_scale == 4.0
    with pytest.raises(ValueError, match="bitwidth_lr_scale"):
        hr.finetune(hr.quantize(_mlp()), x, y, epochs=1, verbose=0, bitwidth_lr_scale=0)


# -- weight steps relative to the weights' size --------------------------------------------------
def _grown_mlp(factor):
    """`_mlp` with d1's kernel `factor` times its Glorot size and d2's half its Glorot size."""
    m = _mlp()
    for name, size in (("d1", factor * np.sqrt(2.0 / (4 + 8))), ("d2", 0.5 * np.sqrt(2.0 / (8 + 3)))):
        kernel = m.get_layer(name).kernel
        kernel.assign(size * np.sign(np.array(kernel)))
    return m


def test_relative_weight_steps_scale_grown_kernels_and_their_biases_only():
    q = hr.quantize(_grown_mlp(4.0))
    scales = hr.relative_weight_steps(q)
    d1 = q.get_layer("d1")
    assert scales == {d1.kernel.path: pytest.approx(4.0), d1.bias.path: pytest.approx(4.0)}


def test_weight_lr_scales_multiply_the_step_of_the_named_variables_only():
    x, y = _data(64)
    q = hr.quantize(_grown_mlp(4.0), beta=1e-3)
    d1, d2 = q.get_layer("d1"), q.get_layer("d2")
    q.compile(BitwidthAdam(1e-3, bitwidth_lr_scale=1.0, weight_lr_scales={d1.kernel.path: 5.0}),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    k1, k2 = np.array(d1.kernel), np.array(d2.kernel)
    q.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert np.abs(np.array(d1.kernel) - k1).max() == pytest.approx(5e-3, rel=0.05)  # Adam's first step: lr x 5
    assert np.abs(np.array(d2.kernel) - k2).max() == pytest.approx(1e-3, rel=0.05)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(q.optimizer))
    assert again.weight_lr_scales == {d1.kernel.path: 5.0}


def test_finetune_relative_weight_step_compiles_with_the_scales_and_checks_its_argument():
    x, y = _data(64)
    q = hr.quantize(_grown_mlp(3.0), beta=1e-3)
    hr.finetune(q, x, y, epochs=1, batch_size=64, verbose=0)  # on by default
    assert q.optimizer.weight_lr_scales[q.get_layer("d1").kernel.path] == pytest.approx(3.0, rel=0.01)
    q2 = hr.quantize(_grown_mlp(3.0), beta=1e-3)
    hr.finetune(q2, x, y, epochs=1, batch_size=64, verbose=0, relative_weight_step=False)
    assert q2.optimizer.weight_lr_scales == {}
    with pytest.raises(TypeError, match="relative_weight_step"):
        hr.finetune(hr.quantize(_mlp()), x, y, epochs=1, verbose=0, relative_weight_step="yes")
    with pytest.raises(ValueError, match=r"weight_lr_scales\['d1/kernel'\]"):
        BitwidthAdam(weight_lr_scales={"d1/kernel": -1.0})
    frozen = hr.quantize(_grown_mlp(3.0), beta=1e-3)
    frozen.get_layer("d1").trainable = False
    assert hr.relative_weight_steps(frozen) == {}
    kept = np.array(frozen.get_layer("d1").kernel)
    hr.finetune(frozen, x, y, epochs=1, batch_size=64, verbose=0)
    np.testing.assert_array_equal(np.array(frozen.get_layer("d1").kernel), kept)  # a frozen layer is left as it is


# -- data-driven initial bitwidths ----------------------------------------------------------------
def _trained_mlp():
    x, y = _data(512)
    x[:, 3] = 0.0  # an input that is always zero
    m = _mlp()
    m.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return m, x


def test_calibration_sets_bits_from_the_ranges_and_meets_the_tolerance():
    m, x = _trained_mlp()
    q = hr.quantize(m, beta=0.0, calibration_data=x, init_tolerance=0.05)
    d1 = q.get_layer("d1")
    assert np.all(d1.qkernel[3] == 0)  # weights of the always-zero input are pruned
    ref = m.predict(x, verbose=0)
    err = np.sqrt(np.mean((q.predict(x, verbose=0) - ref) ** 2)) / np.std(ref)
    assert err <= 0.05 * 1.5
    # a looser tolerance gives fewer bits
    loose = hr.quantize(m, beta=0.0, calibration_data=x, init_tolerance=0.5)
    assert hr.trace_minmax(loose, x) < hr.trace_minmax(q, x)


def test_activation_bits_follow_the_data_scale():
    m, x = _trained_mlp()
    q = hr.quantize(m)
    report = hr.init_bits(q, x, 0.05)
    inp = [layer for layer in h_layers(q) if not hasattr(layer, "kq")][0]
    f_small = float(np.max(np.asarray(inp.paq.fbw)))
    # the same model fed data 8x larger (first layer scaled down to match) needs 3 fewer fractional bits
    m8 = _mlp()
    m8.set_weights([w / 8 if i == 0 else w for i, w in enumerate(m.get_weights())])
    q8 = hr.quantize(m8)
    hr.init_bits(q8, x * 8, 0.05)
    inp8 = [layer for layer in h_layers(q8) if not hasattr(layer, "kq")][0]
    assert float(np.max(np.asarray(inp8.paq.fbw))) == f_small - 3
    assert set(report["quantizers"]) >= {f"{inp.name}.paq", "d1.kq", "d1.paq", "d2.kq", "d2.paq"}


def test_init_tolerance_none_keeps_a_layers_configured_bits():
    m, x = _trained_mlp()
    plain = hr.quantize(m)
    q = hr.quantize(m, calibration_data=x, init_tolerance={"*": 0.1, "d2": None})
    np.testing.assert_array_equal(np.asarray(q.get_layer("d2").kq.fbw), np.asarray(plain.get_layer("d2").kq.fbw))
    np.testing.assert_array_equal(np.asarray(q.get_layer("d2").paq.fbw), np.asarray(plain.get_layer("d2").paq.fbw))
    assert not np.array_equal(np.asarray(q.get_layer("d1").kq.fbw), np.asarray(plain.get_layer("d1").kq.fbw))
    with pytest.raises(ValueError, match="tolerance"):
        hr.init_bits(q, x, -1.0)


# -- default parallel_factor of converted convolutions ---------------------------------------------
def _cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(2, 3, activation="relu", name="conv1"),
        keras.layers.Conv2D(2, 3, strides=2, name="conv2"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="dense"),
    ])


def test_converted_convs_default_to_fully_parallel():
    m = _cnn()
    q = hr.quantize(m)
    assert q.get_layer("conv1").parallel_factor == 36  # 6x6 output positions
    assert q.get_layer("conv2").parallel_factor == 4  # 2x2
    explicit = hr.quantize(m, config={"names": {"conv1": {"parallel_factor": 36}, "conv2": {"parallel_factor": 4}}})
    x = np.random.default_rng(0).uniform(size=(32, 8, 8, 1)).astype("float32")
    assert hr.trace_minmax(q, x) == hr.trace_minmax(explicit, x)
    # a config value still wins; hand-built layers keep the seed's default
    serial = hr.quantize(m, config={"types": {"Conv2D": {"parallel_factor": 1}}})
    assert serial.get_layer("conv1").parallel_factor == 1
    assert HConv2D(2, 3).parallel_factor == 1

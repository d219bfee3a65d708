"""Train steps compiled with XLA (issue 15): on TensorFlow, finetune compiles long runs with XLA, whose step then
takes the XLA forms of convolutions and max pooling (`conv_gradient`, `pool_gradient`) with the plain step's
values; the compiled model still predicts what its exported firmware computes, bit for bit."""

import sys

import keras
import numpy as np
import pytest
from keras import ops

import hgq_rewrite as hr
from hgq_rewrite.compat.xla import compiled_by_xla
from hgq_rewrite.finetune.execution import XLA_MIN_STEPS, check_jit_compile, xla_setting
from hgq_rewrite.layers import HConv2D, HDense, HQuantize, PFlatten, PMaxPooling2D, conv_gradient, pool_gradient
from hgq_rewrite.proxy import predict_float64

on_tensorflow = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's jit_compile")


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10, 10, 1))
    h = HQuantize(name="q")(inp)
    h = PMaxPooling2D(2, name="pool")(h)
    h = HConv2D(3, 3, activation="relu", beta=1e-4, name="conv")(h)
    h = PFlatten(name="flat")(h)
    return keras.Model(inp, HDense(4, beta=1e-4, name="out")(h))


def _data(n=64, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 10, 10, 1)).astype("float32"), rng.integers(0, 4, n)


@on_tensorflow
def test_compiled_by_xla_only_while_tracing_an_xla_function():
    import tensorflow as tf

    seen = {}

    def probe(name):
        def f(x):
            seen[name] = compiled_by_xla()
            return x + 1
        return f

    probe("eager")(1.0)
    tf.function(probe("graph"))(tf.constant(1.0))
    tf.function(probe("xla"), jit_compile=True)(tf.constant(1.0))
    tf.function(lambda x: tf.function(probe("nested"), jit_compile=True)(x))(tf.constant(1.0))
    assert seen == {"eager": False, "graph": False, "xla": True, "nested": True}


@on_tensorflow
def test_xla_step_takes_the_xla_forms_with_the_plain_step_values(monkeypatch):
    """Under XLA the convolution runs on stacked taps and the pooling takes its gradient from its phases; the
    loss (EBOPs term included) and every gradient equal the plain step's to float rounding."""
    import tensorflow as tf

    calls = []  # data convolutions on stacked taps, data poolings from phases (the EBOPs' bit maps always are)

    def counted(name, original):
        def wrapper(*args, **kwargs):
            if not kwargs.get("sliced"):
                calls.append(name)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr("hgq_rewrite.layers.conv.tap_conv", counted("tap_conv", conv_gradient.tap_conv))
    monkeypatch.setattr("hgq_rewrite.layers.pooling.phase_max_pool",
                        counted("phase_max_pool", pool_gradient.phase_max_pool))
    model = _cnn()
    x, y = _data()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
        return loss, tape.gradient(loss, model.trainable_variables)

    plain = tf.function(step)(x, y)
    assert calls == []
    compiled = tf.function(step, jit_compile=True)(x, y)
    assert sorted(set(calls)) == ["phase_max_pool", "tap_conv"]
    np.testing.assert_allclose(float(compiled[0]), float(plain[0]), rtol=1e-6)
    for v, g, g0 in zip(model.trainable_variables, compiled[1], plain[1]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g0), rtol=1e-4, atol=1e-6, err_msg=v.path)


def test_xla_setting_and_the_jit_compile_check():
    assert xla_setting("auto", XLA_MIN_STEPS) is True
    assert xla_setting("auto", XLA_MIN_STEPS - 1) == "auto"  # Keras' own choice: XLA on JAX and on GPUs
    assert xla_setting(False, 10 * XLA_MIN_STEPS) is False and xla_setting(True, 1) is True
    assert check_jit_compile(np.bool_(True)) is True
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"finetune: jit_compile must be 'auto', True or False"):
            check_jit_compile(bad)


@on_tensorflow
def test_finetune_auto_compiles_with_xla_from_the_step_threshold(monkeypatch):
    """``jit_compile="auto"``: a short run keeps Keras' choice (no XLA on TensorFlow's CPU), a run of at least
    XLA_MIN_STEPS steps is compiled with XLA."""
    x, y = _data()
    short = _cnn()
    hr.finetune(short, x, y, epochs=1, batch_size=32, verbose=0)
    assert not short.jit_compile
    execution = sys.modules["hgq_rewrite.finetune.execution"]  # hgq_rewrite.finetune is also the function's name
    monkeypatch.setattr(execution, "XLA_MIN_STEPS", 2)  # this run's 2 steps
    long = _cnn()
    hr.finetune(long, x, y, epochs=1, batch_size=32, verbose=0)
    assert long.jit_compile


def test_finetune_refuses_a_bad_jit_compile_before_training():
    model = _cnn()
    before = [np.asarray(w).copy() for w in model.weights]
    x, y = _data()
    with pytest.raises(ValueError, match="jit_compile"):
        hr.finetune(model, x, y, epochs=1, verbose=0, jit_compile="always")
    assert not model.compiled
    for w, w0 in zip(model.weights, before):
        np.testing.assert_array_equal(np.asarray(w), w0)


def test_model_finetuned_with_xla_predicts_its_firmware_bit_for_bit():
    """finetune(jit_compile=True) trains with XLA; after trace_minmax the compiled predict (XLA, the convolution
    on stacked taps) equals the float64 proxy of the exported firmware on every sample, far inputs included."""
    model = _cnn(2)
    x, y = _data(96, 3)
    hr.finetune(model, x, y, epochs=2, batch_size=32, verbose=0, jit_compile=True)
    assert model.jit_compile
    hr.trace_minmax(model, x)
    proxy = hr.to_proxy_model(model)
    x_test, _ = _data(200, 4)
    x_test[:20] *= 8.0  # beyond the calibrated ranges: the firmware's overflow
    predicted = model.predict(x_test, batch_size=50, verbose=0)
    np.testing.assert_array_equal(np.asarray(predicted, np.float64), np.asarray(predict_float64(proxy, x_test)))
    np.testing.assert_array_equal(predicted, ops.convert_to_numpy(model(x_test, training=False)))

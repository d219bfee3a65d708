"""trace_minmax, callbacks, nested models and the errors a user meets."""

import keras
import numpy as np
import pytest
from models import every_layer_data, every_layer_model

import hgq_rewrite as hr
from hgq_rewrite.layers import HActivation, HDense, HQuantize


def small_model():
    inp = keras.Input((4,))
    x = HQuantize(name="q")(inp)
    x = HDense(3, activation="relu", name="d1", beta=1e-3)(x)
    return keras.Model(inp, HDense(2, name="d2")(x))


def test_trace_returns_exact_ebops_and_cover_factor_widens():
    model = small_model()
    x = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    e1 = hr.trace_minmax(model, x)
    i1 = model.get_layer("d2").output_kif()[1]
    e2 = hr.trace_minmax(model, x, cover_factor=4.0)
    i2 = model.get_layer("d2").output_kif()[1]
    assert e2 > e1 > 0
    assert (i2 >= i1 + 1).all()


def test_trace_descends_into_nested_models():
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, HDense(2, name="inner_d")(inner_in), name="inner")
    inp = keras.Input((4,))
    x = HDense(3, name="outer_d")(HQuantize(name="q")(inp))
    model = keras.Model(inp, inner(x))
    x = np.random.default_rng(1).normal(size=(50, 4)).astype("float32")
    total = hr.trace_minmax(model, x)
    assert model.get_layer("inner").get_layer("inner_d").ebops > 0
    assert total == pytest.approx(sum(layer.ebops for layer in hr.trace.h_layers(model)))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_cover_factor_must_be_positive(bad):
    with pytest.raises(ValueError, match="cover_factor"):
        hr.trace_minmax(small_model(), np.ones((4, 4), "float32"), cover_factor=bad)


def test_empty_nan_and_mismatched_calibration_data():
    model = small_model()
    with pytest.raises(ValueError, match="empty"):
        hr.trace_minmax(model, np.zeros((0, 4), "float32"))
    data = np.ones((4, 4), "float32")
    data[1, 2] = np.nan
    before = data.copy()
    with pytest.raises(ValueError, match="NaN"):
        hr.trace_minmax(model, data)
    np.testing.assert_array_equal(data, before)  # the user's data is untouched
    with pytest.raises(ValueError, match="2 array"):
        hr.trace_minmax(model, [data, data])


def test_unknown_and_unfusable_activations():
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        HActivation("tanhh", name="act")
    with pytest.raises(ValueError, match="'sigmoid' cannot be fused.*HActivation"):
        HDense(3, activation="sigmoid", name="d")


def test_unquantized_input_is_named():
    inp = keras.Input((4,))
    model = keras.Model(inp, HDense(2, name="d")(inp))
    with pytest.raises(ValueError, match="'d' takes its input from .*HQuantize"):
        hr.trace_minmax(model, np.ones((2, 4), "float32"))


def test_callbacks_log_bops_and_reset_ranges():
    model = every_layer_model()
    x, y = every_layer_data()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    calib = hr.CalibratedBOPs(x)
    hist = model.fit(x, y, epochs=2, verbose=0, callbacks=[hr.FreeBOPs(), hr.ResetMinMax()])
    assert len(hist.history["bops"]) == 2 and hist.history["bops"][-1] > 0
    assert not model.get_layer("out").paq.is_traced()  # reset at epoch end
    hist = model.fit(x, y, epochs=1, verbose=0, callbacks=[calib])
    assert hist.history["bops"][0] == pytest.approx(sum(layer.ebops for layer in hr.trace.h_layers(model)))


def test_beta_changes_without_recompiling():
    model = small_model()
    x = np.random.default_rng(2).normal(size=(64, 4)).astype("float32")
    y = np.random.default_rng(3).normal(size=(64, 2)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1, verbose=0)
    loss0 = model.evaluate(x, y, verbose=0)
    model.get_layer("d1").beta = 10.0
    model.fit(x, y, epochs=1, verbose=0)  # the new beta is used by the compiled train step
    history = model.fit(x, y, epochs=1, verbose=0)
    assert history.history["loss"][0] > 10 * loss0


def test_stop_on_non_finite_loss_runs_beside_training_and_names_the_first_bad_batch():
    """Keras may dispatch it on worker threads (it reads the loss without making every step wait), so batches can
    arrive out of order: the error names the first bad batch, at the end of the epoch it stopped."""
    from hgq_rewrite.callbacks import NonFiniteLossError, StopOnNonFiniteLoss

    stop = StopOnNonFiniteLoss()
    stop.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    assert stop.async_safe
    stop.on_epoch_begin(2)
    stop.on_train_batch_end(0, {"loss": 0.5})
    stop.on_train_batch_end(7, {"loss": float("inf")})
    stop.on_train_batch_end(4, {"loss": float("nan")})
    assert stop.model.stop_training
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 3, batch 5"):
        stop.on_epoch_end(2)
    stop.on_epoch_end(3)  # reported once

"""How finetune runs the train step (issue 15): several steps per call of Keras' train function, the same
steps (the same weights come out), chosen by ``steps_per_execution="auto"``."""

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.finetune.execution import STEPS_PER_EXECUTION, check_steps_per_execution, execution_setting
from hgq_rewrite.layers import HDense, HQuantize


def _mlp():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = HQuantize(name="q")(inp)
    h = HDense(8, activation="relu", beta=1e-4, name="d1")(h)
    return keras.Model(inp, HDense(3, beta=1e-4, name="d2")(h))


def _data(n=400):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)


def test_auto_takes_several_steps_per_call_at_most_an_epoch():
    assert execution_setting("auto", 1000) == STEPS_PER_EXECUTION > 1
    assert execution_setting("auto", 3) == 3
    assert execution_setting(5, 1000) == 5 and execution_setting(1, 1000) == 1


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute")
def test_auto_keeps_one_step_per_call_under_a_distribution_strategy():
    import tensorflow as tf

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert execution_setting("auto", 1000) == 1


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "fast", None])
def test_bad_steps_per_execution_is_named(bad):
    with pytest.raises(ValueError, match="steps_per_execution must be 'auto' or an integer >= 1"):
        check_steps_per_execution(bad)


def test_finetune_refuses_a_bad_steps_per_execution_before_training():
    model = _mlp()
    before = [np.asarray(w).copy() for w in model.weights]
    x, y = _data()
    with pytest.raises(ValueError, match="steps_per_execution"):
        hr.finetune(model, x, y, epochs=1, verbose=0, steps_per_execution=0)
    assert not model.compiled
    for w, w0 in zip(model.weights, before):
        np.testing.assert_array_equal(np.asarray(w), w0)


def test_several_steps_per_call_train_the_same_weights():
    """An epoch of 13 steps at 16 (auto: all 13 in one call) and at 5 per call (a short last call) gives the
    weights, bitwidths, ranges and logs of one step per call. The step compiled with XLA on both backends:
    TensorFlow's own compiled step is not reproducible to the last bit (see test_epoch_cost.py)."""
    x, y = _data(400)
    runs = {}
    for setting in (1, "auto", 5):
        model = _mlp()
        keras.utils.set_random_seed(1)  # fit's shuffle
        history, _ = hr.finetune(model, x, y, epochs=2, batch_size=32, verbose=0, steps_per_execution=setting,
                                 jit_compile=True)
        runs[setting] = (model, history.history)
    assert runs["auto"][0].steps_per_execution == 13 and runs[5][0].steps_per_execution == 5
    for setting in ("auto", 5):
        model, logs = runs[setting]
        for w, w1 in zip(model.weights, runs[1][0].weights):
            np.testing.assert_array_equal(np.asarray(w), np.asarray(w1), err_msg=f"{setting}: {w.path}")
        assert logs["loss"] == runs[1][1]["loss"] and logs["ebops"] == runs[1][1]["ebops"]

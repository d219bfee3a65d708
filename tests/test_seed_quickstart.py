"""The seed document's hand-built HGQ model, exactly as written (only the imports changed)."""

import keras
import numpy as np
import pytest
from data import digits_28x28

from hgq_rewrite import FreeBOPs, ResetMinMax, trace_minmax
from hgq_rewrite.layers import HConv2D, HDense, HQuantize, PFlatten, PMaxPooling2D, PReshape


def seed_model(beta):
    model = keras.models.Sequential([
        HQuantize(beta=beta),
        PReshape((28, 28, 1)),
        PMaxPooling2D((2, 2)),
        HConv2D(2, (3, 3), activation='relu', beta=beta, parallel_factor=144),
        PMaxPooling2D((2, 2)),
        HConv2D(2, (3, 3), activation='relu', beta=beta, parallel_factor=16),
        PMaxPooling2D((2, 2)),
        PFlatten(),
        HDense(10, beta=beta)
    ])
    opt = keras.optimizers.Adam(learning_rate=0.001)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt, loss=loss, metrics=['accuracy'])
    return model


def train(beta, epochs=15):
    keras.utils.set_random_seed(1)
    x, y, xt, yt = digits_28x28()
    model = seed_model(beta)
    callbacks = [ResetMinMax(), FreeBOPs()]
    history = model.fit(x, y, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0)
    return model, history, model.evaluate(xt, yt, verbose=0)[1]


@pytest.mark.slow
def test_seed_model_trains_and_beta_lowers_bops():
    model, hist_small, acc = train(0.0)
    assert acc > 0.5, f"test accuracy {acc} is not well above chance (0.1)"
    assert "bops" in hist_small.history and all(b > 0 for b in hist_small.history["bops"])
    x = digits_28x28()[0]
    exact = trace_minmax(model, x)
    assert exact > 0
    _, hist_big, acc_big = train(3e-4)
    assert hist_big.history["bops"][-1] < 0.7 * hist_small.history["bops"][-1]
    assert acc_big > 0.3

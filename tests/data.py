"""Offline datasets for the tests (nothing downloads)."""

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def digits_28x28():
    """scikit-learn's 8x8 digits blown up to 28x28 (bilinear), in [0, 1]; (x_train, y_train, x_test, y_test)."""
    import keras
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype("float32")[..., None]
    big = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (28, 28)))[..., 0]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(big))
    x, y = big[order], d.target[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]

"""Offline data sets for the benchmarks (nothing is downloaded).

- ``digits28``: scikit-learn's 8x8 digits, bilinearly blown up to 28x28, values in [0, 1].
- ``mnist1d``: an MNIST-1D-style task made here: 10 one-dimensional template patterns,
  each sample randomly scaled, stretched, shifted, given a linear trend and noise; length 40.
- ``jets``: a jet-tagger-shaped task: 16 features, 5 classes, clusters in a random
  16-d space pushed through a fixed non-linear mixing so the classes overlap.
- ``mnist1d_pkg``: MNIST-1D from the ``mnist1d`` package (``make_dataset(get_dataset_args())``,
  generated offline: 4,000 train / 1,000 test, length 40).
- ``digits8``: scikit-learn's 8x8 digits as (8, 8, 1) images in [0, 1] (1,437 train / 360 test).

Each loader returns ``(x_train, y_train, x_test, y_test)`` as float32 / int32 arrays and
is deterministic for a given ``seed``.
"""

import numpy as np


def _split(x, y, n_test, rng):
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def _zoom_bilinear(images, size):
    """Bilinear resize of (n, h, w) images to (n, size, size), pixel centres aligned."""
    n, h, w = images.shape
    ys = (np.arange(size) + 0.5) * h / size - 0.5
    xs = (np.arange(size) + 0.5) * w / size - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    y1, x1 = np.clip(y0 + 1, 0, h - 1), np.clip(x0 + 1, 0, w - 1)
    wy = np.clip(ys - y0, 0, 1)[None, :, None]
    wx = np.clip(xs - x0, 0, 1)[None, None, :]
    top = images[:, y0][:, :, x0] * (1 - wx) + images[:, y0][:, :, x1] * wx
    bot = images[:, y1][:, :, x0] * (1 - wx) + images[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bot * wy


def digits28(seed=0, n_test=360):
    """scikit-learn digits (1797 samples) at 28x28."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = _zoom_bilinear(d.images.astype(np.float64) / 16.0, 28).astype(np.float32)
    y = d.target.astype(np.int32)
    return _split(x, y, n_test, np.random.default_rng(seed))


def _templates(length=12):
    """Ten distinct 1-D patterns on [0, 1] sampled at ``length`` points."""
    t = np.linspace(0, 1, length)
    return np.stack([
        np.sin(2 * np.pi * t),                       # 0 one period
        np.sin(4 * np.pi * t),                       # 1 two periods
        np.where(t < 0.5, 1.0, -1.0),                # 2 step down
        1 - 2 * np.abs(2 * t - 1),                   # 3 triangle
        2 * t - 1,                                   # 4 ramp up
        np.exp(-((t - 0.5) ** 2) / 0.01) * 2 - 1,    # 5 narrow bump
        np.where((t > 0.25) & (t < 0.75), -1.0, 1.0),  # 6 notch
        np.cos(2 * np.pi * t) * (1 - t),             # 7 damped cosine
        np.sign(np.sin(6 * np.pi * t)),              # 8 square wave
        (2 * t - 1) ** 3 * 2,                        # 9 cubic
    ])


def mnist1d(seed=0, n_train=8000, n_test=2000, length=40):
    """MNIST-1D-style: templates scaled, stretched, shifted, with trend and correlated noise."""
    rng = np.random.default_rng(seed)
    tmpl = _templates()
    n = n_train + n_test
    y = rng.integers(0, 10, n).astype(np.int32)
    grid = np.arange(length, dtype=np.float64)
    x = np.empty((n, length), dtype=np.float64)
    for k in range(n):
        width = rng.uniform(10, 20)                   # stretched template width in samples
        start = rng.uniform(0, length - width)        # random shift
        u = (grid - start) / width                    # template coordinate
        inside = (u >= 0) & (u <= 1)
        sig = np.zeros(length)
        sig[inside] = np.interp(u[inside], np.linspace(0, 1, tmpl.shape[1]), tmpl[y[k]])
        sig *= rng.uniform(0.6, 1.4)                  # amplitude
        sig += rng.normal(0, 0.15) * (grid / length - 0.5)  # linear trend
        noise = rng.normal(0, 0.25, length)
        noise = np.convolve(noise, np.ones(3) / 3, mode="same")  # correlated noise
        x[k] = sig + noise + rng.normal(0, 0.1, length)
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def jets(seed=0, n_train=20000, n_test=5000, n_features=16, n_classes=5):
    """Jet-tagger-shaped: 16 features, 5 overlapping classes, non-linear mixing."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, n_classes, n).astype(np.int32)
    centres = rng.normal(0, 1.1, (n_classes, 2, 8))  # two clusters per class in an 8-d latent space
    cluster = rng.integers(0, 2, n)
    z = centres[y, cluster] + rng.normal(0, 1.0, (n, 8))
    mix = rng.normal(0, 1 / np.sqrt(8), (8, n_features))
    x = z @ mix
    x[:, :8] += 0.5 * np.tanh(z) ** 2                 # non-linear features
    x[:, 8:] = np.abs(x[:, 8:]) + 0.3 * x[:, :8] * x[:, 8:]
    x += rng.normal(0, 0.2, x.shape)
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def mnist1d_pkg(seed=0):
    """MNIST-1D as the ``mnist1d`` package generates it (one fixed data set; ``seed`` is not used)."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return (d["x"].astype(np.float32), d["y"].astype(np.int32),
            d["x_test"].astype(np.float32), d["y_test"].astype(np.int32))


def digits8(seed=0, n_test=360):
    """scikit-learn digits (1797 samples) at their own 8x8 size, one channel."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return _split(x, d.target.astype(np.int32), n_test, np.random.default_rng(seed))


LOADERS = {"digits28": digits28, "mnist1d": mnist1d, "jets": jets, "mnist1d_pkg": mnist1d_pkg, "digits8": digits8}

"""The end-to-end flow the layer-family tests share: quantize → short fit → trace → proxy, and the checks."""

import shutil

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.proxy import predict_float64

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++")


def random_inputs(model, n, seed, scale=1.0):
    """``n`` normal samples (std ``scale``) for every input of ``model``: one array, or a list."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, scale, (n, *t.shape[1:])).astype("float32") for t in model.inputs]
    return xs if len(xs) > 1 else xs[0]


def train_trace_proxy(model, seed=0, n_test=500, **quantize_kwargs):
    """quantize (beta 1e-6) → 2 epochs of MSE on random targets → trace_minmax → proxy.

    Returns (HGQ model, proxy, ``n_test`` test inputs drawn wider than the calibration data).
    """
    keras.utils.set_random_seed(seed)
    q = hr.quantize(model, beta=1e-6, **quantize_kwargs)
    x = random_inputs(model, 256, seed)
    y = np.random.default_rng(seed + 1).normal(0, 1, (256, *q.outputs[0].shape[1:])).astype("float32")
    q.compile(keras.optimizers.Adam(3e-3), "mse")
    q.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[hr.ResetMinMax()])
    hr.trace_minmax(q, x)
    return q, hr.to_proxy_model(q), random_inputs(model, n_test, seed + 2, scale=1.5)


def mismatching_rows(q, proxy, x):
    """Samples on which the HGQ model and the float64 proxy differ in any output."""
    n = len(x[0] if isinstance(x, list) else x)
    hgq = np.asarray(q.predict(x, verbose=0), np.float64).reshape(n, -1)
    return int(np.sum(np.any(hgq != predict_float64(proxy, x).reshape(n, -1), axis=1)))


def assert_hls4ml_exact(proxy, x):
    """hls4ml's C simulation of ``proxy`` equals the proxy on every sample of ``x``."""
    from hgq_rewrite.proxy.bit_exact import check_bit_exact

    report = check_bit_exact(proxy, x)
    assert report.n_samples == len(x[0] if isinstance(x, list) else x)
    assert report.ok, str(report)
    return report

"""quantize → trace_minmax → to_proxy_model → hls4ml C simulation, bit for bit (slow: one g++ compile each)."""

import shutil

import keras
import numpy as np
import pytest
from test_rewrite_models import MODELS, sample_inputs, sample_targets

import hgq_rewrite as hr

proxy = pytest.importorskip("hgq_rewrite.proxy")
to_proxy_model = getattr(hr, "to_proxy_model", None) or getattr(proxy, "to_proxy_model", None)
check_bit_exact = pytest.importorskip("hgq_rewrite.proxy.bit_exact").check_bit_exact

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(to_proxy_model is None, reason="hgq_rewrite.to_proxy_model not available"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++"),
]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_quantized_model_is_bit_exact_in_hls4ml(name):
    float_model = MODELS[name]()
    qmodel = hr.quantize(float_model, beta=1e-6)
    # a few training steps so the bitwidths move away from their initial values
    x_train, y_train = sample_inputs(float_model, 128), sample_targets(float_model, 128)
    qmodel.compile("adam", "mse", run_eagerly=True)
    qmodel.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)

    calib = sample_inputs(float_model, 256, seed=3)
    hr.trace_minmax(qmodel, calib)
    px = to_proxy_model(qmodel, aggressive=True)
    # wider than the calibration data: overflows must wrap the same way in both
    x_test = sample_inputs(float_model, 200, seed=7, scale=3.0)
    report = check_bit_exact(px, x_test)
    assert report.ok, str(report)
    assert report.n_samples == 200

    # inside the calibrated range the proxy reproduces the HGQ model
    x_in = keras.tree.map_structure(lambda a: a[:64], calib)
    for a, b in zip(_flat(qmodel.predict(x_in, verbose=0)), _flat(px.predict(x_in, verbose=0))):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _flat(y):
    return [np.asarray(v, dtype=np.float64) for v in keras.tree.flatten(y)]

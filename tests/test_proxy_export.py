"""End to end: HGQ model -> trace_minmax -> to_proxy_model -> hls4ml C simulation, bit for bit.

Inputs include values far outside the calibration range, so WRAP and SAT are exercised.
"""

import zlib

import numpy as np
import pytest
import keras

import hgq_rewrite as hr
from hgq_rewrite.proxy import check_bit_exact, predict_float64, to_proxy_model
from models import every_layer_data, every_layer_model
from test_proxy_convert import nested_data, nested_model

pytestmark = pytest.mark.slow
PART = "xcvu9p-flga2104-2L-e"


def _with_overflow(arrays, seed, factor=8.0):
    rng = np.random.default_rng(seed)
    out = []
    for a in arrays:
        far = a * factor + rng.normal(0, 1, a.shape).astype(a.dtype)
        out.append(np.concatenate([a, far]).astype("float32"))  # float32 values: HGQ (float32) sees the same inputs
    return out


def _report(proxy, x, **kwargs):
    report = check_bit_exact(proxy, x, **kwargs)
    print(f"\n[{proxy.name}] {report}")
    return report


def test_every_layer_model_wrap_vitis():
    keras.utils.set_random_seed(zlib.crc32(b"every_layer"))
    model = every_layer_model()
    xs, _ = every_layer_data(256)
    hr.trace_minmax(model, xs)
    proxy = to_proxy_model(model, aggressive=True)
    np.testing.assert_array_equal(predict_float64(proxy, xs), model.predict(xs, verbose=0))
    report = _report(proxy, _with_overflow(xs, 1), backend="Vitis")
    assert report.ok, str(report)


def test_nested_model_sat_vivado():
    keras.utils.set_random_seed(zlib.crc32(b"nested"))
    model = nested_model()
    x = nested_data(256)
    hr.trace_minmax(model, x)
    proxy = to_proxy_model(model, aggressive=False)
    np.testing.assert_array_equal(predict_float64(proxy, x), model.predict(x, verbose=0))
    report = _report(proxy, _with_overflow([x], 2)[0], backend="Vivado", part=PART)
    assert report.ok, str(report)


def test_seed_quickstart_end_to_end(tmp_path):
    """The seed document's workflow on digits, with the user's own hls4ml call."""
    import hls4ml
    from data import digits_28x28
    from test_seed_quickstart import seed_model  # the seed document's model, as written

    keras.utils.set_random_seed(1)
    x, y, xt, yt = digits_28x28()
    model = seed_model(beta=3e-5)
    model.fit(x, y, epochs=8, batch_size=16, callbacks=[hr.ResetMinMax(), hr.FreeBOPs()], verbose=0)

    hgq_accuracy = model.evaluate(xt, yt, verbose=0)[1]
    hr.trace_minmax(model, x, cover_factor=1.0)
    proxy = to_proxy_model(model, aggressive=True)
    np.testing.assert_array_equal(predict_float64(proxy, x), model.predict(x, verbose=0))
    path = tmp_path / "proxy.keras"
    proxy.save(path)
    proxy = keras.models.load_model(path)

    hls_model = hls4ml.converters.convert_from_keras_model(
        proxy, backend='Vivado', output_dir=str(tmp_path / "prj"), part=PART
    )
    hls_model.compile()
    x_check = np.concatenate([xt, xt * 4.0 - 1.0]).astype(np.float64)  # test data, and far outside [0, 1]
    y_hls = hls_model.predict(x_check).reshape(len(x_check), -1)
    y_proxy = predict_float64(proxy, x_check)
    mismatches = int(np.any(y_hls != y_proxy, axis=1).sum())
    assert mismatches == 0, f"{mismatches}/{len(x_check)} samples differ"
    accuracy = float(np.mean(np.argmax(y_hls[: len(xt)], axis=1) == yt))
    print(f"\n[seed quick start] test accuracy: HGQ {hgq_accuracy:.3f}, firmware {accuracy:.3f}")
    assert accuracy > 0.5 and accuracy > hgq_accuracy - 0.02  # unseen data may overflow a little
    first_conv = next(layer.name for layer in model.layers if type(layer).__name__ == "HConv2D")
    assert hls_model.graph[first_conv].get_attr("parallelization_factor") == 144

"""Softmax (issue 12): Softmax, Activation('softmax') and Dense(activation='softmax') become HSoftmax, which
trains with its own bitwidths and exports bit-exactly: HGQ model = proxy on every sample, and (slow) the
proxy = hls4ml's C simulation of its table softmax on every sample."""

import shutil

import keras
import numpy as np
import pytest
from keras import layers as L

import hgq_rewrite as hr
from hgq_rewrite.finetune.loss import default_compile
from hgq_rewrite.layers import HActivation, HDense, HQuantize, HSoftmax
from hgq_rewrite.proxy import ProxyConversionError, predict_float64, to_proxy_model
from hgq_rewrite.proxy.softmax import FixedPointSoftmax
from hgq_rewrite.rewrite import UnsupportedLayerError

N_TEST = 500
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++")


def _inputs(shape, n, seed, scale=1.0):
    return np.random.default_rng(seed).normal(0, scale, (n, *shape)).astype("float32")


def _classifier(n_classes=5):
    x = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(x, L.Dense(n_classes, activation="softmax", name="out")(h), name="classifier")


def _sequence_model():
    x = keras.Input((4, 6))
    return keras.Model(x, L.Softmax(name="sm")(L.Dense(5, name="d")(x)), name="sequence")


def _train_trace_proxy(model, seed=0, epochs=3):
    """quantize → fit (cross-entropy on random labels) → trace_minmax → proxy; returns (HGQ, proxy, test x)."""
    keras.utils.set_random_seed(seed)
    q = hr.quantize(model, beta=1e-6)
    shape, n_classes = tuple(model.inputs[0].shape[1:]), model.outputs[0].shape[-1]
    x = _inputs(shape, 256, seed)
    labels = np.random.default_rng(seed + 1).integers(0, n_classes, (256, *model.outputs[0].shape[1:-1]))
    q.compile(keras.optimizers.Adam(3e-3), "categorical_crossentropy")
    q.fit(x, keras.utils.to_categorical(labels, n_classes), epochs=epochs, batch_size=32, verbose=0,
          callbacks=[hr.ResetMinMax()])
    hr.trace_minmax(q, x)
    return q, to_proxy_model(q), _inputs(shape, N_TEST, seed + 2, scale=1.5)  # beyond the calibration too


def _mismatching_rows(q, proxy, x):
    hgq = np.asarray(q.predict(x, verbose=0), np.float64).reshape(len(x), -1)
    return int(np.sum(np.any(hgq != predict_float64(proxy, x).reshape(len(x), -1), axis=1)))


def _hls4ml_mismatches(proxy, x):
    from hgq_rewrite.proxy.bit_exact import check_bit_exact

    report = check_bit_exact(proxy, x)
    print(f"\n[{proxy.name}] {report}")  # visible with pytest -s
    assert report.n_samples == len(x)
    return report


def _hand_built(shape, **softmax_kwargs):
    """HQuantize → HDense → HSoftmax, traced on random data."""
    keras.utils.set_random_seed(3)
    x = keras.Input(shape)
    low = {"init_bw": 4}  # float32 sums stay exact
    h = HDense(shape[-1], name="d", kq_conf=low, paq_conf=low)(HQuantize(name="q", paq_conf=low)(x))
    model = keras.Model(x, HSoftmax(name="sm", **softmax_kwargs)(h))
    hr.trace_minmax(model, _inputs(shape, 256, 0, scale=2.0))
    return model


# -- conversion ------------------------------------------------------------------------------------------
def test_every_softmax_form_converts_to_hsoftmax_and_exports():
    x = keras.Input((6,))
    a = L.Softmax(name="layer")(L.Dense(4, name="d1")(x))
    b = L.Activation("softmax", name="act")(L.Dense(4, name="d2")(x))
    c = L.Dense(4, activation="softmax", name="dense")(x)
    model = keras.Model(x, L.Concatenate()([a, b, c]))
    plan = hr.explain(model)
    assert [plan[n].target for n in ("layer", "act", "dense")] == ["HSoftmax", "HSoftmax", "HDense + HSoftmax"]
    assert all(plan[n].exports == "yes" for n in ("layer", "act", "dense"))
    q = hr.quantize(model, strict=True)
    assert all(isinstance(q.get_layer(n), HSoftmax) for n in ("layer", "act", "dense_softmax"))
    assert q.get_layer("dense").activation_name == "linear"
    classifier = hr.quantize(_classifier())
    default_compile(classifier, np.zeros(8, "int64"))  # its outputs are probabilities: no from_logits
    assert classifier.loss.get_config()["from_logits"] is False


# -- exactness -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dense_softmax_classifier_equals_its_proxy():
    """The same classifier goes through hls4ml's C simulation in tests/test_zoo.py (softmax_classifier)."""
    q, proxy, x = _train_trace_proxy(_classifier())
    assert [type(lay).__name__ for lay in proxy.layers].count("FixedPointSoftmax") == 1
    assert _mismatching_rows(q, proxy, x) == 0


@pytest.mark.slow
@needs_gxx
def test_softmax_over_the_last_axis_of_a_sequence_is_bit_exact_in_hls4ml():
    q, proxy, x = _train_trace_proxy(_sequence_model(), seed=1)
    y = q.predict(x, verbose=0)
    assert y.shape == (N_TEST, 4, 5)
    assert _mismatching_rows(q, proxy, x) == 0
    report = _hls4ml_mismatches(proxy, x)
    assert report.ok, str(report)


@pytest.mark.slow
@needs_gxx
def test_scaled_softmax_with_few_bits_is_bit_exact_in_hls4ml():
    """scale (hls4ml's exp_scale) and small tables: saturated inputs, coarse sums and inverses."""
    model = _hand_built((3, 7), scale=0.3, f_norm=2, f_exp=4, f_sum=1, f_inv=3)
    proxy = to_proxy_model(model)
    x = _inputs((3, 7), N_TEST, 5, scale=4.0)
    assert _mismatching_rows(model, proxy, x) == 0
    report = _hls4ml_mismatches(proxy, x)
    assert report.ok, str(report)


def test_hgq_and_proxy_agree_on_a_trained_sequence_model():
    q, proxy, x = _train_trace_proxy(_sequence_model(), seed=2, epochs=2)
    assert _mismatching_rows(q, proxy, x) == 0


def test_proxy_tables_are_what_the_cpp_computes():
    layer = FixedPointSoftmax((0, 3, 4), (0, 1, 6), (0, 3, 5), (0, 1, 7), scale=0.5)
    d = np.arange(2**7) / 16.0
    e = np.exp(-(np.float32(d) * np.float32(0.5)).astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(layer.exp_values, np.minimum(np.floor(e * 64.0 + 0.5) / 64.0, 2 - 1 / 64))
    s = (np.arange(1, 2**8) / 32.0).astype(np.float32)
    r = (np.float32(1.0) / s).astype(np.float64)
    np.testing.assert_array_equal(layer.inv_values[1:], np.minimum(np.floor(r * 128.0 + 0.5) / 128.0, 2 - 1 / 128))


# -- accuracy, training, EBOPs -------------------------------------------------------------------------------
def test_generous_bitwidths_are_close_to_the_float_softmax_and_few_bits_are_not():
    x = _inputs((10,), 512, 4, scale=2.0)
    errors = {}
    for f in (11, 3):
        inp = keras.Input((10,))
        q = HQuantize(name="q", paq_conf={"init_bw": 16})(inp)
        model = keras.Model(inp, [q, HSoftmax(name="sm", paq_conf={"init_bw": 16}, f_norm=f, f_exp=f, f_sum=f,
                                              f_inv=f)(q)])
        xq, y = model.predict(x, verbose=0)
        errors[f] = float(np.max(np.abs(y - keras.ops.convert_to_numpy(keras.ops.softmax(xq)))))
    assert errors[11] < 2e-3 < 2e-2 < errors[3]


def test_ebops_count_the_products_and_beta_shrinks_their_bits():
    model = _hand_built((3, 7))
    layer = model.get_layer("sm")
    b = layer.bits()
    assert layer.ebops == 3 * 7 * (1 + b["f_exp"]) * (1 + b["f_inv"]) > 0
    before = np.asarray(layer.fbw.numpy())
    layer.beta = 1e-2
    x = _inputs((3, 7), 256, 1)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(x, np.full((256, 3, 7), 1 / 7, "float32"), epochs=3, batch_size=32, verbose=0)
    after = np.asarray(layer.fbw.numpy())
    assert after[1] < before[1] and after[3] < before[3]  # the bits of the products' factors shrink


def test_save_and_load_keep_the_layer_and_its_proxy(tmp_path):
    model = _hand_built((5,), scale=0.5, f_exp=6)
    proxy = to_proxy_model(model)
    model.save(tmp_path / "m.keras")
    proxy.save(tmp_path / "p.keras")
    loaded, proxy_loaded = (keras.models.load_model(tmp_path / name) for name in ("m.keras", "p.keras"))
    x = _inputs((5,), 64, 2, scale=2.0)
    assert loaded.get_layer("sm").scale == 0.5 and loaded.get_layer("sm").bits()["f_exp"] == 6
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(predict_float64(proxy_loaded, x), predict_float64(proxy, x))


def test_the_hls4ml_key_names_the_proxy_class():
    pytest.importorskip("hls4ml")
    from hgq_rewrite.proxy.hls4ml_softmax import FIXED_POINT_SOFTMAX_KEY

    assert FIXED_POINT_SOFTMAX_KEY == f"{FixedPointSoftmax.__module__}.{FixedPointSoftmax.__name__}"


# -- refusals --------------------------------------------------------------------------------------------
def test_softmax_over_another_axis_is_unsupported():
    x = keras.Input((4, 6))
    entry = hr.explain(keras.Model(x, L.Softmax(axis=1, name="sm1")(L.Dense(6)(x))))["sm1"]
    assert entry.decision == "unsupported" and "only the last axis" in entry.reason
    with pytest.raises(ValueError, match="'bad'.*only the last axis"):
        HSoftmax(axis=1, name="bad").build((None, 4, 6))


def test_log_softmax_and_an_element_wise_softmax_are_refused_with_the_remedy():
    x = keras.Input((6,))
    model = keras.Model(x, L.Activation("log_softmax", name="logsm")(L.Dense(4)(x)))
    assert hr.explain(model)["logsm"].exports.startswith("no: log_softmax does not export")
    with pytest.raises(UnsupportedLayerError, match="'logsm'.*log_softmax"):
        hr.quantize(model, strict=True)
    inp = keras.Input((6,))
    hand = keras.Model(inp, HActivation("softmax", name="elementwise")(HDense(4)(HQuantize()(inp))))
    hr.trace_minmax(hand, _inputs((6,), 64, 0))
    with pytest.raises(ProxyConversionError, match="'elementwise'.*use HSoftmax"):
        to_proxy_model(hand)


def test_a_table_above_max_table_bits_is_refused_with_the_remedy():
    model = _hand_built((6,), f_norm=11, f_exp=11)
    with pytest.raises(ProxyConversionError, match="'sm'.*exp table.*max_table_bits=12.*Remedy"):
        to_proxy_model(model, max_table_bits=12)


def test_qonnx_export_refuses_the_softmax_with_the_remedy(tmp_path):
    pytest.importorskip("qonnx")
    from hgq_rewrite.export.qonnx import QONNXExportError, to_qonnx

    with pytest.raises(QONNXExportError, match="'sm' \\(FixedPointSoftmax\\).*Remedy"):
        to_qonnx(to_proxy_model(_hand_built((5,))), tmp_path / "m.onnx")


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match="'s'.*scale"):
        HSoftmax(scale=0.0, name="s")
    with pytest.raises(ValueError, match="'s'.*f_exp must be in"):
        HSoftmax(f_exp=12, name="s")

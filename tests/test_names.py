"""Issue 12's names: the new keywords work, the seed's keep working without a warning, the replaced
ones warn (DeprecationWarning) and still work."""

import warnings

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.proxy import FixedPointQuantizer
from hgq_rewrite.proxy.convert import traced_overflow_is_wrap
from hgq_rewrite.rewrite.policy import load_config


def _model():
    return hr.quantize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def _data():
    return np.random.default_rng(0).normal(0, 1, (16, 3)).astype("float32")


def _no_deprecation(fn, *args, **kwargs):
    """Call ``fn``; fail on a DeprecationWarning of this package (TensorFlow and numpy have their own)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    ours = [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning) and "deprecated;" in
            str(w.message) and any(name in str(w.message) for name in ("SAT", "'activation'", "aggressive", "bsz"))]
    assert not ours, ours
    return out


@pytest.mark.parametrize("overflow, wrap", [("WRAP", True), ("SAT", False)])
def test_overflow_keyword_is_the_seeds_aggressive(overflow, wrap):
    by_name, by_seed = _model(), _model()
    by_seed.set_weights(by_name.get_weights())
    e1 = _no_deprecation(hr.trace_minmax, by_name, _data(), overflow=overflow)
    e2 = _no_deprecation(hr.trace_minmax, by_seed, _data(), aggressive=wrap)
    assert e1 == e2 and traced_overflow_is_wrap(by_name) is traced_overflow_is_wrap(by_seed) is wrap
    proxy = _no_deprecation(hr.to_proxy_model, by_name, overflow=overflow)
    modes = {layer.overflow for layer in proxy.layers if isinstance(layer, FixedPointQuantizer)}
    assert modes == {overflow}
    np.testing.assert_array_equal(proxy(_data().astype("float64")), hr.to_proxy_model(by_seed, aggressive=wrap)(
        _data().astype("float64")))


def test_overflow_and_batch_size_refuse_contradictions():
    model = _model()
    with pytest.raises(ValueError, match="overflow='SAT' and aggressive=True disagree"):
        hr.trace_minmax(model, _data(), overflow="SAT", aggressive=True)
    with pytest.raises(ValueError, match="overflow must be one of"):
        hr.trace_minmax(model, _data(), overflow="SAT_SYM")
    with pytest.raises(ValueError, match="bsz=4 and batch_size=8 disagree"):
        hr.trace_minmax(model, _data(), bsz=4, batch_size=8)
    with pytest.raises(ValueError, match="batch_size .* positive int"):
        hr.trace_minmax(model, _data(), batch_size=0)
    hr.trace_minmax(model, _data(), overflow="WRAP", aggressive=True, bsz=4, batch_size=4)  # agreeing: fine
    with pytest.raises(ValueError, match="overflow='WRAP' and aggressive=False disagree"):
        hr.to_proxy_model(model, overflow="WRAP", aggressive=False)


def test_batch_size_is_the_seeds_bsz():
    a, b = _model(), _model()
    b.set_weights(a.get_weights())
    assert _no_deprecation(hr.trace_minmax, a, _data(), batch_size=3) == _no_deprecation(
        hr.trace_minmax, b, _data(), bsz=3)


def test_fixed_point_quantizer_sat_keyword_is_deprecated():
    new = _no_deprecation(FixedPointQuantizer.from_kif, 1, 2, 3, overflow="SAT")
    new.build((None, 4))
    with pytest.warns(DeprecationWarning, match="SAT= is deprecated.*overflow='SAT'"):
        old = FixedPointQuantizer.from_kif(1, 2, 3, SAT="SAT")
    assert new.overflow == old.overflow == "SAT"
    with pytest.warns(DeprecationWarning, match=r"\.SAT is deprecated"):
        assert old.SAT == "SAT"
    with pytest.raises(ValueError, match="disagree"):
        FixedPointQuantizer.from_kif(1, 2, 3, overflow="WRAP", SAT="SAT")
    assert new.get_config()["overflow"] == "SAT" and "SAT" not in new.get_config()
    # a proxy saved before overflow= existed stores "SAT": it loads, without a warning
    config = {**new.get_config(), "SAT": "SAT_SYM"}
    del config["overflow"]
    assert _no_deprecation(FixedPointQuantizer.from_config, config).overflow == "SAT_SYM"


def test_free_bops_logs_ebops_and_the_seeds_bops():
    model = _model()
    model.compile("adam", "mse")
    x = _data()
    hist = model.fit(x, np.zeros((16, 2)), epochs=1, verbose=0, callbacks=[hr.FreeBOPs(), hr.ResetMinMax()])
    assert hist.history["ebops"] == hist.history["bops"] and hist.history["ebops"][0] > 0


def test_config_field_output_and_its_old_name_activation():
    new = _no_deprecation(load_config, {"defaults": {"output": {"init_bw": 6}}})
    with pytest.warns(DeprecationWarning, match="'activation' is deprecated; call it 'output'"):
        old = load_config({"defaults": {"activation": {"init_bw": 6}}})
    assert new.defaults == old.defaults
    with pytest.raises(ValueError, match="give 'output' only"):
        load_config({"names": {"d": {"output": {}, "activation": {}}}})
    with pytest.raises(ValueError, match=r"output: unknown field\(s\) \['init_bww'\] \(did you mean 'init_bw'\?\)"):
        load_config({"defaults": {"output": {"init_bww": 6}}})
    float_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    q_new = hr.quantize(float_model, {"names": {"d": {"output": {"init_bw": 5}}}})
    q_old = hr.quantize(float_model, {"names": {"d": {"activation": {"init_bw": 5}}}})
    assert q_new.get_layer("d").paq.config == q_old.get_layer("d").paq.config
    assert q_new.get_layer("d").paq.config["init_bw"] == 5

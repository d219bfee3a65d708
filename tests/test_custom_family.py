"""A user-registered layer family takes the whole path: the tutorial of docs/internals.md, run.

The code blocks of the tutorial are executed as they are written, then the model goes
quantize → fit → trace_minmax → to_proxy_model → hls4ml C simulation with 0 mismatches.
"""

import os
import re
import shutil

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.proxy import predict_float64
from hgq_rewrite.rewrite import ExportProblem, UnsupportedLayerError, unregister_handler

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "internals.md")


@pytest.fixture
def tutorial():
    """The namespace of the tutorial's code blocks (the handler is unregistered afterwards)."""
    text = open(DOC, encoding="utf-8").read()
    section = text.split("### Tutorial: a custom layer family", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the tutorial's two code blocks moved"
    namespace = {}
    exec(compile("\n".join(blocks), DOC, "exec"), namespace)
    yield namespace
    unregister_handler(namespace["ScaledDenseHandler"])


def _data(n, seed):
    return np.random.default_rng(seed).normal(0, 1, (n, 8)).astype("float32")


def test_plan_uses_the_handler_capabilities(tutorial):
    plan = hr.explain(tutorial["float_model"])
    e = plan["scaled"]
    assert (e.decision, e.target) == ("convert", "HScaledDense")
    assert "relu fused" in e.reason and "user converter" in e.reason
    assert e.exports == "yes"
    assert plan["relu"].decision == "fuse"
    q = tutorial["qmodel"]
    layer = q.get_layer("scaled")
    assert type(layer).__name__ == "HScaledDense" and layer.activation_name == "relu"
    x = _data(16, 0)
    np.testing.assert_allclose(q.predict(x, verbose=0), tutorial["float_model"].predict(x, verbose=0),
                               atol=0.1, rtol=0.1)


def test_export_problem_of_a_user_handler_warns_refuses_and_stops_the_export(tutorial):
    base = tutorial["ScaledDenseHandler"]

    class Refusing(base):
        def export_problem(self, layer, **fused):
            return ExportProblem(f"{layer.units} units are too many", "use at most 8 units")

    hr.register_handler(Refusing)  # replaces the tutorial's handler (a warning says so)
    try:
        plan = hr.explain(tutorial["float_model"])
        assert plan["scaled"].exports == "no: 16 units are too many; remedy: use at most 8 units"
        assert "exports bit-exactly: no: 16 units" in str(plan)
        with pytest.raises(UnsupportedLayerError, match="'scaled': 16 units are too many; remedy: use at most 8"):
            hr.quantize(tutorial["float_model"], strict=True)
        with pytest.warns(UserWarning, match="will not export bit-exactly"):
            q = hr.quantize(tutorial["float_model"])
        hr.trace_minmax(q, _data(64, 1))
        with pytest.raises(hr.proxy.ProxyConversionError, match="'scaled'.*16 units are too many.*Remedy: use at"):
            hr.to_proxy_model(q)
    finally:
        unregister_handler(Refusing)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++")
def test_custom_family_is_bit_exact_in_hls4ml(tutorial):
    from hgq_rewrite.proxy.bit_exact import check_bit_exact

    q = tutorial["qmodel"]
    rng = np.random.default_rng(2)
    x, y = _data(256, 3), rng.integers(0, 3, 256)
    q.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    q.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[hr.ResetMinMax()])
    ebops = hr.trace_minmax(q, x)
    assert q.get_layer("scaled").ebops > 0 and ebops >= q.get_layer("scaled").ebops

    proxy = hr.to_proxy_model(q)
    assert isinstance(proxy.get_layer("scaled"), keras.layers.Dense)  # written by the tutorial's emit
    np.testing.assert_allclose(q.predict(x, verbose=0), predict_float64(proxy, x), atol=1e-5)
    x_test = _data(300, 4) * 3.0  # beyond the calibrated ranges too
    report = check_bit_exact(proxy, x_test)
    assert report.ok, str(report)
    assert report.n_samples == 300

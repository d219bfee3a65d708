"""da4ml route: resource estimates, da4ml's own simulator vs the proxy, Verilog, hls4ml's DA strategy."""

import shutil

import numpy as np
import keras
import pytest

from hgq_rewrite.export import DAExportError, available
from proxy_harness import F64, hetero, inputs_with_overflow, model, q, set_dyadic_weights, unary_lut

needs_da = pytest.mark.skipif(not available("da"), reason="da4ml not installed: pip install 'hgq_rewrite[da]'")


def _proxy(rng, RND="RND", SAT="WRAP"):
    inp = keras.Input((8, 3), dtype=F64)
    x = hetero(rng, inp, RND=RND, SAT=SAT)
    c = keras.layers.Conv1D(4, 3, padding="same", activation="relu", dtype=F64)
    x = c(x)
    x = hetero(rng, x, RND=RND, SAT=SAT)
    x = keras.layers.MaxPooling1D(2, dtype=F64)(x)
    x = keras.layers.Flatten(dtype=F64)(x)
    d = keras.layers.Dense(5, dtype=F64)
    x = d(x)
    x = hetero(rng, x, RND=RND, SAT="SAT")
    x = q((1, 2, 3), RND=RND, SAT=SAT)(x)
    y = unary_lut("tanh", (1, 2, 3), (1, 0, 6))(x)
    for layer in (c, d):
        set_dyadic_weights(rng, layer)
    return model(inp, y, "da_proxy")


@needs_da
@pytest.mark.parametrize("RND,SAT", [("RND", "WRAP"), ("TRN", "SAT"), ("RND", "SAT_SYM")])
def test_estimate_and_da4ml_simulation_are_exact(RND, SAT):
    import hgq_rewrite as hr
    from hgq_rewrite.export import check_da

    rng = np.random.default_rng(1)
    proxy = _proxy(rng, RND, SAT)
    est = hr.estimate_resources(proxy)
    assert est.luts > 0 and est.adder_depth > 0 and est.latency > 0
    by_class = {r["class_name"]: r for r in est.layers}
    assert by_class["Conv1D"]["luts"] > 0 and by_class["Dense"]["luts"] > 0
    assert by_class["Flatten"]["luts"] == 0
    assert "total" in str(est)
    rep = check_da(proxy, inputs_with_overflow(rng, (8, 3), 1000, far=100.0), trace=est.trace, comb=est.comb)
    assert rep.ok, str(rep)


@needs_da
def test_hgq_model_estimate_and_verilog(tmp_path):
    import hgq_rewrite as hr
    from hgq_rewrite.export import check_da, write_verilog

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    out = keras.layers.Dense(3)(keras.layers.Dense(6, activation="relu")(inp))
    qmodel = hr.quantize(keras.Model(inp, out), beta=1e-5)
    x = rng.normal(0, 1, (200, 6)).astype("float32")
    hr.trace_minmax(qmodel, x)
    est = hr.estimate_resources(qmodel)
    assert est.luts > 0 and len(est.layers) >= 2
    assert check_da(qmodel, x * 20).ok
    rtl, comb = write_verilog(qmodel, tmp_path / "v")
    files = [p.name for p in (tmp_path / "v").rglob("*.v")]
    assert files, "no Verilog written"
    assert comb.cost == pytest.approx(est.luts)


@needs_da
def test_rnd_conv_and_bad_models_are_refused_by_name():
    from hgq_rewrite.export import estimate_resources

    inp = keras.Input((4,), dtype=F64)
    x = q((1, 2, 2))(inp)  # the input port's format: applied in software, any rounding is fine
    y = q((1, 2, 1), RND="RND_CONV", name="conv_rounding")(keras.layers.Dense(2, dtype=F64)(x))
    with pytest.raises(DAExportError, match="conv_rounding"):
        estimate_resources(model(inp, y, "rnd_conv"))
    d = keras.layers.Dense(2, dtype=F64, name="raw_input_dense")
    with pytest.raises(DAExportError, match="FixedPointQuantizer"):
        estimate_resources(model(inp, q((1, 2, 2))(d(inp)), "no_input_quantizer"))
    with pytest.raises(TypeError):
        estimate_resources(np.zeros(3))


@needs_da
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
def test_hls4ml_distributed_arithmetic_is_bit_exact(tmp_path):
    from hgq_rewrite.export import da_hls_config
    from hgq_rewrite.proxy import check_bit_exact

    rng = np.random.default_rng(2)
    proxy = _proxy(rng)
    x = inputs_with_overflow(rng, (8, 3), 300, far=100.0)
    rep = check_bit_exact(proxy, x, backend="Vitis", hls_config=da_hls_config(), output_dir=str(tmp_path / "prj"))
    assert rep.ok, str(rep)
    kernels = [layer for layer in rep.hls_model.get_layers() if layer.class_name in ("Dense", "Conv1D")]
    assert kernels and all(layer.get_attr("strategy") == "distributed_arithmetic" for layer in kernels)
    assert all(layer.get_attr("da_kernel_cost", 0) > 0 for layer in kernels)

"""Fast tests of the hls4ml bridge: registration, parsing, preflight errors (no C++ compile)."""

import subprocess
import sys

import numpy as np
import pytest
import keras

import hgq_rewrite.proxy.registration as registration
from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT, check_bit_exact
from hgq_rewrite.proxy import UnsupportedLayerError, export_problems
from hgq_rewrite.proxy.hls4ml_handlers import remap_table
from proxy_harness import F64, q, random_kif


def _proxy(extra=None, input_quantizer=True, dtype=F64):
    rng = np.random.default_rng(0)
    inp = keras.Input((6,), dtype=dtype, name="x")
    x = q((1, 2, 3), SAT="SAT", name="q_in")(inp) if input_quantizer else inp
    dense = keras.layers.Dense(4, dtype=dtype, name="dense")
    x = dense(x)
    x = q(random_kif(rng, (4,)), overrides={"layers": {"dense": {"parallelization_factor": 1}}}, name="q_dense")(x)
    if extra is not None:
        x = extra(x)
    model = keras.Model(inp, x, name="bridge_proxy")
    dense.set_weights([np.round(rng.normal(0, 1, (6, 4)) * 4) / 4, np.zeros(4)])
    return model


def test_handlers_registered_under_our_class_paths():
    from hls4ml.converters.keras_v3 import layer_handlers

    FixedPointQuantizer.from_kif(1, 2, 3)  # the first proxy layer registers them
    assert registration.HLS4ML_HANDLERS_ERROR is None
    for cls in (FixedPointQuantizer, UnaryLUT):
        assert f"{cls.__module__}.{cls.__name__}" in layer_handlers


def test_parse_without_any_fallback(capsys):
    from hls4ml.converters.keras_v3_to_hls import parse_keras_v3_model

    model = _proxy()
    layers, inputs, outputs, _ = parse_keras_v3_model(model, allow_da_fallback=False, allow_v2_fallback=False)
    out = capsys.readouterr().out
    assert "handler used" not in out and "da4ml" not in out
    by_name = {c["name"]: c for c in layers}
    conf = by_name["q_dense"]
    assert conf["class_name"] == "FixedPointQuantizer"
    assert conf["fusible"] is None and conf["RND"] == "RND" and conf["SAT"] == "WRAP"
    assert conf["overrides"] == {"layers": {"dense": {"parallelization_factor": 1}}}
    k, b, i = conf["mask_kbi"]
    assert k.dtype == b.dtype == i.dtype == np.int16 and k.shape == (1, 4)
    # homogeneous quantizers are handed over as full-shape masks (see hls4ml_handlers)
    assert by_name["q_in"]["mask_kbi"][0].shape == (1, 6)


def test_convert_with_user_call_has_no_fallback_noise(tmp_path, capsys):
    import hls4ml

    model = _proxy(extra=lambda x: UnaryLUT.from_function("sigmoid", (1, 3, 1), (0, 0, 6), name="lut")(
        q((1, 3, 1), SAT="SAT", name="q_lut")(x)))
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, backend="Vivado", output_dir=str(tmp_path / "prj"), part="xcvu9p-flga2104-2L-e"
    )
    out = capsys.readouterr().out
    assert "handler used" not in out and "da4ml not installed" not in out
    assert hls_model.config.get_config_value("HLSConfig")["Model"].get("BitExact", None) in (None, True)
    assert hls_model.graph["dense"].get_attr("parallelization_factor") == 1
    lut = hls_model.graph["lut"]
    assert lut.attributes["table_size"] == 2 ** lut.get_input_variable().type.precision.width


def test_importing_without_hls4ml_raises_nothing():
    code = (
        "import sys; sys.modules['hls4ml'] = None\n"
        "import hgq_rewrite.proxy as p\n"
        "from hgq_rewrite.proxy import registration as r\n"
        "layer = p.FixedPointQuantizer.from_kif(1, 2, 3)\n"
        "assert r.HLS4ML_HANDLERS_ERROR is not None\n"
        "print('ok', type(r.HLS4ML_HANDLERS_ERROR).__name__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ok" in res.stdout


@pytest.mark.parametrize(
    "extra,layer_name,fragment",
    [
        (lambda x: keras.layers.Softmax(dtype=F64, name="softmax")(x), "softmax", "argmax"),
        (lambda x: keras.layers.Activation("softmax", dtype=F64, name="act_sm")(x), "act_sm", "not bit-exact"),
        (lambda x: keras.layers.Activation("tanh", dtype=F64, name="act_tanh")(x), "act_tanh", "UnaryLUT"),
        (lambda x: keras.layers.Activation("swish", dtype=F64, name="act_swish")(x), "act_swish", "UnaryLUT"),
        (lambda x: keras.layers.Reshape((4, 1), dtype=F64)(x), None, None),
        (lambda x: keras.layers.GlobalMaxPooling1D(dtype=F64, name="gmp")(keras.layers.Reshape((4, 1), dtype=F64)(x)),
         "gmp", "MaxPooling1D over the whole"),
        (lambda x: keras.layers.UpSampling1D(2, dtype=F64, name="up")(keras.layers.Reshape((4, 1), dtype=F64)(x)),
         "up", "cannot be converted"),
        (lambda x: keras.layers.Lambda(lambda v: v * 2, dtype=F64, name="lam")(x), "lam", "arbitrary Python"),
        (lambda x: keras.layers.BatchNormalization(dtype=F64, name="bn")(x), "bn", "fold it"),
    ],
)
def test_preflight_names_layer_and_remedy(extra, layer_name, fragment):
    model = _proxy(extra=extra)
    problems = export_problems(model)
    if layer_name is None:
        assert problems == []
        return
    assert any(p.layer == layer_name for p in problems), problems
    with pytest.raises(UnsupportedLayerError) as info:
        check_bit_exact(model, np.zeros((2, 6)))
    msg = str(info.value)
    assert f"'{layer_name}'" in msg and fragment in msg and "Remedy" in msg


def test_preflight_input_without_quantizer_float32_and_off_grid_weights():
    model = _proxy(input_quantizer=False, dtype="float32")
    model.get_layer("dense").set_weights([np.full((6, 4), 3 * 2.0**-35), np.zeros(4)])  # 35 fractional bits
    problems = {(p.layer, p.fatal): p for p in export_problems(model)}
    assert ("dense", True) in problems and "FixedPointQuantizer right after every Input" in str(problems["dense", True])
    notes = [str(p) for p in export_problems(model) if not p.fatal]
    assert any("float32" in n for n in notes) and any("binary fraction" in n for n in notes)


def test_check_bit_exact_bad_inputs_do_not_touch_model():
    model = _proxy()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="shape"):
        check_bit_exact(model, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="no samples"):
        check_bit_exact(model, np.zeros((0, 6)))
    with pytest.raises(ValueError, match="inputs"):
        check_bit_exact(model, [np.zeros((3, 6)), np.zeros((3, 6))])
    with pytest.raises(TypeError):
        check_bit_exact("not a model", np.zeros((3, 6)))
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_hls4ml_error_for_io_stream_is_explained(tmp_path):
    model = _proxy()
    with pytest.raises(UnsupportedLayerError, match="io_parallel") as info:
        check_bit_exact(model, np.zeros((2, 6)), io_type="io_stream", output_dir=str(tmp_path / "prj"))
    assert "q_dense" in str(info.value)


@pytest.mark.parametrize("kif_in", [(1, 2, 3), (0, 3, 2), (1, -1, 4)])
def test_remap_table_to_narrower_input_type(kif_in):
    rng = np.random.default_rng(5)
    k, i, f = kif_in
    n = 2 ** (k + i + f)
    table = rng.normal(size=n)
    values = np.arange(n, dtype=float)
    if k:
        values = np.where(values >= n // 2, values - n, values)
    values *= 2.0**-f
    same = remap_table(table, kif_in, bool(k), k + i + f, k + i)
    np.testing.assert_array_equal(same, table)
    # hls4ml narrowed the input to (k, i-1, f-2) (or to unsigned): each reachable code must hit the same entry
    for k2, i2, f2 in [(k, i - 1, f - 2), (0, i, f - 1)]:
        width = k2 + i2 + f2
        new = remap_table(table, kif_in, bool(k2), width, k2 + i2)
        assert new.size == 2**width
        codes = np.arange(2**width)
        vals = np.where(k2 and codes >= 2 ** (width - 1), codes - 2**width, codes) * 2.0**-f2
        for code, v in zip(codes, vals):
            if v in values:
                assert new[code] == table[np.nonzero(values == v)[0][0]]

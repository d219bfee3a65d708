"""QONNX export: qonnx's own execute_onnx against the proxy, bit for bit (tiny models, no compiler)."""

import numpy as np
import keras
import pytest

from hgq_rewrite.export import MissingExtraError, QONNXExportError, available, quant_encoding
from proxy_harness import F64, concat, hetero, inputs_with_overflow, model, q, set_dyadic_weights, unary_lut

needs_qonnx = pytest.mark.skipif(not available("qonnx"), reason="onnx/qonnx not installed: pip install 'hgq_rewrite[qonnx]'")


def _dense_chain(rng, RND, SAT):
    inp = keras.Input((6,), dtype=F64)
    x = hetero(rng, inp, RND=RND, SAT=SAT)
    d = keras.layers.Dense(5, activation="relu", dtype=F64)
    x = d(x)
    set_dyadic_weights(rng, d)
    x = hetero(rng, x, RND=RND, SAT=SAT, k=(1,), i=(-1, 2))  # narrow formats: overflow is common
    x = q((1, 2, 3), RND=RND, SAT=SAT)(x)
    return model(inp, x, f"chain_{RND}_{SAT}".lower())


def test_quant_encoding_numbers():
    # per-element (k, B, I): signed 4.2, unsigned 3.1, pruned
    k, b, i = np.array([1, 0, 0]), np.array([6, 3, 0]), np.array([3, 1, 0])
    enc = quant_encoding(k, b, i, "RND", "SAT")
    assert enc["bitwidth"] == 6 and enc["signed"] == 1 and enc["rounding"] == "FLOOR"
    np.testing.assert_array_equal(enc["scale"], [2.0**-3, 2.0**-2, 1.0])
    np.testing.assert_array_equal(enc["half"], [2.0**-4, 2.0**-3, 0.5])
    lo, hi = enc["clip"]
    np.testing.assert_array_equal(lo, [-4.0, 0.0, 0.0])
    np.testing.assert_array_equal(hi, [4.0 - 2.0**-3, 2.0 - 2.0**-2, 0.0])
    wrap = quant_encoding(k, b, i, "TRN", "WRAP")
    assert wrap["rounding"] == "ROUND" and wrap["pre_round"] == "TRN"
    np.testing.assert_array_equal(wrap["wrap"][1], [64.0, 8.0, 1.0])
    reduced = quant_encoding(k, b, i, "RND_CONV", "WRAP", exact_overflow=False)
    assert reduced["wrap"] is None and reduced["clip"] is None and reduced["rounding"] == "ROUND"
    np.testing.assert_array_equal(reduced["mask"], [1.0, 1.0, 0.0])
    # a signed 1-bit tensor is not written as 1 bit (qonnx would read it as bipolar +-1)
    assert quant_encoding(1, 1, 1, "TRN", "SAT")["bitwidth"] == 2


@needs_qonnx
@pytest.mark.parametrize("RND", ["RND", "TRN", "RND_CONV"])
@pytest.mark.parametrize("SAT", ["WRAP", "SAT", "SAT_SYM"])
def test_every_mode_is_exact_far_outside_the_ranges(RND, SAT):
    from hgq_rewrite.export import check_qonnx

    rng = np.random.default_rng(["RND", "TRN", "RND_CONV"].index(RND) * 3 + ["WRAP", "SAT", "SAT_SYM"].index(SAT))
    proxy = _dense_chain(rng, RND, SAT)
    x = inputs_with_overflow(rng, (6,), 400, far=100.0)
    rep = check_qonnx(proxy, x)
    assert rep.ok, str(rep)
    assert rep.op_counts["Quant"] == 3
    # the reduced form (no overflow ops) differs once elements leave their own ranges
    if SAT == "WRAP":
        assert not check_qonnx(proxy, x, exact_overflow=False).ok


@needs_qonnx
def test_layer_zoo_two_inputs_two_outputs_and_lut():
    from hgq_rewrite.export import check_qonnx

    rng = np.random.default_rng(3)
    img, seq = keras.Input((6, 6, 2), dtype=F64), keras.Input((8, 3), dtype=F64)
    a = hetero(rng, img)
    conv = keras.layers.Conv2D(3, 3, padding="same", activation="relu", dtype=F64)
    a = conv(a)
    a = hetero(rng, a)
    dw = keras.layers.DepthwiseConv2D(3, strides=1, padding="same", depth_multiplier=2, dtype=F64)
    a = dw(a)
    a = hetero(rng, a)
    a = keras.layers.MaxPooling2D(2, dtype=F64)(a)
    a = keras.layers.AveragePooling2D(1, dtype=F64)(a)
    a = keras.layers.GlobalAveragePooling2D(dtype=F64)(a)
    a = keras.layers.Flatten(dtype=F64)(a)
    b = hetero(rng, seq, SAT="SAT")
    c1 = keras.layers.Conv1D(4, 3, strides=2, padding="valid", dtype=F64)
    b = c1(b)
    b = hetero(rng, b)
    b = keras.layers.Permute((2, 1), dtype=F64)(b)
    b = keras.layers.AveragePooling1D(2, dtype=F64)(b)
    b = keras.layers.Reshape((-1,), dtype=F64)(b)
    d = keras.layers.Dense(6, dtype=F64)
    joined = concat([a, hetero(rng, d(b))])
    s = keras.layers.Add(dtype=F64)([joined, joined])
    s = q((1, 2, 2), SAT="WRAP")(s)
    out2 = unary_lut("tanh", (1, 2, 2), (1, 0, 5))(s)
    for layer in (conv, dw, c1, d):
        set_dyadic_weights(rng, layer)
    proxy = model([img, seq], [s, out2], "zoo")
    x = [inputs_with_overflow(rng, (6, 6, 2), 200), inputs_with_overflow(rng, (8, 3), 200)]
    rep = check_qonnx(proxy, x)
    assert rep.ok, str(rep)
    assert {"Conv", "MaxPool", "AveragePool", "ReduceMean", "MultiThreshold", "Concat", "Transpose"} <= set(rep.op_counts)
    rep = check_qonnx(proxy, x, lut="gather")
    assert rep.ok, str(rep)
    assert "Gather" in rep.op_counts and "MultiThreshold" not in rep.op_counts


@needs_qonnx
def test_hgq_model_reduced_form_exact_inside_the_calibration(tmp_path):
    import onnx

    import hgq_rewrite as hr
    from hgq_rewrite.export import check_qonnx

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inp = keras.Input((10,))
    x = keras.layers.Dense(8, activation="relu")(inp)
    out = keras.layers.Dense(3)(x)
    qmodel = hr.quantize(keras.Model(inp, out), beta=1e-5)
    calib = rng.normal(0, 1, (300, 10)).astype("float32")
    hr.trace_minmax(qmodel, calib)
    weights = [w.copy() for w in qmodel.get_weights()]
    path = tmp_path / "m.onnx"
    wrapper = hr.to_qonnx(qmodel, path)  # an HGQ model: to_proxy_model is called
    assert path.exists() and wrapper.graph.node
    loaded = onnx.load(str(path))
    quants = [n for n in loaded.graph.node if n.op_type == "Quant"]
    assert quants and all(n.domain == "qonnx.custom_op.general" for n in quants)
    init = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert all(init[n.input[3]].size == 1 for n in quants)  # scalar bitwidths only
    assert check_qonnx(qmodel, calib, exact_overflow=False).ok
    far = calib * 40
    assert check_qonnx(qmodel, far).ok
    assert all(np.array_equal(a, b) for a, b in zip(weights, qmodel.get_weights()))


@needs_qonnx
def test_lut_refusal_and_bad_arguments():
    from hgq_rewrite.export import to_qonnx

    inp = keras.Input((4,), dtype=F64)
    x = q((1, 2, 2), name="lut_in")(inp)
    y = unary_lut("sigmoid", (1, 2, 2), (0, 0, 6), name="my_sigmoid")(x)
    proxy = model(inp, y, "lut")
    with pytest.raises(QONNXExportError, match="my_sigmoid"):
        to_qonnx(proxy, lut="refuse")
    with pytest.raises(ValueError, match="dtype"):
        to_qonnx(proxy, dtype="float16")
    with pytest.raises(ValueError, match="batch_size"):
        to_qonnx(proxy, batch_size=0)
    with pytest.raises(TypeError):
        to_qonnx("model.keras")
    soft = keras.layers.Activation("softmax", dtype=F64, name="soft")
    with pytest.raises(QONNXExportError, match="soft"):
        to_qonnx(model(inp, soft(x), "softmax_model"))


def _every_code_and_beyond(kif_in):
    """Every code of ``kif_in``, the half-way points between codes (rounding ties), points a quarter step
    off the grid, and inputs far beyond the range on both sides."""
    from hgq_rewrite.proxy.unary_lut import lut_inputs

    codes = np.sort(lut_inputs(kif_in))
    step = 2.0 ** -kif_in[2]
    span = codes[-1] - codes[0] + step
    far = np.concatenate([codes[0] - span * np.array([0.01, 0.5, 1.0, 3.7, 40.0]),
                          codes[-1] + span * np.array([0.01, 0.5, 1.0, 3.7, 40.0])])
    return np.concatenate([codes, codes + step / 2, codes - step / 4, far]).reshape(-1, 1), codes.size


@needs_qonnx
@pytest.mark.parametrize("fn", ["tanh", "sigmoid", "neg_tanh"])
@pytest.mark.parametrize("SAT", ["SAT", "WRAP"])
def test_monotonic_lut_as_multithreshold_is_exact_on_every_code(fn, SAT):
    from hgq_rewrite.export import check_qonnx

    kif_in, kif_out = (1, 2, 4), ((0, 0, 6) if fn == "sigmoid" else (1, 0, 5))
    func = (lambda t: -keras.ops.tanh(t)) if fn == "neg_tanh" else fn  # neg_tanh: a non-increasing table
    inp = keras.Input((1,), dtype=F64)
    x = q(kif_in, SAT=SAT, name="lut_in")(inp)
    proxy = model(inp, unary_lut(func, kif_in, kif_out, name=f"my_{fn}")(x), f"mt_{fn}_{SAT}".lower())
    xs, n_codes = _every_code_and_beyond(kif_in)
    assert n_codes == 128
    rep = check_qonnx(proxy, xs, lut="multithreshold")
    assert rep.ok and rep.n_samples == 3 * 128 + 10, str(rep)
    assert rep.op_counts.get("MultiThreshold") == 1 and "Gather" not in rep.op_counts
    # every output level of the table is reached: the staircase is not trivially flat
    assert np.unique(rep.qonnx_output).size > 30
    assert check_qonnx(proxy, xs).op_counts.get("MultiThreshold") == 1  # the default ("auto") picks it too


@needs_qonnx
def test_multithreshold_refuses_gelu_and_unguarded_inputs():
    from hgq_rewrite.export import check_qonnx, to_qonnx
    from hgq_rewrite.export.qonnx import multithreshold_staircase

    inp = keras.Input((1,), dtype=F64)
    x = q((1, 2, 3), SAT="SAT", name="lut_in")(inp)
    gelu = model(inp, unary_lut("gelu", (1, 2, 3), (1, 2, 4), name="my_gelu")(x), "gelu")
    with pytest.raises(QONNXExportError, match=r"'my_gelu'.*not monotonic.*lut='gather'"):
        to_qonnx(gelu, lut="multithreshold")
    with pytest.raises(ValueError, match="not monotonic"):
        multithreshold_staircase(gelu.get_layer("my_gelu").table.numpy(), (1, 2, 3), (1, 2, 4))
    xs, _ = _every_code_and_beyond((1, 2, 3))
    rep = check_qonnx(gelu, xs)  # "auto" falls back to Gather, still exact
    assert rep.ok and "Gather" in rep.op_counts and "MultiThreshold" not in rep.op_counts, str(rep)
    # a monotonic table after a wider quantizer: out of its range the table wraps, MultiThreshold would saturate
    wide = q((1, 3, 3), SAT="SAT", name="wide_in")(inp)
    bare = model(inp, unary_lut("tanh", (1, 2, 3), (1, 0, 5), name="bare_tanh")(wide), "bare")
    with pytest.raises(QONNXExportError, match=r"'bare_tanh'.*FixedPointQuantizer"):
        to_qonnx(bare, lut="multithreshold")
    assert "Gather" in check_qonnx(bare, xs).op_counts
    with pytest.raises(ValueError, match="lut must be one of"):
        to_qonnx(gelu, lut="table")


def test_missing_extra_has_a_one_line_install_hint(monkeypatch):
    import builtins

    from hgq_rewrite.export import to_qonnx

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnx" or name.startswith("qonnx"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name, package=None: fake_import(name))
    with pytest.raises(MissingExtraError, match=r"pip install 'hgq_rewrite\[qonnx\]'") as info:
        to_qonnx(keras.Sequential())
    assert "\n" not in str(info.value)

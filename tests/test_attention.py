"""EinsumDense, the two-input HEinsum, LayerNormalization and MultiHeadAttention: each goes quantize → fit →
trace_minmax → to_proxy_model with the HGQ model and its proxy equal on every sample (values beyond the
calibration included), and (slow) through hls4ml's C simulation with 0 mismatching samples."""


import keras
import numpy as np
import pytest
from keras import layers as L

import hgq_rewrite as hr
from hgq_rewrite.layers import HEinsum, HEinsumDense, HLayerNormalization, HQuantize, HSoftmax
from hgq_rewrite.layers.base import bits_of
from hgq_rewrite.proxy import ProxyConversionError
from hgq_rewrite.rewrite import UnsupportedLayerError
from flow import assert_hls4ml_exact, mismatching_rows, needs_gxx, random_inputs, train_trace_proxy

N_TEST = 500
def _einsum_dense_model():
    x = keras.Input((5, 6))
    h = L.EinsumDense("abc,cde->abde", output_shape=(5, 2, 3), bias_axes="de", name="heads")(x)
    h = L.EinsumDense("abcd,cde->abe", output_shape=(5, 4), bias_axes="e", activation="relu", name="merge")(h)
    h = L.EinsumDense("abc,cd->abd", output_shape=(None, 3), activation="gelu", name="mlp")(h)
    return keras.Model(x, h, name="einsum_dense")


def _einsum_model():
    """HQuantize'd (T=6, heads=2, d=4) query and (S=5, 2, 4) key: scores (2, 6, 5) and the weighted keys."""
    q_in, k_in = keras.Input((6, 2, 4)), keras.Input((5, 2, 4))
    q, k = HQuantize(name="q")(q_in), HQuantize(name="k")(k_in)
    scores = HEinsum("aecd,abcd->acbe", name="scores")([k, q])
    context = HEinsum("acbe,aecd->abcd", name="context")([scores, k])
    return keras.Model([q_in, k_in], context, name="einsum")


def _attention_model(cross, dropout=0.0):
    x = keras.Input((6, 8))
    if cross:
        c = keras.Input((4, 5))
        h = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, name="mha")(x, c, c)
        return keras.Model([x, c], L.Dense(3, name="out")(h), name="cross_attention")
    h = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=dropout, name="mha")(x, x)
    return keras.Model(x, L.Dense(3, name="out")(h), name="self_attention")


def _encoder_model():
    """A transformer-encoder block: self-attention + residual, an EinsumDense MLP + residual, a Dense head."""
    x = keras.Input((6, 8))
    h = L.Add(name="res1")([x, L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)])
    f = L.EinsumDense("abc,cd->abd", output_shape=(6, 16), bias_axes="d", activation="relu", name="mlp1")(h)
    f = L.EinsumDense("abc,cd->abd", output_shape=(6, 8), bias_axes="d", name="mlp2")(f)
    h = L.Add(name="res2")([h, f])
    return keras.Model(x, L.Dense(3, name="head")(L.Flatten()(h)), name="encoder")


# -- EinsumDense ---------------------------------------------------------------------------------------------
def test_einsum_dense_converts_and_exports_exactly():
    model = _einsum_dense_model()
    plan = hr.explain(model)
    assert [plan[n].target for n in ("heads", "merge", "mlp")] == [
        "HEinsumDense", "HEinsumDense", "HEinsumDense + HActivation(gelu)"]
    assert all(plan[n].exports == "yes" for n in ("heads", "merge", "mlp"))
    q, proxy, x = train_trace_proxy(model)
    assert q.get_layer("heads").qbias.shape == (2, 3)  # Keras' bias shape
    assert [type(lay).__name__ for lay in proxy.layers].count("EinsumDense") == 3
    assert mismatching_rows(q, proxy, x) == 0


def test_einsum_dense_keeps_the_float_weights_and_ebops_are_input_times_kernel_bits():
    model = _einsum_dense_model()
    q = hr.quantize(model)
    for name in ("heads", "merge", "mlp"):
        np.testing.assert_array_equal(q.get_layer(name).kernel.numpy(), model.get_layer(name).kernel.numpy())
    np.testing.assert_array_equal(q.get_layer("heads").bias.numpy(), model.get_layer("heads").bias.numpy().ravel())
    hr.trace_minmax(q, random_inputs(model, 256, 0))
    layer, before = q.get_layer("merge"), q.get_layer("heads")
    b_in = np.asarray(bits_of(before.output_kif()), np.float64)
    b_w = np.asarray(layer.kernel_bits(exact=True), np.float64)
    assert layer.ebops == np.einsum("abcd,cde->abe", np.broadcast_to(b_in, (1, 5, 2, 3)), b_w).sum() > 0


def test_einsum_dense_equations_hls4ml_refuses_are_reported():
    x = keras.Input((5, 6))
    sums = L.EinsumDense("abc,cd->ad", output_shape=(4,), name="sums")(x)  # sums over the positions b
    ellipsis = L.EinsumDense("...c,cd->...d", output_shape=(3,), name="ellipsis")(x)
    probs = L.EinsumDense("abc,cd->abd", output_shape=(5, 3), activation="softmax", name="probs")(x)
    plan = hr.explain(keras.Model(x, [sums, ellipsis, probs]))
    assert (plan["probs"].target, plan["probs"].exports) == ("HEinsumDense + HSoftmax", "yes")
    assert plan["sums"].exports.startswith("no: equation 'abc,cd->ad' sums over 'b', found in one term only")
    assert plan["ellipsis"].decision == "unsupported" and "no '...'" in plan["ellipsis"].reason


def test_einsum_dense_saves_and_loads(tmp_path):
    model = _einsum_dense_model()
    q = hr.quantize(model)
    x = random_inputs(model, 64, 0)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert isinstance(loaded.get_layer("heads"), HEinsumDense)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), q.predict(x, verbose=0))


# -- Einsum of two inputs --------------------------------------------------------------------------------------
def test_einsum_of_two_inputs_exports_exactly_and_counts_bit_products():
    model = _einsum_model()
    x = random_inputs(model, 256, 0)
    hr.trace_minmax(model, x)
    proxy = hr.to_proxy_model(model)
    assert [type(lay).__name__ for lay in proxy.layers].count("ProxyEinsum") == 2
    assert mismatching_rows(model, proxy, random_inputs(model, N_TEST, 1, scale=1.5)) == 0
    bq, bk = (np.asarray(bits_of(model.get_layer(n).output_kif()), np.float64) for n in ("q", "k"))
    expected = np.einsum("aecd,abcd->acbe", np.broadcast_to(bk, (1, 5, 2, 4)), np.broadcast_to(bq, (1, 6, 2, 4)))
    assert model.get_layer("scores").ebops == expected.sum() > 0


def test_keras_ops_einsum_of_two_tensors_becomes_heinsum():
    q_in, k_in = keras.Input((6, 2, 4)), keras.Input((5, 2, 4))
    q, k = L.Dense(4, name="dq")(q_in), L.Dense(4, name="dk")(k_in)
    context = keras.ops.einsum("acbe,aecd->abcd", keras.ops.einsum("aecd,abcd->acbe", k, q), k)
    model = keras.Model([q_in, k_in], context, name="ops_einsum")
    plan = hr.explain(model)
    assert (plan["einsum"].target, plan["einsum"].exports, plan["einsum_1"].target) == ("HEinsum", "yes", "HEinsum")
    q, proxy, x = train_trace_proxy(model)
    assert isinstance(q.get_layer("einsum"), HEinsum)
    assert mismatching_rows(q, proxy, x) == 0
    three = keras.ops.einsum("abc,abc,abc->abc", q_in[:, :, 0], q_in[:, :, 1], q_in[:, :, 0])
    entry = next(e for e in hr.explain(keras.Model(q_in, three)).entries if e.float_class == "Einsum")
    assert entry.decision == "unsupported" and "einsum of 3 tensor(s)" in entry.reason


def test_einsum_needs_the_batch_letter_first():
    with pytest.raises(ValueError, match="must start every operand and the output with the batch axis"):
        HEinsum("bcd,abd->abc")


# -- LayerNormalization --------------------------------------------------------------------------------------
def _layer_norm_model():
    x = keras.Input((6, 8))
    h = L.LayerNormalization(name="ln")(L.Dense(8, name="d")(x))
    return keras.Model(x, L.Dense(3, name="out")(h), name="layer_norm")


def test_layer_normalization_trains_but_export_is_refused_with_the_remedy():
    model = _layer_norm_model()
    model.get_layer("ln").set_weights([np.full(8, 1.5, "float32"), np.full(8, 0.25, "float32")])
    entry = hr.explain(model)["ln"]
    assert (entry.decision, entry.target) == ("convert", "HLayerNormalization")
    assert entry.exports.startswith("no: hls4ml 1.3 has no bit-exact LayerNormalization")
    assert "remedy: replace it before export" in entry.exports
    with pytest.raises(UnsupportedLayerError, match="'ln': hls4ml 1.3 has no bit-exact LayerNormalization"):
        hr.quantize(model, strict=True)
    with pytest.warns(UserWarning, match="will not export"):
        q = hr.quantize(model, config={"defaults": {"kernel": {"init_bw": 16}, "output": {"init_bw": 16}}})
    ln = q.get_layer("ln")
    assert isinstance(ln, HLayerNormalization)
    np.testing.assert_array_equal(ln.gamma.numpy(), np.full(8, 1.5))
    np.testing.assert_array_equal(ln.offset.numpy(), np.full(8, 0.25))
    x = random_inputs(model, 128, 0)
    np.testing.assert_allclose(q.predict(x, verbose=0), model.predict(x, verbose=0), atol=2e-3)
    q.compile(keras.optimizers.Adam(1e-2), "mse")
    q.fit(x, np.zeros((128, 6, 3), "float32"), epochs=1, verbose=0)
    assert not np.array_equal(ln.gamma.numpy(), np.full(8, 1.5))  # it trains
    with pytest.warns(UserWarning, match="cannot be exported"):
        hr.trace_minmax(q, x)
    with pytest.raises(ProxyConversionError, match=r"'ln' \(HLayerNormalization\): hls4ml 1.3 has no bit-exact "
                                                   r"LayerNormalization.*Remedy: replace it before export"):
        hr.to_proxy_model(q)


# -- MultiHeadAttention --------------------------------------------------------------------------------------
def test_attention_becomes_einsums_and_a_softmax_with_the_trained_weights():
    model = _attention_model(cross=False, dropout=0.1)
    entry = hr.explain(model)["mha"]
    assert (entry.decision, entry.exports) == ("convert", "yes")
    assert entry.notes == ["dropout=0.1 left out: fine-tuning runs without it (inference never applied it)"]
    config = {"defaults": {"kernel": {"init_bw": 16}, "output": {"init_bw": 16}}}
    q = hr.quantize(model, config=config)
    inner = q.get_layer("mha")
    kinds = {lay.name: type(lay) for lay in inner.layers}
    assert {n: kinds[n] for n in ("query_proj", "key_proj", "value_proj", "output_proj")} == dict.fromkeys(
        ("query_proj", "key_proj", "value_proj", "output_proj"), HEinsumDense)
    assert (kinds["scores"], kinds["softmax"], kinds["context"]) == (HEinsum, HSoftmax, HEinsum)
    assert inner.get_layer("softmax").scale == np.float32(0.5)  # 1/sqrt(key_dim)
    mha = model.get_layer("mha")
    for mine, theirs in (("query_proj", mha.query_dense), ("output_proj", mha.output_dense)):
        np.testing.assert_array_equal(inner.get_layer(mine).kernel.numpy(), theirs.kernel.numpy())
    x = random_inputs(model, 128, 0)
    np.testing.assert_allclose(q.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.02)


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_attention_exports_exactly(cross):
    model = _attention_model(cross)
    q, proxy, x = train_trace_proxy(model)
    kinds = [type(lay).__name__ for lay in proxy.layers]
    assert (kinds.count("EinsumDense"), kinds.count("ProxyEinsum"), kinds.count("FixedPointSoftmax")) == (4, 2, 1)
    assert sum(lay.ebops for lay in q.get_layer("mha").layers if hasattr(lay, "ebops")) > 0
    assert mismatching_rows(q, proxy, x) == 0


def test_masked_gated_and_score_returning_attention_is_refused():
    x = keras.Input((6, 8))
    mask = keras.Input((6, 6), dtype="bool")
    outs = [L.MultiHeadAttention(2, 4, name="masked")(x, x, attention_mask=mask),
            L.MultiHeadAttention(2, 4, name="causal")(x, x, use_causal_mask=True),
            L.MultiHeadAttention(2, 4, name="scores")(x, x, return_attention_scores=True)[0],
            L.MultiHeadAttention(2, 4, use_gate=True, name="gated")(x, x)]
    plan = hr.explain(keras.Model([x, mask], outs))
    assert plan["masked"].decision == "unsupported"
    assert "masked attention (attention_mask)" in plan["masked"].reason and "no masks" in plan["masked"].reason
    assert "masked attention (use_causal_mask)" in plan["causal"].reason
    assert "return_attention_scores=True" in plan["scores"].reason
    assert "use_gate=True is not supported" in plan["gated"].reason


def test_attention_model_saves_and_loads(tmp_path):
    model = _attention_model(cross=True)
    q = hr.quantize(model)
    x = random_inputs(model, 32, 0)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), q.predict(x, verbose=0))


# -- through hls4ml ------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_gxx
def test_einsum_dense_and_einsum_are_bit_exact_in_hls4ml():
    _, proxy, x = train_trace_proxy(_einsum_dense_model())
    assert_hls4ml_exact(proxy, x)
    model = _einsum_model()
    hr.trace_minmax(model, random_inputs(model, 256, 0))
    assert_hls4ml_exact(hr.to_proxy_model(model), random_inputs(model, N_TEST, 1, scale=1.5))


@pytest.mark.slow
@needs_gxx
@pytest.mark.parametrize("make", [lambda: _attention_model(False), lambda: _attention_model(True), _encoder_model],
                         ids=["self", "cross", "encoder"])
def test_attention_is_bit_exact_in_hls4ml(make):
    q, proxy, x = train_trace_proxy(make())
    assert mismatching_rows(q, proxy, x) == 0
    assert_hls4ml_exact(proxy, x)

"""quantize(): converted structure, exact weight transfer, training, errors, untouched inputs."""

import keras
import numpy as np
import pytest
from keras import layers as L
from test_rewrite_models import HIGH_BITS, MODELS, fingerprint, sample_inputs, sample_targets, subclassed_model

from hgq_rewrite.layers import HActivation, HAdd, HConv1DBatchNorm, HDense, HDenseBatchNorm, HQuantize, HSoftmax
from hgq_rewrite.rewrite import UnsupportedLayerError, UnsupportedModelError, quantize


def _outputs(model, x):
    return [np.asarray(o) for o in keras.tree.flatten(model.predict(x, verbose=0))]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_high_bitwidth_matches_float(name):
    m = MODELS[name]()
    before = fingerprint(m, HIGH_BITS)
    q = quantize(m, HIGH_BITS, beta=1e-6)
    assert fingerprint(m, HIGH_BITS) == before
    assert type(q) is type(m) or isinstance(q, keras.Model)
    x = sample_inputs(m, 128)
    for yf, yq in zip(_outputs(m, x), _outputs(q, x)):
        np.testing.assert_allclose(yq, yf, atol=2e-3 * max(1.0, np.abs(yf).max()), rtol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_quantized_model_trains(name):
    m = MODELS[name]()
    before = fingerprint(m)
    q = quantize(m, beta=1e-6)
    x, y = sample_inputs(m, 128), sample_targets(m, 128)
    # eager: tracing an HGQ model's train step costs ~10 s; graph mode is covered by one model
    q.compile(keras.optimizers.Adam(1e-2), "mse", run_eagerly=name != "jet_tagger")
    hist = q.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(hist)) and hist[-1] < hist[0], hist
    # training the quantized model leaves the float model alone
    assert fingerprint(m) == before


def test_jet_tagger_structure_and_settings():
    m = MODELS["jet_tagger"]()
    q = quantize(m, {"types": {"Dense": {"kernel": {"init_bw": 7}}}, "names": {"logits": {"parallel_factor": 1}}},
                 beta=3e-5)
    assert isinstance(q, keras.Sequential) and q.name == "jet_tagger"
    assert [l.name for l in q.layers] == ["jets_quantizer", "dense1", "dense2", "dense3", "logits"]
    assert isinstance(q.layers[0], HQuantize)
    d1 = q.get_layer("dense1")
    assert isinstance(d1, HDenseBatchNorm) and d1.activation_name == "relu"
    assert d1.kq_conf["init_bw"] == 7 and d1.beta == pytest.approx(3e-5)
    bn = m.get_layer("bn1")
    np.testing.assert_array_equal(np.asarray(d1.moving_variance), np.asarray(bn.moving_variance))
    np.testing.assert_array_equal(np.asarray(d1.bn_gamma), np.asarray(bn.gamma))
    out = q.get_layer("logits")
    assert type(out) is HDense and out.activation_name == "linear" and out.parallel_factor == 1


def test_nested_kept_nested_and_shared_kept_shared():
    m = MODELS["nested_shared"]()
    q = quantize(m, HIGH_BITS)
    enc = q.get_layer("encoder")
    assert isinstance(enc, keras.Sequential)
    assert [type(l).__name__ for l in enc.layers] == ["HDenseBatchNorm", "HDense"]
    shared = q.get_layer("shared")
    assert isinstance(shared, HDense) and shared.activation_name == "relu"
    calls = [n for n in shared._inbound_nodes if any(n in ns for ns in q._nodes_by_depth.values())]
    assert len(calls) == 2
    np.testing.assert_array_equal(np.asarray(shared.kernel), np.asarray(m.get_layer("shared").kernel))


def test_keep_float_places_quantizers():
    m = MODELS["jet_tagger"]()
    cfg = dict(HIGH_BITS, names={"dense2": None})
    with pytest.warns(UserWarning, match="'bn2' is kept float"):
        q = quantize(m, cfg)
    names = [l.name for l in q.layers]
    assert names == ["jets_quantizer", "dense1", "dense2", "bn2", "bn2_quantizer", "relu2", "dense3", "logits"]
    d2 = q.get_layer("dense2")
    assert type(d2) is L.Dense and d2 is not m.get_layer("dense2")
    assert isinstance(q.get_layer("relu2"), HActivation)
    x = sample_inputs(m, 64)
    np.testing.assert_allclose(_outputs(q, x)[0], _outputs(m, x)[0], atol=2e-3 * np.abs(_outputs(m, x)[0]).max())


def test_everything_float_warns():
    m = MODELS["two_input"]()
    with pytest.warns(UserWarning, match="no layer was converted"):
        q = quantize(m, {"patterns": {".*": None}})
    assert not any(isinstance(l, (HQuantize, HDense)) for l in q.layers)


def test_unsupported_layers_one_error_with_remedies():
    inner = keras.Sequential([keras.Input((4, 3)), L.GRU(2, name="gru")], name="inner")
    x = keras.Input((4, 3), name="x")
    h = L.LSTM(3, return_sequences=True, name="lstm")(x)
    h = L.Dense(3, name="d")(h)
    y = L.Concatenate(name="cat")([inner(h), L.Dense(2, name="e")(L.Flatten()(h))])
    m = keras.Model(x, y)
    before = fingerprint(m)
    with pytest.raises(UnsupportedLayerError) as e:
        quantize(m)
    msg = str(e.value)
    assert "2 layer(s)" in msg and "'lstm'" in msg and "'inner/gru'" in msg
    assert "register_converter" in msg and "'lstm': None" in msg and "'inner/gru': None" in msg
    q = quantize(m, {"names": {"lstm": None, "inner/gru": None}})
    assert isinstance(q.get_layer("lstm_quantizer"), HQuantize)
    assert fingerprint(m) == before


def test_subclassed_model_error():
    net = subclassed_model()
    with pytest.raises(UnsupportedModelError, match="subclassed"):
        quantize(net)


def test_keras_op_nodes_need_a_decision():
    x = keras.Input((4,), name="x")
    h = L.Dense(4, name="d")(x)
    y = L.Dense(2, name="e")(keras.ops.tanh(h))
    m = keras.Model(x, y)
    op = next(c for c in m.operations if not isinstance(c, (L.InputLayer, L.Dense)))
    with pytest.raises(UnsupportedLayerError, match=op.name):
        quantize(m)
    q = quantize(m, {"names": {op.name: None}, **HIGH_BITS})
    xs = sample_inputs(m, 16)
    np.testing.assert_allclose(_outputs(q, xs)[0], _outputs(m, xs)[0], atol=5e-3)


def test_non_native_activations_and_merge_layers():
    x = keras.Input((6,), name="x")
    a = L.Dense(6, activation="sigmoid", name="sig")(x)
    b = L.Activation("tanh", name="tanh")(L.Dense(6, name="lin")(x))
    y = L.Add(name="add")([a, b])
    m = keras.Model(x, y)
    q = quantize(m, HIGH_BITS)
    assert isinstance(q.get_layer("sig_sigmoid"), HActivation)
    assert isinstance(q.get_layer("add"), HAdd)
    xs = sample_inputs(m, 32)
    np.testing.assert_allclose(_outputs(q, xs)[0], _outputs(m, xs)[0], atol=2e-3)


def test_frozen_layers_stay_frozen_and_serialization(tmp_path):
    m = MODELS["conv1d"]()
    m.get_layer("conv1").trainable = False
    q = quantize(m, HIGH_BITS)
    assert isinstance(q.get_layer("conv1"), HConv1DBatchNorm) and not q.get_layer("conv1").trainable
    path = tmp_path / "q.keras"
    q.save(path)
    r = keras.saving.load_model(path)
    x = sample_inputs(m, 16)
    np.testing.assert_allclose(_outputs(r, x)[0], _outputs(q, x)[0], atol=1e-6)


def test_serialization_nested(tmp_path):
    q = quantize(MODELS["nested_shared"](), HIGH_BITS)
    q.save(tmp_path / "n.keras")
    r = keras.saving.load_model(tmp_path / "n.keras")
    x = sample_inputs(q, 16)
    np.testing.assert_allclose(_outputs(r, x)[0], _outputs(q, x)[0], atol=1e-6)


def test_dict_inputs_outputs_softmax_and_call_keywords():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    h = L.Concatenate(name="cat")([L.Dense(4, name="da")(a), b])
    h = L.Dropout(0.5, name="drop")(h, training=False)  # recorded keyword, passed on
    p = L.Softmax(name="sm")(L.Dense(3, name="logits")(h))  # Softmax records mask=None
    m = keras.Model({"a": a, "b": b}, {"p": p, "h": h})
    q = quantize(m, HIGH_BITS)
    assert isinstance(q.get_layer("sm"), HSoftmax)
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(8, 4)).astype("float32"), "b": rng.normal(size=(8, 3)).astype("float32")}
    yq, yf = q.predict(x, verbose=0), m.predict(x, verbose=0)
    assert set(yq) == {"p", "h"}
    for k in yf:
        np.testing.assert_allclose(yq[k], yf[k], atol=1e-3)


def test_nested_functional_called_twice_deep_nesting_and_float_feed():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4, name="d"), L.ReLU(name="r")], name="inner")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    pair = keras.Model([a, b], L.Add(name="sum")([inner(a), L.Dense(4, name="e")(b)]), name="pair")
    x, y = keras.Input((4,), name="x"), keras.Input((4,), name="y")
    h1 = pair([x, y])
    h2 = pair([L.Dense(4, name="float_d")(y), h1])
    m = keras.Model([x, y], L.Dense(2, name="out")(L.Concatenate(name="cat")([h1, h2])), name="top")
    before = fingerprint(m)
    q = quantize(m, dict(HIGH_BITS, names={"float_d": None, "pair/inner/d": {"beta": 1e-3}}))
    assert fingerprint(m) == before
    qpair = q.get_layer("pair")
    assert len([n for n in qpair._inbound_nodes if any(n in ns for ns in q._nodes_by_depth.values())]) == 2
    d = qpair.get_layer("inner").get_layer("d")
    assert isinstance(d, HDense) and d.activation_name == "relu" and d.beta == pytest.approx(1e-3)
    assert isinstance(q.get_layer("float_d_quantizer"), HQuantize)
    xs = sample_inputs(m, 32)
    np.testing.assert_allclose(_outputs(q, xs)[0], _outputs(m, xs)[0], atol=2e-3)


def test_training_the_quantized_model_leaves_the_float_model_intact():
    # on JAX a weight transferred by sharing the float variable's array would be deleted by the first
    # training step of the quantized model (Keras donates the trained state's buffers)
    x = keras.Input((6,))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(8, name="d1")(x))
    model = keras.Model(x, keras.layers.Dense(2, name="d2")(keras.layers.Activation("relu")(h)))
    before = [np.array(w) for w in model.get_weights()]
    q = quantize(model)
    rng = np.random.default_rng(0)
    q.compile(keras.optimizers.Adam(1e-2), "mse")
    q.fit(rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 2)).astype("float32"), epochs=2, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)

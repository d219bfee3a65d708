"""explain(): decisions, reasons, rule attribution, rendering; user converters."""

import json

import keras
import pytest
from keras import layers as L
from test_rewrite_models import conv1d_model, jet_tagger, nested_shared, residual_convnet, two_input

from hgq_rewrite.layers import HActivation, HDense, HQuantize, PFlatten
from hgq_rewrite.rewrite import Conversion, explain, quantize, register_converter, unregister_converter


def decisions(plan):
    return {e.path: (e.decision, e.target) for e in plan}


def test_jet_tagger_folds_and_fuses():
    plan = explain(jet_tagger(), beta=1e-5)
    d = decisions(plan)
    assert d["jets"][0] == "input" and d["jets_quantizer"] == ("insert", "HQuantize")
    for i in (1, 2, 3):
        assert d[f"dense{i}"] == ("convert", "HDenseBatchNorm")
        assert d[f"bn{i}"] == ("fold", f"dense{i}")
        assert d[f"relu{i}"] == ("fuse", f"dense{i}")
    assert d["logits"] == ("convert", "HDense")
    e = plan["dense1"]
    assert e.fields["beta"] == 1e-5 and e.sources["beta"] == "beta="
    assert "kernel.init_bw" in e.fields and e.sources["kernel.init_bw"] == "default"
    assert "'bn1' folded in" in e.reason and "relu fused" in e.reason


def test_every_model_fully_planned():
    for make in (jet_tagger, residual_convnet, nested_shared, two_input, conv1d_model):
        plan = explain(make())
        assert not plan.unsupported and not plan.unmatched
        assert all(e.decision != "float" for e in plan), make.__name__


def test_residual_and_conv1d_targets():
    d = decisions(explain(residual_convnet()))
    assert d["conv1"] == ("convert", "HConv2DBatchNorm") and d["relu1"] == ("fuse", "conv1")
    assert d["skip"] == ("convert", "HAdd") and d["pool"] == ("convert", "PMaxPooling2D")
    assert d["gap"] == ("convert", "PGlobalAveragePooling2D") and d["conv3"] == ("convert", "HConv2D")
    d = decisions(explain(conv1d_model()))
    assert d["conv1"] == ("convert", "HConv1DBatchNorm") and d["relu1"] == ("fuse", "conv1")
    assert d["perm"] == ("convert", "PPermute") and d["pool2"] == ("convert", "PAveragePooling1D")
    d = decisions(explain(two_input()))
    assert d["dense_b"] == ("convert", "HDense + HActivation(tanh)")
    assert d["drop"] == ("convert", "PDropout") and d["concat"] == ("convert", "PConcatenate")
    assert d["towers_quantizer"][0] == d["tracks_quantizer"][0] == "insert"


def test_nested_and_shared_entries():
    plan = explain(nested_shared())
    d = decisions(plan)
    assert d["encoder"] == ("nested", "Sequential")
    assert d["encoder/dense_1"] == ("convert", "HDenseBatchNorm")
    assert d["encoder/bn"] == ("fold", "encoder/dense_1")
    assert plan["shared"].calls == 2 and d["shared"] == ("convert", "HDense")
    # the inner input is quantized once, outside the nested model
    assert [e.path for e in plan.by_decision("insert")] == ["features_quantizer"]


def _bn_cases():
    x = keras.Input((4,), name="x")
    a = L.Dense(4, name="two_users")(x)
    b1 = L.BatchNormalization(name="bn_two_users")(a)
    b2 = L.Dense(4, activation="relu", name="has_relu")(a)
    b2 = L.BatchNormalization(name="bn_after_relu")(b2)
    s = L.Add(name="add")([b1, b2])
    s = L.BatchNormalization(name="bn_after_add")(s)
    r = L.Dense(4, name="d_relu_two")(s)
    r1 = L.ReLU(name="relu_not_fused")(r)
    out = L.Concatenate(name="cat")([r1, r])
    img = keras.Input((4, 4, 2), name="img")
    c = L.Conv2D(3, 2, name="conv")(img)
    c = L.BatchNormalization(axis=1, name="bn_axis1")(c)
    c = L.Flatten(name="flat")(c)
    return keras.Model([x, img], [out, c], name="bn_cases")


def test_bn_that_cannot_fold_is_kept_float_with_reason():
    plan = explain(_bn_cases())
    reasons = {e.path: e.reason for e in plan.by_decision("float")}
    assert set(reasons) == {"bn_two_users", "bn_after_relu", "bn_after_add", "bn_axis1"}
    assert "other consumers" in reasons["bn_two_users"]
    assert "already applies an activation" in reasons["bn_after_relu"]
    assert "not a Dense/Conv layer" in reasons["bn_after_add"]
    assert "axis 1" in reasons["bn_axis1"]
    assert plan["relu_not_fused"].decision == "convert"
    assert "relu not fused" in plan["relu_not_fused"].notes[0]
    # float BN outputs are re-quantized for the H-layers after them
    assert plan["bn_after_add_quantizer"].decision == "insert"
    with pytest.warns(UserWarning, match="cannot be folded"):
        quantize(_bn_cases())


def test_unsupported_and_kept_float_entries():
    x = keras.Input((4, 3), name="x")
    h = L.LSTM(5, name="lstm")(x)
    y = L.Dense(2, name="d")(h)
    m = keras.Model(x, y)
    plan = explain(m)
    assert plan["lstm"].decision == "unsupported" and "no converter for LSTM" in plan["lstm"].reason
    assert "x_quantizer" not in plan  # only the float LSTM reads x
    plan = explain(m, {"names": {"lstm": None}})
    assert plan["lstm"].decision == "float" and plan["lstm"].reason == "by rule names:lstm"
    assert plan["lstm"].sources == {"keep_float": "names:lstm"}
    assert plan["lstm_quantizer"].decision == "insert"
    assert plan["x"].reason.startswith("model input, no HQuantize")


def test_rendering_and_dict():
    plan = explain(nested_shared(), {"types": {"Dense": {"beta": 2e-5}}, "names": {"nope": None}})
    text = str(plan)
    for needle in ["encoder/dense_1", "folded into encoder/dense_1", "beta=2e-05 [types:Dense]",
                   "shared, 2 calls", "'nope' matches no layer"]:
        assert needle in text, needle
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["model"] == "nested" and d["unmatched"][0]["key"] == "nope"
    row = next(r for r in d["layers"] if r["path"] == "encoder/bn")
    assert row["decision"] == "fold" and row["summary"] == "folded into encoder/dense_1"
    assert "convert=" in repr(plan)


# --------------------------------------------------------------------------- user converters


class Scale(keras.layers.Layer):
    """A custom layer: y = x * w (one weight per feature)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_custom_layer_unsupported_until_registered():
    x = keras.Input((3,), name="x")
    m = keras.Model(x, L.Dense(2, name="d")(Scale(name="scale")(x)))
    assert explain(m)["scale"].decision == "unsupported"

    @register_converter(Scale, target="HDense(diagonal)", fields=("beta", "kernel", "activation"))
    def convert_scale(layer, settings):
        n = layer.w.shape[0]
        new = HDense(n, use_bias=False, name=settings.name, **settings.kwargs("beta", "kq_conf", "paq_conf"))

        def transfer():
            new.kernel.assign(keras.ops.diag(layer.w))
            new.adapt_kernel_bits()

        return Conversion([new], transfer)

    try:
        plan = explain(m, {"types": {"Scale": {"beta": 1e-3}}})
        e = plan["scale"]
        assert (e.decision, e.target) == ("convert", "HDense(diagonal)")
        assert "user converter" in e.reason and e.sources["beta"] == "types:Scale"
        assert "parallel_factor" not in e.fields
        m.get_layer("scale").w.assign([1.0, 2.0, 3.0])
        q = quantize(m, {"defaults": {"kernel": {"init_bw": 16}, "activation": {"init_bw": 16}}})
        assert isinstance(q.get_layer("scale"), HDense)
        xs = keras.random.normal((8, 3), seed=1)
        assert keras.ops.max(keras.ops.abs(q(xs) - m(xs))) < 1e-3
    finally:
        unregister_converter(Scale)


def test_subclass_uses_base_converter_unless_registered():
    class MyDense(L.Dense):
        pass

    x = keras.Input((3,), name="x")
    m = keras.Model(x, MyDense(2, name="mine")(x))
    e = explain(m)["mine"]
    assert e.target == "HDense" and "base class Dense" in e.reason

    @register_converter(MyDense)
    def mine(layer, settings):
        return HActivation("linear", name=settings.name)

    try:
        e = explain(m)["mine"]
        assert e.target == "mine" and "user converter" in e.reason
    finally:
        unregister_converter(MyDense)


def test_register_converter_rejects_non_class():
    with pytest.raises(TypeError, match="layer class"):
        register_converter("Dense")


def test_hgq_layers_already_in_the_model_are_copied():
    x = keras.Input((4, 2), name="x")
    h = L.Dense(2, name="d")(PFlatten(name="f")(HQuantize(name="q")(x)))
    m = keras.Model(x, h)
    plan = explain(m)
    assert plan["q"].decision == "convert" and "already an HGQ layer" in plan["q"].target
    assert not plan.by_decision("insert")  # q quantizes the input itself
    q = quantize(m)
    assert q.get_layer("q") is not m.get_layer("q") and isinstance(q.get_layer("f"), PFlatten)

"""Float models used by the rewrite tests (imported as ``test_rewrite_models``), and their smoke tests."""

import hashlib
import json

import keras
import numpy as np
from keras import layers as L

# High initial bitwidths: the quantized model must then reproduce the float one.
HIGH_BITS = {"defaults": {"kernel": {"init_bw": 16}, "activation": {"init_bw": 16}}}


def _randomize_bn(model, seed=0):
    """Give every BatchNormalization non-trivial statistics (so folding is really tested)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 2.0, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.uniform(0.5, 2.0, n)]
            )
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        yield layer


def jet_tagger():
    """Sequential MLP 16-64-32-32-5, BatchNorm + relu after each hidden Dense."""
    keras.utils.set_random_seed(1)
    m = keras.Sequential(
        [
            keras.Input((16,), name="jets"),
            L.Dense(64, name="dense1"),
            L.BatchNormalization(name="bn1"),
            L.Activation("relu", name="relu1"),
            L.Dense(32, name="dense2"),
            L.BatchNormalization(name="bn2"),
            L.ReLU(name="relu2"),
            L.Dense(32, name="dense3"),
            L.BatchNormalization(name="bn3"),
            L.Activation("relu", name="relu3"),
            L.Dense(5, name="logits"),
        ],
        name="jet_tagger",
    )
    return _randomize_bn(m)


def residual_convnet():
    """Conv2D + BN + relu, a skip connection through Add, max pooling, GAP, Dense head."""
    keras.utils.set_random_seed(2)
    x = keras.Input((8, 8, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", name="conv1")(x)
    a = L.BatchNormalization(name="bn1")(a)
    a = L.ReLU(name="relu1")(a)
    b = L.Conv2D(4, 3, padding="same", name="conv2")(a)
    s = L.Add(name="skip")([a, b])
    s = L.MaxPooling2D(2, name="pool")(s)
    s = L.Conv2D(6, 3, activation="relu", name="conv3")(s)
    s = L.GlobalAveragePooling2D(name="gap")(s)
    y = L.Dense(3, name="head")(s)
    return _randomize_bn(keras.Model(x, y, name="resnet"))


def nested_shared():
    """A nested Sequential encoder, and one Dense layer shared by two branches."""
    keras.utils.set_random_seed(3)
    encoder = keras.Sequential(
        [L.Dense(12, name="dense_1"), L.BatchNormalization(name="bn"), L.ReLU(name="relu"), L.Dense(8, name="dense_2")],
        name="encoder",
    )
    x = keras.Input((6,), name="features")
    shared = L.Dense(8, activation="relu", name="shared")
    e = encoder(x)
    b1 = shared(e)
    b2 = shared(L.Dense(8, name="side")(x))
    y = L.Concatenate(name="concat")([b1, b2])
    y = L.Dense(2, name="out")(y)
    return _randomize_bn(keras.Model(x, y, name="nested"))


def two_input():
    """Two inputs, two outputs (one per branch plus a merged head)."""
    keras.utils.set_random_seed(4)
    a = keras.Input((10,), name="tracks")
    b = keras.Input((4, 3), name="towers")
    ha = L.Dense(8, activation="relu", name="dense_a")(a)
    hb = L.Flatten(name="flat")(b)
    hb = L.Dense(8, activation="tanh", name="dense_b")(hb)
    h = L.Concatenate(name="concat")([ha, hb])
    h = L.Dropout(0.1, name="drop")(h)
    y = L.Dense(3, name="cls")(h)
    r = L.Dense(1, name="reg")(ha)
    return keras.Model([a, b], [y, r], name="two_input")


def conv1d_model():
    """Conv1D + BN + relu, pooling, Permute/Reshape, Flatten, Dense."""
    keras.utils.set_random_seed(5)
    x = keras.Input((16, 2), name="series")
    h = L.Conv1D(4, 3, name="conv1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.Activation("relu", name="relu1")(h)
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(4, 3, padding="same", activation="relu", name="conv2")(h)
    h = L.AveragePooling1D(2, name="pool2")(h)
    h = L.Permute((2, 1), name="perm")(h)
    h = L.Reshape((12,), name="reshape")(h)
    y = L.Dense(3, name="out")(h)
    return _randomize_bn(keras.Model(x, y, name="conv1d"))


MODELS = {
    "jet_tagger": jet_tagger,
    "resnet": residual_convnet,
    "nested_shared": nested_shared,
    "two_input": two_input,
    "conv1d": conv1d_model,
}


def sample_inputs(model, n=64, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, scale, size=(n, *t.shape[1:])).astype("float32") for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def sample_targets(model, n=64, seed=1):
    rng = np.random.default_rng(seed)
    ys = [rng.normal(size=(n, *t.shape[1:])).astype("float32") for t in model.outputs]
    return ys[0] if len(ys) == 1 else ys


def fingerprint(model, config=None):
    """Hash of everything quantize/explain must leave alone: weights, graph records, config."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    for layer in _all_layers(model):
        h.update(f"{layer.name}:{type(layer).__name__}:{len(layer._inbound_nodes)}:{layer.trainable}".encode())
    h.update(json.dumps(config, sort_keys=True, default=repr).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- smoke tests


def test_float_models_build_and_run():
    for name, make in MODELS.items():
        m = make()
        out = m.predict(sample_inputs(m, 4), verbose=0)
        assert all(np.all(np.isfinite(o)) for o in keras.tree.flatten(out)), name


def test_fingerprint_sees_weight_changes():
    m = jet_tagger()
    before = fingerprint(m, {"a": 1})
    assert fingerprint(m, {"a": 1}) == before
    assert fingerprint(m, {"a": 2}) != before
    m.get_layer("dense1").bias.assign(np.ones(64))
    assert fingerprint(m, {"a": 1}) != before


def subclassed_model():
    """A built subclassed model (not Functional or Sequential), which the rewrite must refuse."""

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(keras.ops.zeros((1, 3)))
    return net

"""to_proxy_model: structure, HGQ == proxy on calibration data, errors (no hls4ml compile here)."""

import numpy as np
import pytest
import keras
from keras import ops

import hgq_rewrite as hr
from hgq_rewrite.layers import (
    HActivation,
    HAdd,
    HConv2D,
    HDense,
    HQuantize,
    PAveragePooling2D,
    PConcatenate,
    PFlatten,
    PReshape,
)
from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT, export_problems, predict_float64, to_proxy_model
from hgq_rewrite.proxy.convert import ProxyConversionError
from hgq_rewrite.proxy.frac import conv_frac as _conv_frac, dense_frac as _dense_frac, frac_bits
from hgq_rewrite.quantizers import NotTracedError
from models import every_layer_data, every_layer_model


def soft_cube(x):
    """A custom unary activation (module level so the HGQ model stays serializable)."""
    return ops.clip(x * x * x * 0.125, -2.0, 2.0)


def nested_model(beta=1e-6):
    """Nested model, a 3-input HAdd, a 3-input PConcatenate, a custom activation and HDense on a rank-3 tensor."""
    inner_in = keras.Input((12,), name="inner_in")
    h = HDense(8, beta=beta, name="inner_dense")(inner_in)
    h = HActivation(soft_cube, beta=beta, paq_conf={"init_bw": 5}, name="inner_cube")(h)
    inner = keras.Model(inner_in, h, name="inner")

    x_in = keras.Input((12,), name="x")
    x = HQuantize(beta=beta, name="q_x")(x_in)
    a = inner(x)
    b = HDense(8, activation="relu", beta=beta, name="dense_b")(x)
    c = HDense(8, beta=beta, name="dense_c")(x)
    s = HAdd(beta=beta, name="add3")([a, b, c])
    cat = PConcatenate(name="cat3")([s, a, b])  # 24
    r = PReshape((4, 6), name="reshape")(cat)
    r = HDense(3, beta=beta, name="dense_nd")(r)  # Dense on (4, 6): parallel_factor 4
    r = PFlatten(name="flat")(r)
    r = HActivation("relu", beta=beta, name="relu")(r)
    out = HDense(4, beta=beta, name="out")(r)
    return keras.Model(x_in, out, name="nested")


def nested_data(n=256, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.5, (n, 12)).astype("float32")


@pytest.fixture(scope="module")
def every_layer():
    keras.utils.set_random_seed(3)
    model = every_layer_model()
    xs, _ = every_layer_data(256)
    hr.trace_minmax(model, xs)
    return model, xs


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(4)
    model = nested_model()
    x = nested_data()
    hr.trace_minmax(model, x)
    return model, x


@pytest.mark.parametrize("aggressive", [True, False])
def test_every_layer_proxy_equals_hgq_on_calibration_data(every_layer, aggressive):
    model, xs = every_layer
    proxy = to_proxy_model(model, aggressive=aggressive)
    np.testing.assert_array_equal(predict_float64(proxy, xs), model.predict(xs, verbose=0))
    overflow = {layer.SAT for layer in proxy.layers if isinstance(layer, FixedPointQuantizer) and "lut_in" not in layer.name}
    assert overflow == {"WRAP" if aggressive else "SAT"}


def test_nested_proxy_equals_hgq_on_calibration_data(nested):
    model, x = nested
    proxy = to_proxy_model(model)
    np.testing.assert_array_equal(predict_float64(proxy, x), model.predict(x, verbose=0))


def test_proxy_structure(every_layer, nested):
    model, _ = every_layer
    proxy = to_proxy_model(model)
    kinds = {type(layer).__name__ for layer in proxy.layers}
    assert {"Conv2D", "Conv1D", "DepthwiseConv2D", "Dense", "UnaryLUT", "Add", "Concatenate"} <= kinds
    assert "Dropout" not in kinds and not any(isinstance(layer, keras.Model) for layer in proxy.layers)
    assert all(layer.compute_dtype == "float64" for layer in proxy.layers if not isinstance(layer, keras.layers.InputLayer))
    assert all(t.dtype == "float64" for t in proxy.inputs)
    assert export_problems(proxy) == []
    # the LUTs come right after a homogeneous quantizer of their input format
    for lut in (layer for layer in proxy.layers if isinstance(layer, UnaryLUT)):
        q = lut._inbound_nodes[0].arguments.keras_tensors[0]._keras_history[0]
        assert isinstance(q, FixedPointQuantizer) and q.homogeneous
        assert tuple(int(v[0]) for v in q.kif) == lut.kif_in
    # nested model flattened, names kept, parallel factor carried as an hls4ml override
    nproxy = to_proxy_model(nested[0])
    names = [layer.name for layer in nproxy.layers]
    assert "inner_dense" in names and "inner_cube" in names
    assert [type(nproxy.get_layer(n)).__name__ for n in ("add3", "add3_0")] == ["Add", "Add"]
    override = nproxy.get_layer("dense_nd_q").overrides
    assert override == {"layers": {"dense_nd": {"parallelization_factor": 4}}}


def test_proxy_saves_and_loads(every_layer, tmp_path):
    model, xs = every_layer
    proxy = to_proxy_model(model)
    path = tmp_path / "proxy.keras"
    proxy.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(predict_float64(loaded, xs), predict_float64(proxy, xs))


def test_hgq_model_is_not_modified(nested):
    model, x = nested
    before_w = [w.copy() for w in model.get_weights()]
    before_y = model.predict(x, verbose=0)
    with pytest.warns(UserWarning, match="aggressive=False"):
        to_proxy_model(model, aggressive=False)
    for a, b in zip(before_w, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before_y, model.predict(x, verbose=0))


def test_untraced_model_raises():
    model = nested_model()
    with pytest.raises(NotTracedError, match="trace_minmax"):
        to_proxy_model(model)


def test_not_a_model_raises():
    with pytest.raises(TypeError, match="keras.Model"):
        to_proxy_model("model")


def _traced(build, x):
    keras.utils.set_random_seed(5)
    model = build()
    hr.trace_minmax(model, x)
    return model


def test_plain_keras_layer_is_named_in_error():
    def build():
        inp = keras.Input((6,))
        h = HDense(4, name="d")(HQuantize(name="q")(inp))
        return keras.Model(inp, keras.layers.Dense(2, name="plain_dense")(h))

    model = _traced(build, np.ones((4, 6), "float32"))
    with pytest.raises(ProxyConversionError, match="'plain_dense'.*Remedy"):
        to_proxy_model(model)


def test_softmax_activation_is_rejected_with_remedy():
    def build():
        inp = keras.Input((6,))
        h = HDense(4, name="d")(HQuantize(name="q")(inp))
        return keras.Model(inp, HActivation("softmax", name="sm")(h))

    model = _traced(build, np.ones((4, 6), "float32"))
    with pytest.raises(ProxyConversionError, match="'sm'.*not element-wise.*use HSoftmax"):
        to_proxy_model(model)


def test_non_power_of_two_average_pool_converts_and_same_padding_is_rejected():
    def build(padding):
        inp = keras.Input((6, 6, 1))
        h = HConv2D(2, 1, name="c")(HQuantize(name="q")(inp))
        return keras.Model(inp, PFlatten()(PAveragePooling2D(3, padding=padding, name="pool3")(h)))

    x = np.random.default_rng(0).normal(0, 1, (4, 6, 6, 1)).astype("float32")
    to_proxy_model(_traced(lambda: build("valid"), x))
    with pytest.raises(ProxyConversionError, match="'pool3'.*padding='same'"):
        to_proxy_model(_traced(lambda: build("same"), x))


def test_table_size_limit(nested):
    with pytest.raises(ProxyConversionError, match="'inner_cube'.*max_table_bits=3"):
        to_proxy_model(nested[0], max_table_bits=3)


def test_frac_bits():
    np.testing.assert_array_equal(frac_bits([0.75, 4.0, 0.0, -0.1, 3.0]), [2, -2, -np.inf, 55, 0])


def _on_grid(rng, f_map):
    """Random values on the grids 2**-f_map (the last bit is set about half of the time)."""
    return rng.integers(-16, 16, f_map.shape) * 2.0 ** -f_map


def test_dense_and_conv_fractional_bits_bound_the_values():
    rng = np.random.default_rng(0)
    f_in = rng.integers(-1, 5, (1, 7, 3)).astype(float)
    kernel = np.round(rng.normal(0, 1, (3, 3, 4)) * 16) / 16 * (rng.random((3, 3, 4)) < 0.7)
    bias = np.round(rng.normal(0, 1, 4) * 8) / 8
    predicted = _conv_frac(f_in, kernel, bias, (1,), "same", (1,), False)
    seen = np.full(predicted.shape, -np.inf)
    for _ in range(200):
        x = _on_grid(rng, f_in)
        y = ops.convert_to_numpy(ops.conv(x, kernel, 1, "same", "channels_last")) + bias
        seen = np.maximum(seen, frac_bits(y))
    assert np.all(seen <= predicted) and np.mean(seen == predicted) > 0.9
    # depthwise 2D, strided
    f2 = rng.integers(0, 4, (1, 5, 5, 2)).astype(float)
    k2 = np.round(rng.normal(0, 1, (3, 3, 2, 2)) * 4) / 4
    p2 = _conv_frac(f2, k2, None, (2, 2), "valid", (1, 1), True)
    seen = np.full(p2.shape, -np.inf)
    for _ in range(200):
        y = ops.convert_to_numpy(ops.depthwise_conv(_on_grid(rng, f2), k2, 2, "valid", "channels_last"))
        seen = np.maximum(seen, frac_bits(y))
    assert np.all(seen <= p2) and np.mean(seen == p2) > 0.9
    # dense on a rank-3 input
    fd = rng.integers(0, 4, (1, 2, 5)).astype(float)
    kd = np.round(rng.normal(0, 1, (5, 3)) * 8) / 8
    pd = _dense_frac(fd, kd, None)
    seen = np.full(pd.shape, -np.inf)
    for _ in range(200):
        seen = np.maximum(seen, frac_bits(_on_grid(rng, fd) @ kd))
    assert np.all(seen <= pd) and np.mean(seen == pd) > 0.9


def test_layers_named_like_system_types_are_renamed():
    # hls4ml declares a type <layer name>_t: a layer named "key" or "time" would clash with key_t / time_t
    x = keras.Input((4,))
    out = keras.layers.Dense(3, name="time")(keras.layers.Dense(5, activation="relu", name="key")(x))
    q = hr.quantize(keras.Model(x, out))
    data = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    hr.trace_minmax(q, data)
    names = {layer.name for layer in to_proxy_model(q).layers}
    assert not names & {"key", "time"} and {"key_1", "time_1"} <= names
    np.testing.assert_array_equal(predict_float64(to_proxy_model(q), data), np.asarray(q.predict(data, verbose=0), np.float64))

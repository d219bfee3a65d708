"""The private Keras, hls4ml and TensorFlow names hgq_rewrite relies on (hgq_rewrite/compat) still exist and behave.

After an upgrade of Keras, hls4ml or TensorFlow, a failure here names the private thing that changed.
"""

import importlib
import inspect

import keras
import numpy as np
import pytest

from hgq_rewrite.compat import hls4ml_private, keras_private, tensorflow_private


def _functional():
    inp = keras.Input((3,), name="x")
    dense = keras.layers.Dense(3, name="d")
    y = dense(inp)
    return keras.Model(inp, [y, dense(keras.layers.Activation("relu")(y))], name="f"), dense


def test_keras_call_graph():
    model, dense = _functional()
    assert isinstance(model, keras_private.Functional)
    assert keras_private.functional_graph(model) is model
    seq = keras.Sequential([keras.layers.Dense(2)])
    assert keras_private.functional_graph(seq) is None  # not built yet
    seq.build((None, 3))
    assert isinstance(keras_private.functional_graph(seq), keras_private.Functional)
    nodes = keras_private.calls_in_order(model)
    ops = [n.operation for n in nodes]
    assert isinstance(ops[0], keras.layers.InputLayer) and ops.count(dense) == 2
    assert ops.index(dense) < len(ops) - 1  # producers first
    assert len(keras_private.inbound_nodes(dense)) == 2
    assert all(isinstance(t, keras.KerasTensor) for n in nodes for t in n.arguments.keras_tensors + n.outputs)
    op, node_index, tensor_index = keras_private.keras_history(model.outputs[1])
    assert op is dense and node_index == 1 and tensor_index == 0
    assert keras_private.keras_history(np.zeros(2)) is None
    inputs, outputs = keras_private.graph_io(model)
    assert inputs is model.inputs[0] or inputs == model.inputs[0]
    assert isinstance(outputs, list) and len(outputs) == 2


def test_keras_loss_hooks_are_used_by_layers():
    calls = []

    class Extra(keras.layers.Layer):
        def call(self, x):
            return x

        def _get_own_losses(self):
            return super()._get_own_losses() + [keras.ops.convert_to_tensor(2.0)]

        def _clear_losses(self):
            calls.append("clear")
            super()._clear_losses()

    for hook in keras_private.LOSS_HOOKS:
        assert callable(getattr(keras.layers.Layer, hook))
    inp = keras.Input((1,))
    model = keras.Model(inp, Extra()(inp))
    model(np.zeros((1, 1), "float32"))
    assert [float(v) for v in model.losses] == [2.0] and calls


def test_keras_compile_state_round_trip():
    model, _ = _functional()
    state = keras_private.compile_state(model)
    model.compile("adam", "mse")
    assert model.__dict__.get("compiled") and "_compile_loss" in model.__dict__
    assert {"compiled", "optimizer", "_compile_loss", "_compile_config"} <= set(model.__dict__)
    assert model.__dict__["_compile_loss"] is not state.get("_compile_loss")
    keras_private.restore_compile_state(model, state)
    assert not model.compiled and model.__dict__.get("_compile_loss") is state.get("_compile_loss")


def test_hls4ml_registries():
    hls4ml = pytest.importorskip("hls4ml")
    from hls4ml.model.optimizer import get_available_passes, register_pass

    from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT
    from hgq_rewrite.proxy.hls4ml_handlers import FIXED_POINT_QUANTIZER_KEY, UNARY_LUT_KEY

    assert hls4ml.converters.keras_v3.layer_handlers is hls4ml_private.handler_registry()
    assert FIXED_POINT_QUANTIZER_KEY == f"{FixedPointQuantizer.__module__}.{FixedPointQuantizer.__name__}"
    assert UNARY_LUT_KEY == f"{UnaryLUT.__module__}.{UnaryLUT.__name__}"
    base = hls4ml_private.handler_base()
    before = dict(hls4ml_private.handler_registry())

    class Unregistered(base):  # no `handles`: defining it registers nothing
        def handle(self, layer, in_tensors, out_tensors):
            return {}

    assert hls4ml_private.handler_registry() == before and callable(Unregistered())
    from hls4ml.model.optimizer import OptimizerPass

    class Noop(OptimizerPass):
        def match(self, node):
            return False

        def transform(self, model, node):
            return False

    register_pass("hgq_rewrite_compat_probe", Noop)
    assert "hgq_rewrite_compat_probe" in get_available_passes()
    hls4ml_private.unregister_pass("hgq_rewrite_compat_probe")
    assert "hgq_rewrite_compat_probe" not in get_available_passes()
    assert hls4ml_private.unary_lut_node_class().__name__ == "UnaryLUT"


def test_hls4ml_weight_variable_fields(tmp_path):
    hls4ml = pytest.importorskip("hls4ml")
    from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT

    inp = keras.Input((4,), dtype="float64")
    x = FixedPointQuantizer.from_kif(1, 2, 1, name="q")(inp)
    model = keras.Model(inp, UnaryLUT.from_function("tanh", (1, 2, 1), (1, 0, 6), name="lut")(x))
    hls = hls4ml.converters.convert_from_keras_model(model, backend="Vitis", output_dir=str(tmp_path / "prj"))
    var = hls.graph["lut"].attributes["table"]
    new = np.arange(8, dtype=np.float64) - 4
    hls4ml_private.set_weight_data(var, new)
    assert (var.shape, var.data_length, var.nonzeros, var.nzeros, var.min, var.max) == ([8], 8, 7, 1, -4, 3)
    assert var.data is new


def test_hls4ml_message_texts():
    pytest.importorskip("hls4ml")
    hgq_proxy_model = importlib.import_module("hls4ml.backends.fpga.passes.hgq_proxy_model")
    keras_v3_to_hls = importlib.import_module("hls4ml.converters.keras_v3_to_hls")
    bit_exact = importlib.import_module("hls4ml.model.optimizer.passes.bit_exact")

    assert "No implementation of produce_kif for {layer.__class__} ({layer.class_name})" in inspect.getsource(bit_exact)
    assert hls4ml_private.HETEROGENEOUS_IO_TEXT in inspect.getsource(hgq_proxy_model)
    assert "Layer {layer.__class__} not found in registry" in inspect.getsource(keras_v3_to_hls)
    names, hetero = hls4ml_private.error_subjects(
        "No implementation of produce_kif for <class 'hls4ml.model.layers.Layer'> (LayerNormalization)")
    assert names == {"Layer", "LayerNormalization"} and not hetero
    assert hls4ml_private.error_subjects("Heterogenous quantization for activations is only ...")[1]


def test_tensorflow_xla_context_test():
    """``control_flow_util.GraphOrParentsInXlaContext``: False eagerly and in a plain tf.function, True inside one
    compiled with XLA, also in a function it calls."""
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.ops import control_flow_util

    assert callable(control_flow_util.GraphOrParentsInXlaContext)
    seen = {}

    def probe(name):
        seen[name] = tensorflow_private.in_xla_function()
        return tf.constant(0.0)

    probe("eager")
    tf.function(lambda: probe("graph"))()
    tf.function(lambda: probe("xla"), jit_compile=True)()
    tf.function(lambda: tf.function(lambda: probe("nested"))(), jit_compile=True)()
    assert seen == {"eager": False, "graph": False, "xla": True, "nested": True}

"""The export check before hls4ml runs: `export_problems` lists what keeps a proxy from a bit-exact export."""

import numpy as np
import keras

from ..activations import NATIVE_ACTIVATIONS
from ..compat.hls4ml_private import handler_registry
from ..compat.keras_private import inbound_nodes, keras_history
from ..walker import model_calls
from .fixed_point_layer import FixedPointQuantizer
from .hls4ml_limits import (
    CONDITIONAL_ACTIVATIONS,
    KNOWN_PROBLEMS,
    LUT_REMEDY,
    MERGE_LAYERS,
    PASS_THROUGH_TO_QUANTIZER,
    Problem,
    known_problem,
)
from .unary_lut import UnaryLUT


def _registry():
    try:
        return handler_registry()
    except Exception:  # noqa: BLE001 - hls4ml missing: nothing can be checked against the registry
        return None


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    if isinstance(act, str):
        return act
    return getattr(act, "__name__", type(act).__name__)


def _activation_problem(layer, name):
    if name in NATIVE_ACTIVATIONS or name is None:
        return None
    cls = type(layer).__name__
    if name == "softmax":
        fatal, reason, remedy = KNOWN_PROBLEMS["Softmax"]
        return Problem(layer.name, cls, reason, remedy, fatal)
    if name in CONDITIONAL_ACTIVATIONS:
        reason = f"hls4ml's built-in {name} table covers a fixed input range and resolution"
        return Problem(layer.name, cls, reason, LUT_REMEDY, fatal=False)
    reason = f"hls4ml 1.3's bit-exact pass has no rule for the activation {name!r}"
    return Problem(layer.name, cls, reason, LUT_REMEDY, fatal=True)


def _is_dyadic(values, max_frac_bits=32):
    v = np.asarray(values, dtype=np.float64) * 2.0**max_frac_bits
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _layer_problems(layer, registry):
    cls = type(layer).__name__
    problems = []
    if cls in KNOWN_PROBLEMS:
        return [known_problem(layer)]
    if isinstance(layer, keras.Model):
        problems.append(Problem(layer.name, cls, "nested models are not supported by hls4ml's Keras-3 parser",
                                "flatten the nested model into the outer functional model"))
        return problems
    key = f"{type(layer).__module__}.{cls}"
    if registry is not None and key not in registry and cls not in registry:
        problems.append(Problem(layer.name, cls, "hls4ml has no Keras-3 handler for this class",
                                "replace it with a supported layer (Dense, Conv1D/2D, DepthwiseConv2D, pooling, "
                                "Reshape/Flatten/Permute, Add, Concatenate, Activation('relu'), UnaryLUT)"))
        return problems
    if cls in MERGE_LAYERS:
        n_inputs = max((len(node.arguments.keras_tensors) for node in inbound_nodes(layer)), default=2)
        if n_inputs > 2:
            problems.append(Problem(layer.name, cls, f"hls4ml merge layers take exactly two inputs, it has {n_inputs}",
                                    f"chain {n_inputs - 1} two-input {cls} layers"))
    problem = _activation_problem(layer, _activation_name(layer))
    if problem is not None:
        problems.append(problem)
    for weight in layer.weights:
        if isinstance(layer, (FixedPointQuantizer, UnaryLUT)):
            break
        if not _is_dyadic(keras.ops.convert_to_numpy(weight)):
            problems.append(Problem(layer.name, cls, f"weight '{weight.name}' is not a binary fraction with at most "
                                    "32 fractional bits, so hls4ml rounds it",
                                    "quantize the weights onto a fixed-point grid first", fatal=False))
            break
    if not isinstance(layer, keras.layers.InputLayer) and layer.compute_dtype != "float64":
        problems.append(Problem(layer.name, cls, f"it computes in {layer.compute_dtype}, so wide sums can round",
                                "build the proxy with dtype='float64'", fatal=False))
    return problems


def _consumers(model, tensor):
    """(layer, node) pairs in ``model`` that read ``tensor``."""
    return [(call.layer, call.node) for call in model_calls(model).consumers_of(tensor)]


def _global_pooling_2d_problems(model):
    """hls4ml 1.3's bit-exact pass gives GlobalAveragePooling2D an output of the wrong rank; a Reshape or
    Flatten right after it restores the rank, anything else fails inside hls4ml."""
    problems = []
    for layer in model.layers:
        if type(layer).__name__ != "GlobalAveragePooling2D" or getattr(layer, "keepdims", False):
            continue
        for node in inbound_nodes(layer):
            for out in node.outputs:
                for consumer, _ in _consumers(model, out):
                    if type(consumer).__name__ not in ("Flatten", "Reshape"):
                        problems.append(Problem(
                            layer.name, "GlobalAveragePooling2D",
                            "hls4ml 1.3's bit-exact pass gives its output the wrong rank, which breaks the next layer "
                            f"('{consumer.name}')", "put a Flatten() right after it"))
    return problems


def _depthwise_rank_problems(model):
    """hls4ml 1.3's 1D and 2D depthwise convolution headers (nnet_sepconv1d_latency.h, nnet_sepconv2d_latency.h)
    share one include guard, so a model with both does not compile."""
    ranks = {"DepthwiseConv1D": 1, "SeparableConv1D": 1, "DepthwiseConv2D": 2, "SeparableConv2D": 2}
    found = {1: [], 2: []}
    for layer in model.layers:
        if type(layer).__name__ in ranks:
            found[ranks[type(layer).__name__]].append(layer)
    if not (found[1] and found[2]):
        return []
    return [Problem(layer.name, type(layer).__name__,
                    "hls4ml 1.3's 1D and 2D depthwise convolution headers share one include guard, so a model "
                    "with both does not compile", "export the 1D and the 2D parts as separate models, or use "
                    "Conv1D instead of the 1D depthwise convolutions") for layer in found[1]]


def _input_chain_problems(model):
    problems = []
    for tensor in model.inputs:
        frontier = [tensor]
        while frontier:
            t = frontier.pop()
            history = keras_history(t)
            for layer, node in _consumers(model, t):
                if isinstance(layer, FixedPointQuantizer):
                    continue
                if type(layer).__name__ in PASS_THROUGH_TO_QUANTIZER:
                    frontier.extend(node.outputs)
                    continue
                name = history.operation.name if history else "input"
                problems.append(Problem(layer.name, type(layer).__name__,
                                        f"it reads the model input '{name}' without a FixedPointQuantizer in between",
                                        "put a FixedPointQuantizer right after every Input"))
    return problems


def export_problems(model):
    """List the `Problem` s that keep ``model`` from a bit-exact hls4ml export.

    Checks each layer class against hls4ml 1.3's handlers and its known gaps,
    activations, weights off the fixed-point grid, float32 compute, 1D and 2D depthwise
    convolutions together, and that
    every Input is followed by a :class:`FixedPointQuantizer`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    registry = _registry()
    problems = []
    for layer in model.layers:
        problems.extend(_layer_problems(layer, registry))
    problems.extend(_global_pooling_2d_problems(model))
    problems.extend(_depthwise_rank_problems(model))
    problems.extend(_input_chain_problems(model))
    return problems

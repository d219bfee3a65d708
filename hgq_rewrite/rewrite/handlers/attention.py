"""MultiHeadAttention → a nested model of what it computes, in H-layers:

``query_proj``/``key_proj``/``value_proj`` (HEinsumDense) → ``scores`` = HEinsum(key, query) →
``softmax`` = HSoftmax(scale=1/sqrt(key_dim)) → ``context`` = HEinsum(softmax, value) →
``output_proj`` (HEinsumDense). The trained weights are copied over; the proxy is the
nested model's layers, flattened (hls4ml 1.3's EinsumDense, Einsum and softmax nodes, io_parallel).

Not converted: masks (``attention_mask``, ``use_causal_mask``, Keras masks on the inputs),
``return_attention_scores``, ``use_gate``, ``sliding_window``, attention over several axes.
Dropout is left out (it only acts in training).
"""

import inspect
import math

import keras

from ...compat.keras_private import attention_equations, inbound_nodes, keras_mask
from ...layers import HEinsum, HSoftmax
from ..handler import Conversion, LayerHandler
from ..registry import register_builtin
from .einsum import EinsumDenseHandler, equation_problem, heinsum_dense_like

_MASKS = ("query_mask", "value_mask", "key_mask", "attention_mask")
_DENSE = EinsumDenseHandler()  # for the float projections' carried arguments and export checks


# inner layer names; not "key", whose C type "key_t" clashes with the system's in hls4ml's firmware
_NAMES = {"query": "query_proj", "key": "key_proj", "value": "value_proj", "attention_output": "output_proj"}


def call_arguments(layer, node_index):
    """The arguments of one call of ``layer`` by name, defaults filled in."""
    arguments = inbound_nodes(layer)[node_index].arguments
    bound = inspect.signature(layer.call).bind(*arguments.args, **arguments.kwargs)
    bound.apply_defaults()
    return bound.arguments


def _projections(layer):
    return {"query": layer.query_dense, "key": layer.key_dense, "value": layer.value_dense,
            "attention_output": layer.output_dense}


@register_builtin
class MultiHeadAttentionHandler(LayerHandler):
    float_classes = (keras.layers.MultiHeadAttention,)
    target = "nested model: HEinsumDense x4, HEinsum x2, HSoftmax"
    fields = ("beta", "kernel", "activation")
    exports_doc = "yes, io_parallel, through the layers it becomes (no masks)"

    def check(self, layer):
        if not layer.built:
            return "not built (call it on inputs first)"
        config = layer.get_config()
        for option in ("use_gate", "sliding_window"):
            if config.get(option):
                return f"{option}={config[option]!r} is not supported (remedy: plain attention without it)"
        if len(layer.attention_axes) != 1:
            return (f"attention over axes {layer.attention_axes}: only one attention axis (the softmax is over the "
                    "last axis); reshape the input to one sequence axis")
        for j in range(len(inbound_nodes(layer))):
            args = call_arguments(layer, j)
            given = [m for m in _MASKS if args[m] is not None]
            given += ["use_causal_mask"] if args["use_causal_mask"] else []
            given += [r for r in ("query", "value", "key") if keras_mask(args[r]) is not None]
            if given:
                return (f"masked attention ({', '.join(given)}): hls4ml 1.3's attention has no masks; remedy: "
                        "call it without masks (fixed-length inputs)")
            if args["return_attention_scores"]:
                return "return_attention_scores=True (remedy: return the attention output only)"
        return None

    def notes(self, layer):
        if layer.dropout > 0:
            return [f"dropout={layer.dropout} left out: fine-tuning runs without it (inference never applied it)"]
        return []

    def export_problem(self, layer, **fused):
        for dense in _projections(layer).values():
            problem = _DENSE.export_problem(dense)
            if problem is not None:
                return problem
        for equation in attention_equations(layer):
            problem = equation_problem(equation)
            if problem is not None:
                return problem
        return None

    def convert(self, layer, settings, **fused):
        args = call_arguments(layer, 0)
        tensors = {"query": args["query"], "value": args["value"],
                   "key": args["value"] if args["key"] is None else args["key"]}
        inputs = {r: keras.Input(batch_shape=tuple(t.shape), name=f"{settings.name}_{r}") for r, t in tensors.items()}
        floats = _projections(layer)
        dense_kwargs = settings.kwargs("kq_conf", "paq_conf", "beta")
        news = {r: heinsum_dense_like(d, _NAMES[r], **_DENSE.carried_kwargs(d), **dense_kwargs)
                for r, d in floats.items()}
        other_kwargs = settings.kwargs("paq_conf", "beta")
        scores_eq, combine_eq = attention_equations(layer)
        q, k, v = (news[r](inputs[r]) for r in ("query", "key", "value"))
        scores = HEinsum(scores_eq, name="scores", **other_kwargs)([k, q])
        weights = HSoftmax(scale=1.0 / math.sqrt(float(layer.key_dim)), name="softmax", **other_kwargs)(scores)
        context = HEinsum(combine_eq, name="context", **other_kwargs)([weights, v])
        out = news["attention_output"](context)
        model = keras.Model([inputs["query"], inputs["value"], inputs["key"]], out, name=settings.name)

        def call_inputs(call_args, call_kwargs):
            bound = inspect.signature(layer.call).bind(*call_args, **call_kwargs)
            value, key = bound.arguments["value"], bound.arguments.get("key")
            return [bound.arguments["query"], value, value if key is None else key]

        return Conversion([model], call_inputs=call_inputs)

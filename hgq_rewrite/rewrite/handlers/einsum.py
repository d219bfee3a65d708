"""Einsums: EinsumDense (→ HEinsumDense) and ``keras.ops.einsum`` of two tensors (→ HEinsum, two quantized
inputs; the attention handler builds them too).

The proxy holds ``keras.layers.EinsumDense`` with ``qkernel``/``qbias`` (hls4ml 1.3's ``EinsumDense``
node) or `ProxyEinsum` (its ``Einsum`` node), then a quantizer with the layer's traced output format.
Both nodes are io_parallel only, and take equations whose batch letter comes first and whose
every other letter appears in two of the three terms.
"""

import keras
import numpy as np
from keras import ops

from ...compat.keras_private import EinsumOp, inbound_nodes
from ...layers.einsum import HEinsum, HEinsumDense, split_equation
from ...proxy.einsum import ProxyEinsum, einsum_frac, einsum_magnitude
from ...proxy.frac import frac_bits
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import register_builtin
from ._common import activation_layer
from .core import FLOAT32_SIGNIFICAND_BITS, WeightedHandler


def equation_problem(equation, kernel=False):
    """Why hls4ml 1.3 cannot take ``equation`` (second operand a ``kernel`` without batch axis, or a tensor),
    or None: the batch letter must come first, and every other letter be in two of the three terms."""
    spec0, spec1, out = split_equation(equation, "?")
    batch = spec0[0]
    batch_ok = out[0] == batch and (batch not in spec1 if kernel else spec1[0] == batch)
    if not batch_ok:
        where = "input and output, and not in the kernel" if kernel else "both inputs and the output"
        return ExportProblem(f"equation {equation!r}: hls4ml 1.3 needs the batch letter first in the {where}",
                             "write the equation with the batch axis first, e.g. 'abc,cd->abd'")
    terms = (spec0[1:], spec1 if kernel else spec1[1:], out[1:])
    lonely = sorted({c for j, t in enumerate(terms) for c in t if not any(c in u for u in terms[:j] + terms[j + 1:])})
    if lonely:
        return ExportProblem(f"equation {equation!r} sums over {''.join(lonely)!r}, found in one term only: "
                             "hls4ml 1.3's einsums refuse such axes", "sum those axes with a separate layer first")
    return None


def float32_may_round(layer, magnitude, f_avail):
    """True when ``layer`` computes in float32 and an output may need more than 24 significant bits."""
    if layer.compute_dtype != "float32":
        return False
    with np.errstate(divide="ignore"):
        bits = np.ceil(np.log2(magnitude)) + np.broadcast_to(f_avail, magnitude.shape)
    return bool(np.any(np.isfinite(bits) & (bits > FLOAT32_SIGNIFICAND_BITS)))


def _bounds(layer, node_index=None):
    """``2**i`` per input element: a bound of its magnitude, from the traced formats."""
    maps = layer.input_kif_maps(True, node_index)
    return [2.0 ** np.asarray(ops.convert_to_numpy(i), np.float64) for _, i, _ in maps]


def heinsum_dense_like(layer, name, **kwargs):
    """An HEinsumDense with the structure and the weights of the float EinsumDense ``layer`` (the bias
    stored flat)."""
    new = HEinsumDense(layer.equation, layer.partial_output_shape, bias_axes=layer.bias_axes, name=name, **kwargs)
    bias = None if layer.bias is None else np.reshape(ops.convert_to_numpy(layer.bias), -1)
    new.set_initial_weights(kernel=layer.kernel, bias=bias)
    return new


@register_builtin
class EinsumDenseHandler(WeightedHandler):
    float_classes = (keras.layers.EinsumDense,)
    hgq_class = HEinsumDense
    fields = ("beta", "kernel", "activation")
    exports_doc = ("yes, io_parallel (batch letter first, every other letter in two of the three terms; "
                   "`activation='log_softmax'`: no)")

    def check(self, layer):
        try:
            split_equation(layer.equation, layer.name)
        except ValueError as e:
            return str(e).split(": ", 1)[1]
        return super().check(layer)

    def export_problem(self, layer, bn=None, activation=None):
        return equation_problem(layer.equation, kernel=True) or super().export_problem(
            layer, bn=bn, activation=activation)

    def convert(self, layer, settings, bn=None, activation=None):
        inner, extra = self._activations(layer, activation)
        new = heinsum_dense_like(layer, settings.name, activation=inner, **self.carried_kwargs(layer),
                                 **settings.kwargs("kq_conf", "paq_conf", "beta"))
        layers = [new]
        if extra is not None:
            layers.append(activation_layer(extra, settings.unique_name(f"{settings.name}_{extra}"), settings))
        return layers

    def plain_layer(self, layer, common):
        common = {k: v for k, v in common.items() if k != "use_bias"}
        shape = layer.full_output_shape(layer._input_shape)[1:]  # every size known (hls4ml needs them)
        return keras.layers.EinsumDense(layer.equation, shape, bias_axes=layer.bias_axes,
                                        kernel_initializer="zeros", **common)

    def output_frac(self, layer, f_in, qkernel, qbias):
        f = einsum_frac(layer.equation, f_in, frac_bits(qkernel))
        return f if qbias is None else np.maximum(f, frac_bits(qbias))

    def magnitude(self, layer, bound, qkernel, qbias):
        m = einsum_magnitude(layer.equation, bound, qkernel)
        return m if qbias is None else m + np.abs(qbias)

    def asks_parallel_factor(self, y):
        return False


@register_builtin
class EinsumHandler(LayerHandler):
    """``keras.ops.einsum`` of two tensors → HEinsum; HEinsum → `ProxyEinsum` and a quantizer (a product
    carries the sum of its factors' fractional bits)."""

    float_classes = (EinsumOp,)
    hgq_classes = (HEinsum,)
    target = "HEinsum"
    fields = ("beta", "activation")
    exports_doc = "yes, io_parallel (batch letter first everywhere, every other letter in two of the three terms)"

    def check(self, layer):
        for node in inbound_nodes(layer):
            n = len(node.arguments.keras_tensors)
            if n != 2 or len(node.arguments.args) != 2:
                return f"einsum of {n} tensor(s) (only of two tensors; remedy: chain two-operand einsums)"
        try:
            HEinsum(layer.subscripts)
        except ValueError as e:
            return str(e).split(": ", 1)[1]
        return None

    def export_problem(self, layer, **fused):
        return equation_problem(getattr(layer, "equation", None) or layer.subscripts)

    def convert(self, layer, settings, **fused):
        new = HEinsum(layer.subscripts, name=settings.name, **settings.kwargs("beta", "paq_conf"))
        return Conversion([new], call_inputs=lambda args, kwargs: list(args))

    def emit(self, layer, inputs, ctx):
        name = ctx.layer_name(layer)
        y = ProxyEinsum(layer.equation, name=name)(list(inputs))
        f = einsum_frac(layer.equation, *(ctx.frac_of(x) for x in inputs))
        if float32_may_round(layer, einsum_magnitude(layer.equation, *_bounds(layer, ctx.call.index)), f):
            ctx.float32_inexact.append(layer.name)
        return ctx.quantize_output(layer, y, f, f"{name}_q")

"""Activations: Activation, ReLU, LeakyReLU, ELU (→ HActivation; a relu after a Dense/Conv is fused into
it; ``Activation('softmax')`` → HSoftmax, see `handlers.softmax`). A layer's arguments (negative_slope,
alpha, ...) go with its function (`ActivationWithArgs`).

In the proxy, linear and relu are ``Activation('relu')`` and a quantizer; any other element-wise
activation is a homogeneous quantizer covering its input, a `UnaryLUT`, and a quantizer when the
output format is not uniform. An ``HActivation('softmax')`` (not element-wise) does not export.
"""

import keras
import numpy as np
from keras import ops

from ...layers import ActivationWithArgs, HActivation
from ...proxy.errors import ProxyConversionError
from ...proxy.frac import covering_kif, frac_bits, full
from ...proxy.unary_lut import UnaryLUT, lut_inputs
from ...quantizers.fixed_point import quantize, round_to_grid
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import register_builtin
from ._common import activation_layer, activation_name, activation_target, softmax_problem


class _ActivationHandler(LayerHandler):
    target = "HActivation"
    fields = ("beta", "activation")

    def name_of(self, layer):
        """The activation the float layer computes, or None when it is not a standard one."""
        raise NotImplementedError

    def function_of(self, layer):
        """What the HActivation computes: the activation's name, or an `ActivationWithArgs`."""
        return self.name_of(layer)

    def fusable_activation(self, layer):
        return self.name_of(layer)

    def check(self, layer):
        if self.name_of(layer) is None:
            return "custom activation function (register a converter, or keep the layer float)"
        return None

    def describe(self, layer, **fused):
        return activation_target(self.name_of(layer))

    def export_problem(self, layer, **fused):
        if isinstance(layer, HActivation) and layer.activation_name == "softmax":
            return ExportProblem("HActivation('softmax') is not element-wise, so it has no lookup table",
                                 "use HSoftmax (quantize makes it from Softmax and Activation('softmax'))")
        return softmax_problem(self.name_of(layer))

    def convert(self, layer, settings, **fused):
        return Conversion([activation_layer(self.function_of(layer), settings.name, settings)])


@register_builtin
class ActivationHandler(_ActivationHandler):
    """``Activation`` → ``HActivation``; exports every ``HActivation``."""

    float_classes = (keras.layers.Activation,)
    hgq_classes = (HActivation,)
    exports_doc = "yes, as a lookup table unless linear or relu (softmax: as HSoftmax; log_softmax: no)"

    def name_of(self, layer):
        if isinstance(layer, HActivation):
            return layer.activation_name
        return activation_name(layer.activation)

    def emit(self, layer, inputs, ctx):
        x = inputs[0]
        name = ctx.layer_name(layer)
        f_in = ctx.frac_of(x)
        if layer.activation_name == "relu":
            x = keras.layers.Activation("relu", dtype=ctx.dtype, name=name)(x)
        if layer.activation_name in ("linear", "relu"):
            return ctx.quantize_output(layer, x, f_in, f"{name}_q")
        return lookup_table(layer, x, name, f_in, ctx)


class _ArgumentsHandler(_ActivationHandler):
    """An activation layer computing ``function`` with the arguments ``arguments(layer)``: the plain name
    when the arguments are the function's defaults, else an `ActivationWithArgs` (a lookup table)."""

    function = None
    defaults = {}

    def arguments(self, layer):
        raise NotImplementedError

    def function_of(self, layer):
        args = {k: v for k, v in self.arguments(layer).items() if v != self.defaults[k]}
        return ActivationWithArgs(self.function, **args) if args else self.function

    def name_of(self, layer):
        fn = self.function_of(layer)
        return fn if isinstance(fn, str) else fn.__name__


@register_builtin
class ReLUHandler(_ArgumentsHandler):
    float_classes = (keras.layers.ReLU,)
    function = "relu"
    defaults = {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}
    exports_doc = "yes (with negative_slope / max_value / threshold: as a lookup table)"

    def arguments(self, layer):
        top = None if layer.max_value is None else float(layer.max_value)
        return {"negative_slope": float(layer.negative_slope), "max_value": top, "threshold": float(layer.threshold)}

    def function_of(self, layer):
        if self.arguments(layer) == {**self.defaults, "max_value": 6.0}:
            return "relu6"
        return super().function_of(layer)


@register_builtin
class LeakyReLUHandler(_ArgumentsHandler):
    float_classes = (keras.layers.LeakyReLU,)
    function = "leaky_relu"
    defaults = {"negative_slope": 0.2}
    exports_doc = "yes, as a lookup table"

    def arguments(self, layer):
        return {"negative_slope": float(layer.negative_slope)}


@register_builtin
class ELUHandler(_ArgumentsHandler):
    float_classes = (keras.layers.ELU,)
    function = "elu"
    defaults = {"alpha": 1.0}
    exports_doc = "yes, as a lookup table"

    def arguments(self, layer):
        return {"alpha": float(layer.alpha)}


def lookup_table(layer, x, name, f_in, ctx):
    """A homogeneous input quantizer, the table, and (for a per-element output format) a quantizer.

    The table holds exactly what the HGQ layer computes for each input code: the activation in the
    layer's dtype, rounded to the finest output grid, then (uniform output format) cast with the
    layer's rounding and overflow. For a per-element output format the table keeps the rounded
    activation in a format wide enough for all of it, and the quantizer after it does the cast.
    """
    rounding = layer.paq.config["rounding"]
    shape = (1, *x.shape[1:])
    k_in, i_in, _ = (full(ops.convert_to_numpy(m), shape) for m in layer.input_kif_maps(True, ctx.call.index)[0])
    live = np.isfinite(f_in)
    if not live.any():
        live = np.ones(shape, dtype=bool)
        f_in = np.zeros(shape)
    kif_in = (int(np.max(k_in[live])), int(np.max(i_in[live])), int(np.max(f_in[live])))
    bits = sum(kif_in)
    if bits > ctx.max_table_bits:
        raise ProxyConversionError(
            f"Layer {layer.name!r} ({layer.activation_name}): its input format {kif_in} (k, i, f) needs a table "
            f"of 2**{bits} entries, above max_table_bits={ctx.max_table_bits}. Remedy: fewer input bits (a "
            "larger beta on the layer before, cover_factor closer to 1), or a larger max_table_bits."
        )
    # value-preserving (kif_in covers every input); it takes the modes of the quantizer before it because
    # hls4ml fuses consecutive quantizers into one type with the *last* one's rounding and overflow
    lut_rounding, lut_overflow = ctx.modes.get(id(x), ("RND", "WRAP"))
    q_in = ctx.quantize(x, kif_in, np.inf, lut_rounding, ctx.name(f"{name}_lut_in"), overflow=lut_overflow)
    k_out, i_out, f_out = (full(m, shape).astype(np.int64) for m in layer.output_kif())
    finest = float(np.max(np.round(ops.convert_to_numpy(layer.paq.fbw))))
    try:
        codes = ops.convert_to_tensor(lut_inputs(kif_in), layer.compute_dtype)
    except ValueError as exc:
        raise ProxyConversionError(f"Layer {layer.name!r}: cannot tabulate its activation: {exc}") from exc
    # the HGQ layer's own arithmetic: activation in its dtype, then the finest output grid
    raw = np.asarray(ops.convert_to_numpy(round_to_grid(layer.activation(codes), finest)), dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        raise ProxyConversionError(
            f"Layer {layer.name!r} ({layer.activation_name}) is not finite on its input range {kif_in} (k, i, f). "
            "Remedy: fewer integer bits before it (a larger beta on the layer before), or a bounded activation."
        )
    uniform = all(np.unique(m).size == 1 for m in (k_out, i_out, f_out))
    if uniform:
        kif_table = (int(k_out.flat[0]), int(i_out.flat[0]), int(f_out.flat[0]))
        table = ops.convert_to_numpy(
            quantize(ops.convert_to_tensor(raw, ctx.dtype), *kif_table, rounding, ctx.overflow))
        ctx.formats[id(layer.paq)] = (layer.paq, (k_out, i_out, f_out))
    else:
        table, kif_table = raw, covering_kif(raw, finest)
    table = np.asarray(table, dtype=np.float64)
    y = UnaryLUT(table=table, kif_in=kif_in, kif_out=kif_table, dtype=ctx.dtype, name=name)(q_in)
    ctx.frac[id(y)] = np.full(shape, np.max(frac_bits(table)) if np.any(table) else -np.inf)
    if uniform:
        return y
    return ctx.quantize(y, (k_out, i_out, f_out), ctx.frac[id(y)], rounding, ctx.name(f"{name}_q"), paq=layer.paq)

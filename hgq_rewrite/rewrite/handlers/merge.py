"""Layers merging several tensors: Add, Subtract, Multiply, Average, Maximum, Minimum (→ the
H-merge of the same name: the Keras op and an output quantizer), Concatenate (→ PConcatenate).

hls4ml merges take two inputs, so the proxy chains two-input layers; ``Average`` exports with
two inputs only (hls4ml 1.3 averages pairwise).
"""

import keras
import numpy as np

from ...layers import HAdd, HAverage, HMaximum, HMinimum, HMultiply, HSubtract, PConcatenate
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import register_builtin
from .core import FLOAT32_SIGNIFICAND_BITS


def _chain(make, inputs, name, ctx):
    """``make(name)`` applied pairwise along ``inputs``; the last one takes ``name``."""
    out = inputs[0]
    for j, x in enumerate(inputs[1:]):
        last = j == len(inputs) - 2
        out = make(name if last else ctx.name(f"{name}_{j}"))([out, x])
    return out


def _same_shape(a, b):
    """Equal sample shapes; an unknown (None) dimension matches any size."""
    return len(a) == len(b) and all(m is None or n is None or m == n for m, n in zip(a, b))


class _MergeHandler(LayerHandler):
    """A Keras merge → ``hgq_class``; the proxy chains ``keras_class`` pairwise and quantizes the result."""

    hgq_class = keras_class = None
    fields = ("beta", "activation")

    @property
    def target(self):
        return self.hgq_class.__name__

    def check(self, layer):
        shapes = [tuple(t.shape[1:]) for t in layer.input]
        if not all(_same_shape(shapes[0], s) for s in shapes[1:]):
            listed = ", ".join(map(str, dict.fromkeys(shapes)))
            return (f"inputs of different shapes [{listed}] (broadcasting): hls4ml merges need equal shapes; "
                    "reshape or repeat the inputs to one shape first")
        return None

    def convert(self, layer, settings, **fused):
        return Conversion([self.hgq_class(name=settings.name, **settings.kwargs("beta", "paq_conf"))])

    def frac(self, fracs):
        """Fractional bits the merged values carry, from those of the inputs."""
        return np.maximum.reduce(fracs)

    def emit(self, layer, inputs, ctx):
        name = ctx.layer_name(layer)
        merged = _chain(lambda n: self.keras_class(dtype=ctx.dtype, name=n), inputs, name, ctx)
        return ctx.quantize_output(layer, merged, self.frac([ctx.frac_of(x) for x in inputs]), f"{name}_q")


@register_builtin
class AddHandler(_MergeHandler):
    float_classes, hgq_classes = (keras.layers.Add,), (HAdd,)
    hgq_class, keras_class = HAdd, keras.layers.Add


@register_builtin
class SubtractHandler(_MergeHandler):
    float_classes, hgq_classes = (keras.layers.Subtract,), (HSubtract,)
    hgq_class, keras_class = HSubtract, keras.layers.Subtract


@register_builtin
class MaximumHandler(_MergeHandler):
    float_classes, hgq_classes = (keras.layers.Maximum,), (HMaximum,)
    hgq_class, keras_class = HMaximum, keras.layers.Maximum


@register_builtin
class MinimumHandler(_MergeHandler):
    float_classes, hgq_classes = (keras.layers.Minimum,), (HMinimum,)
    hgq_class, keras_class = HMinimum, keras.layers.Minimum


@register_builtin
class AverageHandler(_MergeHandler):
    float_classes, hgq_classes = (keras.layers.Average,), (HAverage,)
    hgq_class, keras_class = HAverage, keras.layers.Average
    exports_doc = "yes, with two inputs"

    def export_problem(self, layer, **fused):
        n = len(layer.input)
        if n != 2:
            return ExportProblem(f"Average of {n} inputs: hls4ml 1.3 averages two inputs at a time, which is not "
                                 f"the mean of {n}", "use Average layers of two inputs each, or Add then a Dense")
        return None

    def frac(self, fracs):
        return super().frac(fracs) + 1  # (a + b) * 2**-1


@register_builtin
class MultiplyHandler(_MergeHandler):
    """Multiply: a product carries the sum of its factors' fractional bits; the HGQ model multiplies in
    float32, so products wider than 24 significant bits are reported (as for wide sums)."""

    float_classes, hgq_classes = (keras.layers.Multiply,), (HMultiply,)
    hgq_class, keras_class = HMultiply, keras.layers.Multiply

    def frac(self, fracs):
        zero = np.logical_or.reduce([f == -np.inf for f in fracs])
        with np.errstate(invalid="ignore"):
            return np.where(zero, -np.inf, np.sum(fracs, axis=0))

    def emit(self, layer, inputs, ctx):
        maps = layer.input_kif_maps(True, ctx.call.index)
        bits = sum(np.asarray(keras.ops.convert_to_numpy(i + f)) for _, i, f in maps)  # magnitude bits
        if layer.compute_dtype == "float32" and np.max(bits) > FLOAT32_SIGNIFICAND_BITS:
            ctx.float32_inexact.append(layer.name)
        return super().emit(layer, inputs, ctx)


@register_builtin
class ConcatenateHandler(LayerHandler):
    float_classes = (keras.layers.Concatenate,)
    hgq_classes = (PConcatenate,)
    target = "PConcatenate"
    fields = ()

    def convert(self, layer, settings, **fused):
        return Conversion([PConcatenate(axis=layer.axis, name=settings.name)])

    def emit(self, layer, inputs, ctx):
        name = ctx.layer_name(layer)
        out = _chain(lambda n: keras.layers.Concatenate(axis=layer.axis, dtype=ctx.dtype, name=n), inputs, name, ctx)
        ctx.frac[id(out)] = np.concatenate([ctx.frac_of(x) for x in inputs], axis=layer.axis)
        modes = {ctx.modes.get(id(x)) for x in inputs}
        if len(modes) == 1 and None not in modes:
            ctx.modes[id(out)] = modes.pop()
        return out

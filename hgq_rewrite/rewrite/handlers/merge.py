"""Layers merging several tensors: Add (→ HAdd), Concatenate (→ PConcatenate).

hls4ml merges take two inputs, so the proxy chains two-input ``Add`` / ``Concatenate`` layers.
"""

import keras
import numpy as np

from ...layers import HAdd, PConcatenate
from ..handler import Conversion, LayerHandler
from ..registry import register_builtin


def _chain(make, inputs, name, ctx):
    """``make(name)`` applied pairwise along ``inputs``; the last one takes ``name``."""
    out = inputs[0]
    for j, x in enumerate(inputs[1:]):
        last = j == len(inputs) - 2
        out = make(name if last else ctx.name(f"{name}_{j}"))([out, x])
    return out


@register_builtin
class AddHandler(LayerHandler):
    float_classes = (keras.layers.Add,)
    hgq_classes = (HAdd,)
    target = "HAdd"
    fields = ("beta", "activation")

    def convert(self, layer, settings, **fused):
        return Conversion([HAdd(name=settings.name, **settings.kwargs("beta", "paq_conf"))])

    def emit(self, layer, inputs, ctx):
        name = ctx.layer_name(layer)
        total = _chain(lambda n: keras.layers.Add(dtype=ctx.dtype, name=n), inputs, name, ctx)
        f_avail = np.maximum.reduce([ctx.frac_of(x) for x in inputs])
        return ctx.quantize_output(layer, total, f_avail, f"{name}_q")


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

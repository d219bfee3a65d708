"""Softmax (→ HSoftmax; ``Activation('softmax')`` and a Dense/Conv's ``activation='softmax'`` too, see
`handlers.activation` and `handlers.core`).

The proxy is a `FixedPointSoftmax`, which hls4ml converts to its bit-exact table softmax, and the
quantizer of the HSoftmax's output.
"""

import keras
import numpy as np

from ...layers import HSoftmax
from ...proxy.errors import ProxyConversionError
from ...proxy.softmax import FixedPointSoftmax
from ..handler import Conversion, LayerHandler
from ..registry import register_builtin


def _last_axis_only(axis):
    return axis in (-1, [-1], (-1,))


@register_builtin
class SoftmaxHandler(LayerHandler):
    """``Softmax`` → ``HSoftmax``; exports every ``HSoftmax``."""

    float_classes = (keras.layers.Softmax,)
    hgq_classes = (HSoftmax,)
    target = "HSoftmax"
    fields = ("beta", "activation")
    exports_doc = "yes, as hls4ml's table softmax (last axis only; tables up to `max_table_bits` input bits)"

    def check(self, layer):
        if not _last_axis_only(layer.axis):
            return f"Softmax over axis {layer.axis} (only the last axis: Permute it last first)"
        return None

    def convert(self, layer, settings, **fused):
        return Conversion([HSoftmax(name=settings.name, **settings.kwargs("beta", "paq_conf"))])

    def emit(self, layer, inputs, ctx):
        x = inputs[0]
        name = ctx.layer_name(layer)
        formats = layer.formats()
        for key, what in (("norm", "exp table (normalised input)"), ("sum", "1/x table (sum)")):
            bits = sum(formats[key])
            if bits > ctx.max_table_bits:
                raise ProxyConversionError(
                    f"Layer {layer.name!r}: its {what} format {formats[key]} (k, i, f) needs a table of 2**{bits} "
                    f"entries, above max_table_bits={ctx.max_table_bits}. Remedy: fewer fractional bits "
                    "(layer.fbw, or a larger beta), or a larger max_table_bits."
                )
        proxy = FixedPointSoftmax(formats["norm"], formats["exp"], formats["sum"], formats["inv"],
                                  scale=layer.scale, dtype=ctx.dtype, name=name)
        y = proxy(x)
        carried = np.full((1, *x.shape[1:]), float(formats["exp"][2] + formats["inv"][2]))
        ctx.frac[id(y)] = carried
        return ctx.quantize_output(layer, y, carried, f"{name}_q")

"""HGQ layers: those already in a float model (hand-built parts) are copied as they are;
HQuantize and Signature (where fixed point starts) export as quantizers."""

import numpy as np

from ...layers import BitMapMixin, HQuantize, Signature
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import find_exporter, register_builtin


@register_builtin
class HGQCopyHandler(LayerHandler):
    """An independent copy (``from_config`` + weights); the config does not apply to it."""

    float_classes = (BitMapMixin,)
    fields = ()
    note_base_class = False
    exports_doc = "if a handler exports its class"

    def needs_quantized_inputs(self, layer):
        return not isinstance(layer, (HQuantize, Signature))

    def describe(self, layer, **fused):
        return f"{type(layer).__name__} (already an HGQ layer: copied, config not applied)"

    def export_problem(self, layer, **fused):
        exporter = find_exporter(type(layer))
        if exporter is None:
            return ExportProblem(f"no handler exports {type(layer).__name__}",
                                 "register one for it with hgq_rewrite.register_handler")
        return exporter.export_problem(layer)

    def convert(self, layer, settings, **fused):
        new = type(layer).from_config(layer.get_config())
        return Conversion([new], lambda: new.set_weights(layer.get_weights()))


@register_builtin
class QuantizerHandler(LayerHandler):
    """HQuantize (rounding as configured) and Signature (its declared format, TRN) → a quantizer."""

    hgq_classes = (HQuantize, Signature)

    def emit(self, layer, inputs, ctx):
        paq = getattr(layer, "paq", None)
        rounding = "TRN" if paq is None else paq.config["rounding"]
        return ctx.quantize(inputs[0], layer.output_kif(), np.inf, rounding, ctx.layer_name(layer), paq=paq)

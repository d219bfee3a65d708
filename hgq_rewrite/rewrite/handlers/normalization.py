"""LayerNormalization (→ HLayerNormalization): trains and evaluates quantized, but does not export."""

import keras

from ...layers.normalization import HLayerNormalization
from ..handler import ExportProblem, LayerHandler
from ..registry import register_builtin

NOT_EXPORTED = ExportProblem(
    "hls4ml 1.3 has no bit-exact LayerNormalization (its bit-exact pass has no rule for it, and its converter "
    "takes axis 2 only)",
    "replace it before export: a BatchNormalization (folded into the layer before it), or no normalization "
    "(fine-tune without it)",
)


@register_builtin
class LayerNormalizationHandler(LayerHandler):
    float_classes = (keras.layers.LayerNormalization,)
    hgq_classes = (HLayerNormalization,)
    target = "HLayerNormalization"
    fields = ("beta", "activation")
    quantized_input = False  # float arithmetic: any input
    exports_doc = "no (hls4ml 1.3 has no bit-exact LayerNormalization); trains and evaluates"

    def export_problem(self, layer, **fused):
        return NOT_EXPORTED

    def convert(self, layer, settings, **fused):
        new = HLayerNormalization(axis=layer.axis, epsilon=layer.epsilon, center=layer.center, scale=layer.scale,
                                  rms_scaling=layer.rms_scaling, name=settings.name,
                                  **settings.kwargs("beta", "paq_conf"))
        new.set_initial_weights(gamma=layer.gamma, offset=layer.beta)
        return new

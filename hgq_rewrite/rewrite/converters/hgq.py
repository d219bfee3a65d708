"""Layers that are already HGQ layers (hand-built parts of a model): copied as they are."""

from ..registry import Conversion, Converter, register_builtin

try:
    from hgq_rewrite.layers.base import BitMapMixin
except ImportError:  # pragma: no cover - layer package not available
    BitMapMixin = None


class HGQCopyConverter(Converter):
    """An independent copy (``from_config`` + weights); the config does not apply to it."""

    fields = ()

    def needs_quantized_inputs(self, layer):
        # HQuantize and Signature are where fixed point starts
        return type(layer).__name__ not in ("HQuantize", "Signature")

    def describe(self, layer):
        return f"{type(layer).__name__} (already an HGQ layer: copied, config not applied)"

    def convert(self, layer, settings):
        new = type(layer).from_config(layer.get_config())
        return Conversion([new], lambda: new.set_weights(layer.get_weights()))


if BitMapMixin is not None:
    register_builtin(BitMapMixin)(HGQCopyConverter)

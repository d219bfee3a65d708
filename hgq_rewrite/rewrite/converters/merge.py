"""Converters for layers merging several tensors: Add (→ HAdd), Concatenate (→ PConcatenate)."""

import keras

from ..registry import Conversion, Converter, register_builtin
from ..targets import hgq_layer


@register_builtin(keras.layers.Add)
class AddConverter(Converter):
    target = "HAdd"
    fields = ("beta", "activation")

    def convert(self, layer, settings):
        cls = hgq_layer("HAdd")
        return Conversion([cls(name=settings.name, **settings.kwargs("beta", "paq_conf"))])


@register_builtin(keras.layers.Concatenate)
class ConcatenateConverter(Converter):
    target = "PConcatenate"
    fields = ()

    def convert(self, layer, settings):
        cls = hgq_layer("PConcatenate")
        return Conversion([cls(axis=layer.axis, name=settings.name)])

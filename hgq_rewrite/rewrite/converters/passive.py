"""Converters for layers that only move data (→ P-layers, nothing quantized)."""

import keras

from ..registry import Conversion, Converter, register_builtin
from ..targets import hgq_layer
from ._common import channels_last


class PassiveConverter(Converter):
    """Build ``target(**args(layer), name=...)``; no weights, no config fields."""

    fields = ()

    def args(self, layer):
        return {}

    def check(self, layer):
        return channels_last(layer)

    def convert(self, layer, settings):
        cls = hgq_layer(self.target)
        return Conversion([cls(**self.args(layer), name=settings.name)])


@register_builtin(keras.layers.Flatten)
class FlattenConverter(PassiveConverter):
    target = "PFlatten"


@register_builtin(keras.layers.Reshape)
class ReshapeConverter(PassiveConverter):
    target = "PReshape"

    def args(self, layer):
        return {"target_shape": tuple(layer.target_shape)}


@register_builtin(keras.layers.Permute)
class PermuteConverter(PassiveConverter):
    target = "PPermute"

    def args(self, layer):
        return {"dims": tuple(layer.dims)}


@register_builtin(keras.layers.Dropout)
class DropoutConverter(PassiveConverter):
    target = "PDropout"

    def args(self, layer):
        return {"rate": layer.rate}

    def notes(self, layer):
        notes = []
        if layer.noise_shape is not None:
            notes.append("noise_shape not carried over")
        if layer.seed is not None:
            notes.append("seed not carried over")
        return notes


class _PoolingConverter(PassiveConverter):
    def args(self, layer):
        return {"pool_size": layer.pool_size, "strides": layer.strides, "padding": layer.padding}


@register_builtin(keras.layers.MaxPooling1D)
class MaxPooling1DConverter(_PoolingConverter):
    target = "PMaxPooling1D"


@register_builtin(keras.layers.MaxPooling2D)
class MaxPooling2DConverter(_PoolingConverter):
    target = "PMaxPooling2D"


@register_builtin(keras.layers.AveragePooling1D)
class AveragePooling1DConverter(_PoolingConverter):
    target = "PAveragePooling1D"


@register_builtin(keras.layers.AveragePooling2D)
class AveragePooling2DConverter(_PoolingConverter):
    target = "PAveragePooling2D"


class _GlobalPoolingConverter(PassiveConverter):
    def args(self, layer):
        return {"keepdims": True} if layer.keepdims else {}


@register_builtin(keras.layers.GlobalAveragePooling1D)
class GlobalAveragePooling1DConverter(_GlobalPoolingConverter):
    target = "PGlobalAveragePooling1D"


@register_builtin(keras.layers.GlobalAveragePooling2D)
class GlobalAveragePooling2DConverter(_GlobalPoolingConverter):
    target = "PGlobalAveragePooling2D"

"""Converters for layers that only move data (→ P-layers, nothing quantized)."""

import math

import keras

from ...layers.pooling import average_pooling_problem
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


def _input_positions(layer):
    """Spatial positions a global pooling layer averages over (from its float input's shape)."""
    return math.prod(int(n) for n in layer.input.shape[1:-1])


class _AveragingConverter(PassiveConverter):
    """Average pooling. A divisor that is not a power of 2 makes a quotient no finite binary fraction
    holds: the firmware keeps it about 54 fractional bits wide, so an ``HQuantize`` (computing in
    float64, like the proxy) rounds it right there, before any multiply."""

    fields = ("beta", "activation")

    def divisor(self, layer):
        raise NotImplementedError

    def needs_quantizer(self, layer):
        n = self.divisor(layer)
        return n & (n - 1) != 0

    def describe(self, layer):
        return f"{self.target} + HQuantize" if self.needs_quantizer(layer) else self.target

    def convert(self, layer, settings):
        cls = hgq_layer(self.target)
        if not self.needs_quantizer(layer):
            return Conversion([cls(**self.args(layer), name=settings.name)])
        quantizer = hgq_layer("HQuantize")(
            name=settings.unique_name(f"{settings.name}_q"), dtype="float64", **settings.kwargs("beta", "paq_conf")
        )
        return Conversion([cls(**self.args(layer), name=settings.name, dtype="float64"), quantizer])


class _PoolingConverter(PassiveConverter):
    def args(self, layer):
        return {"pool_size": layer.pool_size, "strides": layer.strides, "padding": layer.padding}


class _AveragePoolingConverter(_AveragingConverter, _PoolingConverter):
    def check(self, layer):
        return super().check(layer) or average_pooling_problem(layer)

    def divisor(self, layer):
        return math.prod(layer.pool_size)


@register_builtin(keras.layers.MaxPooling1D)
class MaxPooling1DConverter(_PoolingConverter):
    target = "PMaxPooling1D"


@register_builtin(keras.layers.MaxPooling2D)
class MaxPooling2DConverter(_PoolingConverter):
    target = "PMaxPooling2D"


@register_builtin(keras.layers.AveragePooling1D)
class AveragePooling1DConverter(_AveragePoolingConverter):
    target = "PAveragePooling1D"


@register_builtin(keras.layers.AveragePooling2D)
class AveragePooling2DConverter(_AveragePoolingConverter):
    target = "PAveragePooling2D"


class _GlobalPoolingConverter(_AveragingConverter):
    def args(self, layer):
        return {"keepdims": True} if layer.keepdims else {}

    def divisor(self, layer):
        return _input_positions(layer)


@register_builtin(keras.layers.GlobalAveragePooling1D)
class GlobalAveragePooling1DConverter(_GlobalPoolingConverter):
    target = "PGlobalAveragePooling1D"


@register_builtin(keras.layers.GlobalAveragePooling2D)
class GlobalAveragePooling2DConverter(_GlobalPoolingConverter):
    target = "PGlobalAveragePooling2D"

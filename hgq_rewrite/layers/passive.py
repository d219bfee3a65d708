"""Passive layers that only move data: their bitwidth maps move the same way."""

import keras
from keras import ops

from .base import PLayerMixin


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PReshape(PLayerMixin, keras.layers.Reshape):
    """Reshape; bitwidth maps are reshaped."""

    def transform_kif(self, maps, exact):
        shape = (1,) + tuple(self.compute_output_shape((1,) + tuple(maps[0][0].shape[1:]))[1:])
        return tuple(ops.reshape(m, shape) for m in maps[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PFlatten(PLayerMixin, keras.layers.Flatten):
    """Flatten; bitwidth maps are flattened."""

    def transform_kif(self, maps, exact):
        return tuple(ops.reshape(m, (1, -1)) for m in maps[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PPermute(PLayerMixin, keras.layers.Permute):
    """Permute; bitwidth maps are transposed with the same permutation (not reshaped)."""

    def transform_kif(self, maps, exact):
        return tuple(ops.transpose(m, (0,) + tuple(self.dims)) for m in maps[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PDropout(PLayerMixin, keras.layers.Dropout):
    """Dropout (training only); bitwidth maps pass unchanged. Removed on export."""

    def transform_kif(self, maps, exact):
        return maps[0]


class _ZeroPaddingMixin(PLayerMixin):
    """Zero padding; bitwidth maps are padded with zeros (0 bits: the padded values are 0)."""

    def pad_widths(self):
        """``((before, after), ...)`` per spatial axis."""
        raise NotImplementedError

    def transform_kif(self, maps, exact):
        widths = ((0, 0), *self.pad_widths(), (0, 0))
        return tuple(ops.pad(m, widths) for m in maps[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PZeroPadding1D(_ZeroPaddingMixin, keras.layers.ZeroPadding1D):
    """ZeroPadding1D; bitwidth maps are padded with zero bits."""

    def pad_widths(self):
        return (tuple(self.padding),)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PZeroPadding2D(_ZeroPaddingMixin, keras.layers.ZeroPadding2D):
    """ZeroPadding2D; bitwidth maps are padded with zero bits."""

    def pad_widths(self):
        return tuple(tuple(p) for p in self.padding)

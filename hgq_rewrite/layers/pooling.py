"""Passive pooling layers and how they change the fixed-point format of their input.

Max pooling picks one input, so the output format is the union (max of k, i, f) of the
window. An always-zero element (no bits) counts as (0, 0, 0), as hls4ml 1.3 writes it, so
its fractional bits do not widen the union. Average pooling sums the window and divides by its size n: the integer part
cannot grow, and the fractional bits grow by those of ``1/n`` written in float64, as
hls4ml 1.3 counts them: ``log2 n`` for a power of two, 54 or so otherwise (the
firmware carries the quotient that wide; put a quantizer after it to round it).
"""

import math

import keras
import numpy as np
from keras import ops


def reciprocal_frac_bits(n):
    """Fractional bits of the float64 number ``1/n`` (``log2 n`` when n is a power of 2)."""
    mant, exp = np.frexp(1.0 / n)
    mantissa = int(mant * 2.0**53)
    trailing = (mantissa & -mantissa).bit_length() - 1
    return 53 - int(exp) - trailing

from .base import PLayerMixin
from .pool_gradient import phase_max_pool, uses_phases, windows_do_not_overlap


def live_formats(k, i, f):
    """(k, i, f) with every element of no bits (k + i + f <= 0) written (0, 0, 0)."""
    dead = (k + i + f) <= 0
    return tuple(ops.where(dead, ops.zeros_like(m), m) for m in (k, i, f))


class _PoolMixin(PLayerMixin):
    averaging = False

    def _phases(self):
        return self.data_format == "channels_last" and uses_phases(self.pool_size, self.strides, self.padding)

    def _pool(self, m):
        """Max pooling of bit maps (channels last, whatever the layer's data format)."""
        if windows_do_not_overlap(self.pool_size, self.strides, self.padding):
            return phase_max_pool(m, self.pool_size, sliced=True)
        return ops.max_pool(m, self.pool_size, self.strides, self.padding, "channels_last")

    def call(self, x):
        if not self.averaging and self._phases():
            return phase_max_pool(x, self.pool_size)
        return super().call(x)

    def transform_kif(self, maps, exact):
        # the three maps pooled as one batch of three: one pooling op (and one gradient), not three; on
        # TensorFlow each costs ~0.1 ms on a map this small, more than the rest of its step
        k, i, f = ops.split(self._pool(ops.concatenate(live_formats(*maps[0]), axis=0)), 3, axis=0)
        if self.averaging:
            f = f + reciprocal_frac_bits(math.prod(self.pool_size))
        return k, i, f


class _GlobalPoolMixin(PLayerMixin):
    averaging = True

    def transform_kif(self, maps, exact):
        k, i, f = live_formats(*maps[0])
        spatial = tuple(range(1, len(k.shape) - 1))
        n = math.prod(k.shape[a] for a in spatial)
        k, i, f = (ops.max(m, axis=spatial, keepdims=self.keepdims) for m in (k, i, f))
        return k, i, (f + reciprocal_frac_bits(n) if self.averaging else f)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PMaxPooling1D(_PoolMixin, keras.layers.MaxPooling1D):
    """MaxPooling1D propagating the union format of each window."""


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PMaxPooling2D(_PoolMixin, keras.layers.MaxPooling2D):
    """MaxPooling2D propagating the union format of each window."""


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PAveragePooling1D(_PoolMixin, keras.layers.AveragePooling1D):
    """AveragePooling1D; adds the fractional bits of 1/pool size."""

    averaging = True


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PAveragePooling2D(_PoolMixin, keras.layers.AveragePooling2D):
    """AveragePooling2D; adds the fractional bits of 1/pool area."""

    averaging = True


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PGlobalAveragePooling1D(_GlobalPoolMixin, keras.layers.GlobalAveragePooling1D):
    """GlobalAveragePooling1D; adds the fractional bits of 1/steps."""


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PGlobalAveragePooling2D(_GlobalPoolMixin, keras.layers.GlobalAveragePooling2D):
    """GlobalAveragePooling2D; adds the fractional bits of 1/(height·width)."""


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PGlobalMaxPooling1D(_GlobalPoolMixin, keras.layers.GlobalMaxPooling1D):
    """GlobalMaxPooling1D: max pooling over all steps, the union format of the steps."""

    averaging = False


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PGlobalMaxPooling2D(_GlobalPoolMixin, keras.layers.GlobalMaxPooling2D):
    """GlobalMaxPooling2D: max pooling over the whole image, the union format of its pixels."""

    averaging = False


PMaxPool1D, PMaxPool2D = PMaxPooling1D, PMaxPooling2D
PAvgPool1D, PAvgPool2D = PAveragePooling1D, PAveragePooling2D

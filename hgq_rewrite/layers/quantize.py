"""Entry points of fixed point: HQuantize (learned format) and Signature (declared format)."""

import keras
import numpy as np
from keras import ops

from .base import BitMapMixin, HLayerBase


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HQuantize(HLayerBase):
    """Quantizes its input with a trainable per-element format; put it after every model input.

    Args:
        paq_conf: quantizer config; beta: EBOPs weight (this layer has no multiplies).
    """

    def build(self, input_shape):
        self._build_state(tuple(input_shape))

    def call(self, x, training=None):
        return self.paq(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class Signature(BitMapMixin, keras.layers.Layer):
    """Identity that declares its input is already fixed point ``ap_fixed<bits, int_bits>``.

    Args:
        keep_negative: sign bit (0/1), scalar or array broadcastable to ``(1, *feature_shape)``.
        bits: total bits B (sign included).
        int_bits: integer bits I (sign included, the ``ap_fixed`` convention).
    """

    def __init__(self, keep_negative, bits, int_bits, **kwargs):
        super().__init__(**kwargs)
        arrays = [np.asarray(v, dtype=np.int32) for v in (keep_negative, bits, int_bits)]
        if np.any(arrays[1] < 0):
            raise ValueError(f"Signature {self.name!r}: bits must be >= 0.")
        self._kbi = arrays

    def call(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def output_kif_map(self, exact=False):
        k, b, i_total = self._kbi
        kif = (k, i_total - k, b - i_total)
        return tuple(ops.convert_to_tensor(np.asarray(m, dtype=np.float32).reshape(m.shape or (1,))) for m in kif)

    def get_config(self):
        cfg = super().get_config()
        k, b, i = self._kbi
        cfg.update(keep_negative=k.tolist(), bits=b.tolist(), int_bits=i.tolist())
        return cfg

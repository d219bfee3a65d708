"""Layers with several inputs: HAdd (quantized sum) and PConcatenate (passive)."""

import keras
from keras import ops

from .base import HLayerBase, PLayerMixin


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HAdd(HLayerBase):
    """Element-wise sum of its inputs followed by a trainable output quantizer."""

    def build(self, input_shape):
        self._build_state(tuple(input_shape[0]))

    def call(self, inputs, training=None):
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return self.paq(total, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PConcatenate(PLayerMixin, keras.layers.Concatenate):
    """Concatenate; the bitwidth maps are concatenated the same way."""

    def transform_kif(self, maps, exact):
        return tuple(ops.concatenate([m[j] for m in maps], axis=self.axis) for j in range(3))

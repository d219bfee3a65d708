"""Layers with several inputs: element-wise merges with a quantized output (HAdd, HSubtract,
HMultiply, HAverage, HMaximum, HMinimum) and PConcatenate (passive)."""

from functools import reduce

import keras
from keras import ops

from .base import HLayerBase, PLayerMixin, bits_of


class HMerge(HLayerBase):
    """Element-wise merge of same-shaped inputs (``merge``) followed by a trainable output quantizer."""

    def merge(self, inputs):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def build(self, input_shape):
        self._build_state(tuple(input_shape[0]))

    def call(self, inputs, training=None):
        y = self.paq(self.merge(list(inputs)), training=training)
        self._train_ebops(training)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HAdd(HMerge):
    """Element-wise sum of its inputs followed by a trainable output quantizer."""

    def merge(self, inputs):
        return reduce(ops.add, inputs)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HSubtract(HMerge):
    """``inputs[0] - inputs[1]`` followed by a trainable output quantizer."""

    def merge(self, inputs):
        return ops.subtract(inputs[0], inputs[1])


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HAverage(HMerge):
    """Element-wise mean of its inputs followed by a trainable output quantizer."""

    def merge(self, inputs):
        return reduce(ops.add, inputs) / len(inputs)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HMaximum(HMerge):
    """Element-wise maximum of its inputs followed by a trainable output quantizer."""

    def merge(self, inputs):
        return reduce(ops.maximum, inputs)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HMinimum(HMerge):
    """Element-wise minimum of its inputs followed by a trainable output quantizer."""

    def merge(self, inputs):
        return reduce(ops.minimum, inputs)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HMultiply(HMerge):
    """Element-wise product of its inputs followed by a trainable output quantizer.

    EBOPs: multiplying left to right, each multiply costs bits(running product) × bits(next input),
    where a product of exact fixed-point numbers carries the sum of their bits.
    """

    def merge(self, inputs):
        return reduce(ops.multiply, inputs)

    def has_cost(self):
        return True

    def ebops_of_call(self, input_maps, exact, **known):
        bits = [bits_of(m) for m in input_maps]
        total, running = ops.convert_to_tensor(0.0), bits[0]
        for b in bits[1:]:
            total = total + ops.sum(running * b)
            running = running + b
        return total


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class PConcatenate(PLayerMixin, keras.layers.Concatenate):
    """Concatenate; the bitwidth maps are concatenated the same way."""

    def transform_kif(self, maps, exact):
        return tuple(ops.concatenate([m[j] for m in maps], axis=self.axis) for j in range(3))

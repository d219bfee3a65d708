"""HLayerNormalization: Keras' layer normalization (float arithmetic) followed by a trainable output quantizer.

It trains and evaluates like the float layer, but does not export: hls4ml 1.3's bit-exact flow
has no rule for LayerNormalization. It counts no EBOPs.
"""

import keras
from keras import ops

from .base import HLayerBase


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HLayerNormalization(HLayerBase):
    """``paq(layer_normalization(x))``; arguments as ``keras.layers.LayerNormalization`` (``beta`` is the
    EBOPs weight here: the learned offset is the weight ``offset``)."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta=0.0, paq_conf=None,
                 **kwargs):
        super().__init__(beta=beta, paq_conf=paq_conf, **kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else [int(axis)]
        self.epsilon, self.center, self.scale, self.rms_scaling = float(epsilon), center, scale, rms_scaling

    def build(self, input_shape):
        shape = tuple(input_shape[a] for a in self.axis)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer=self._initializer("gamma", "ones")) if (
            self.scale or self.rms_scaling) else None
        self.offset = self.add_weight(
            name="offset", shape=shape, initializer=self._initializer("offset", "zeros")
        ) if self.center and not self.rms_scaling else None
        self._build_state(tuple(input_shape))

    def call(self, x, training=None):
        y = ops.layer_normalization(x, self.gamma, self.offset, self.axis, self.epsilon, rms_scaling=self.rms_scaling)
        return self.paq(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, epsilon=self.epsilon, center=self.center, scale=self.scale,
                   rms_scaling=self.rms_scaling)
        return cfg

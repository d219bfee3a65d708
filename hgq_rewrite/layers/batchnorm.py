"""BatchNormalization folded into the kernel and bias of the H-layer before it."""

from keras import ops

from ..quantizers.hquantizer import Filled
from ..quantizers.replicas import REPLICATED, moments


class FoldedBatchNormMixin:
    """Adds a BatchNormalization after the kernel op, folded into kernel and bias.

    Training uses the batch statistics of ``x ⊛ W + b`` (and updates the moving ones);
    inference and export use the moving statistics, so the exported layer is a plain
    Dense/Conv with kernel ``W·γ/√(var+ε)`` and bias ``(b − mean)·γ/√(var+ε) + β``.

    A frozen BatchNormalization (``bn_trainable=False``, as ``trainable=False`` on the Keras
    layer) keeps its statistics, gamma and beta: training then uses the moving statistics too.

    Args:
        momentum, epsilon, center, scale: as ``keras.layers.BatchNormalization``.
        bn_trainable: False for a frozen BatchNormalization.
    """

    def __init__(self, *args, momentum=0.99, epsilon=1e-3, center=True, scale=True, bn_trainable=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.bn_trainable = bool(bn_trainable)

    def build_extra(self):
        def weight(name, fill, trainable, **kwargs):
            return self.add_weight(name=name, shape=(self.out_channels(),), trainable=trainable,
                                   initializer=self._initializer(name, Filled(fill)), **kwargs)

        self.bn_gamma = weight("bn_gamma", 1.0, self.scale and self.bn_trainable)
        self.bn_beta = weight("bn_beta", 0.0, self.center and self.bn_trainable)
        # batch statistics are those of the global batch (all replicas), the same on every replica
        self.moving_mean = weight("moving_mean", 0.0, False, aggregation=REPLICATED)
        self.moving_variance = weight("moving_variance", 1.0, False, aggregation=REPLICATED)

    def folds_batch_statistics(self, training):
        return bool(training) and self.bn_trainable

    def _scale(self, var):
        """Per-channel factor ``gamma / sqrt(var + epsilon)`` folded into the kernel."""
        s = ops.rsqrt(var + self.epsilon)
        return s * self.bn_gamma if self.scale else s

    def folded_kernel(self):
        return self.kernel * self._scale(self.moving_variance)

    def folded_kernel_bias(self, x=None, training=False):
        bias = self.bias if self.bias is not None else ops.zeros((self.out_channels(),))
        if training and x is not None and self.bn_trainable:
            z = self.apply_kernel(x, self.kernel)
            axes = tuple(range(len(z.shape) - 1))
            mean, var = moments(z, axes)
            mean = mean + bias
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1 - m) * ops.stop_gradient(mean))
            self.moving_variance.assign(m * self.moving_variance + (1 - m) * ops.stop_gradient(var))
        else:
            mean, var = self.moving_mean, self.moving_variance
        s = self._scale(var)
        folded_bias = (bias - mean) * s
        if self.center:
            folded_bias = folded_bias + self.bn_beta
        return self.kernel * s, folded_bias

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
            bn_trainable=self.bn_trainable,
        )
        return cfg

"""HDense: a Dense layer with per-weight and per-output trainable bitwidths."""

import keras
from keras import ops

from .batchnorm import FoldedBatchNormMixin
from .kernel_base import HKernelLayer


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HDense(HKernelLayer):
    """Dense layer quantized with HGQ: ``y = paq(act(x @ kq(W) + q(b)))``.

    Args:
        units: output size.
        parallel_factor: for inputs of rank > 2, how many positions are computed in parallel
            (passed to hls4ml); defaults to all of them. EBOPs always count every position.
        Other arguments as ``HKernelLayer`` and ``keras.layers.Dense``.
    """

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.units = int(units)

    def kernel_shape(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name!r}: the last input axis must be known, got {input_shape}.")
        return (input_shape[-1], self.units)

    def build(self, input_shape):
        super().build(input_shape)
        if self.parallel_factor is None:
            positions = [d for d in input_shape[1:-1]]
            self.parallel_factor = int(ops.prod(positions)) if positions and None not in positions else 1

    def apply_kernel(self, x, kernel):
        return ops.matmul(x, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def bit_products(self, b_in, b_kernel):
        return ops.sum(ops.matmul(b_in, b_kernel))

    def get_config(self):
        cfg = super().get_config()
        cfg["units"] = self.units
        return cfg


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HDenseBatchNorm(FoldedBatchNormMixin, HDense):
    """HDense followed by BatchNormalization, folded into the kernel and bias (plain Dense at inference)."""

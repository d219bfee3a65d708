"""HPReLU: a PReLU whose slopes are quantized like a kernel, with trainable bitwidths."""

import keras
from keras import ops

from .kernel_base import HKernelLayer


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HPReLU(HKernelLayer):
    """PReLU quantized with HGQ: ``y = paq(x if x >= 0 else kq(alpha)·x)``.

    The slopes ``alpha`` are the layer's ``kernel``: one per input element, shared along
    ``shared_axes`` (1-based, as ``keras.layers.PReLU``). EBOPs = Σ b_in·b_alpha over the input
    elements (one multiply each).

    Args:
        shared_axes: input axes sharing one slope.
        Other arguments as ``HKernelLayer`` (``kernel_*``: of the slopes; no bias, no activation).
    """

    def __init__(self, shared_axes=None, kernel_initializer="zeros", **kwargs):
        kwargs.pop("use_bias", None)  # saved by get_config; a PReLU has none
        kwargs.pop("activation", None)
        super().__init__(kernel_initializer=kernel_initializer, use_bias=False, **kwargs)
        axes = [] if shared_axes is None else [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
        self.shared_axes = [int(a) for a in axes]

    def kernel_shape(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes:
            shape[axis - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(f"Layer {self.name!r}: the slopes need known input axes (or shared_axes), got "
                             f"{tuple(input_shape)}.")
        return tuple(shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def apply_kernel(self, x, kernel):
        return ops.where(x >= 0, x, kernel * x)

    def bit_products(self, b_in, b_kernel):
        return ops.sum(b_in * b_kernel)

    def get_config(self):
        cfg = super().get_config()
        cfg["shared_axes"] = list(self.shared_axes)
        return cfg

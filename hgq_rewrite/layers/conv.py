"""HConv1D, HConv2D, HDepthwiseConv1D/2D and the BatchNorm-folded convolutions (channels_last)."""

import math

import keras
from keras import ops

from .batchnorm import FoldedBatchNormMixin
from .conv_gradient import tap_conv, uses_taps
from .kernel_base import HKernelLayer
from .links import walk_layers


def _tuple(value, rank, what, layer):
    t = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(t) != rank or not all(isinstance(v, int) and v > 0 for v in t):
        raise ValueError(f"Layer {layer!r}: {what} must be {rank} positive int(s), got {value!r}.")
    return t


def conv_output_length(n, k, stride, padding, dilation):
    if n is None:
        return None
    if padding == "same":
        return math.ceil(n / stride)
    return (n - dilation * (k - 1) - 1) // stride + 1


class HConvBase(HKernelLayer):
    """Shared logic of convolutions: output positions, EBOPs per parallel kernel application.

    EBOPs = Σ conv(b_in, b_w) · parallel_factor / number of output positions.
    """

    rank = 2
    stacked_taps = True  # under XLA a small stride-1 kernel may run as one matmul over its stacked taps (see `conv`)

    def __init__(self, kernel_size, strides=1, padding="valid", dilation_rate=1, parallel_factor=1, **kwargs):
        data_format = kwargs.pop("data_format", None)
        super().__init__(parallel_factor=parallel_factor, **kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Layer {self.name!r}: only data_format='channels_last' is supported.")
        if padding not in ("valid", "same"):
            raise ValueError(f"Layer {self.name!r}: padding must be 'valid' or 'same', got {padding!r}.")
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size", self.name)
        self.strides = _tuple(strides, self.rank, "strides", self.name)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate", self.name)
        self.padding = padding

    def output_spatial(self, input_shape):
        return tuple(
            conv_output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_spatial(input_shape) + (self.out_channels(),)

    def plain_conv(self, x, kernel):
        """The backend's convolution with this layer's geometry."""
        return ops.conv(x, kernel, self.strides, self.padding, "channels_last", self.dilation_rate)

    def conv(self, x, kernel):
        """The layer's convolution of a batch: under XLA small kernels run as a matmul over their stacked taps
        (`conv_gradient`), forward and gradients."""
        if self.stacked_taps and uses_taps(x.shape, kernel.shape, self.strides):
            return tap_conv(x, kernel, self.padding, self.dilation_rate)
        return self.plain_conv(x, kernel)

    def apply_kernel(self, x, kernel):
        return self.conv(x, kernel)

    def bit_products(self, b_in, b_kernel):
        positions = math.prod(self.output_spatial(self._input_shape))
        # one bit map, not a batch: XLA's own gradient is the faster there
        return ops.sum(self.plain_conv(b_in, b_kernel)) * (self.parallel_factor / positions)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            kernel_size=self.kernel_size, strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate
        )
        return cfg


class HConvND(HConvBase):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(kernel_size, **kwargs)
        self.filters = int(filters)

    def kernel_shape(self, input_shape):
        return self.kernel_size + (input_shape[-1], self.filters)

    def get_config(self):
        cfg = super().get_config()
        cfg["filters"] = self.filters
        return cfg


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HConv1D(HConvND):
    """1D convolution quantized with HGQ (arguments as ``keras.layers.Conv1D`` plus the HGQ ones)."""

    rank = 1


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HConv2D(HConvND):
    """2D convolution quantized with HGQ (arguments as ``keras.layers.Conv2D`` plus the HGQ ones)."""

    rank = 2


class HDepthwiseConvND(HConvBase):
    """Depthwise convolution; kernel shape ``(*kernel_size, in, depth_multiplier)``."""

    def __init__(self, kernel_size, depth_multiplier=1, depthwise_initializer=None, **kwargs):
        if depthwise_initializer is not None:
            kwargs["kernel_initializer"] = depthwise_initializer
        super().__init__(kernel_size, **kwargs)
        self.depth_multiplier = int(depth_multiplier)
        self.kq.channel_axes = (-2, -1)  # output channel = (input channel, multiplier)

    def kernel_shape(self, input_shape):
        return self.kernel_size + (input_shape[-1], self.depth_multiplier)

    def out_channels(self):
        return self._input_shape[-1] * self.depth_multiplier

    stacked_taps = False  # `tap_conv` contracts over input channels; a depthwise kernel does not

    def plain_conv(self, x, kernel):
        return ops.depthwise_conv(x, kernel, self.strides, self.padding, "channels_last", self.dilation_rate)

    def get_config(self):
        cfg = super().get_config()
        cfg["depth_multiplier"] = self.depth_multiplier
        return cfg


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HDepthwiseConv1D(HDepthwiseConvND):
    """Depthwise 1D convolution quantized with HGQ; kernel shape ``(k, in, depth_multiplier)``."""

    rank = 1


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HDepthwiseConv2D(HDepthwiseConvND):
    """Depthwise 2D convolution quantized with HGQ; kernel shape ``(kh, kw, in, depth_multiplier)``."""

    rank = 2


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HConv1DBatchNorm(FoldedBatchNormMixin, HConv1D):
    """HConv1D with a BatchNormalization folded into kernel and bias."""


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HConv2DBatchNorm(FoldedBatchNormMixin, HConv2D):
    """HConv2D with a BatchNormalization folded into kernel and bias."""


def has_convolution(model):
    """True if ``model`` (nested models included) has a convolutional H-layer."""
    return any(isinstance(layer, HConvBase) for layer in walk_layers(model))

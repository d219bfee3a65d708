"""Convolutions: Conv1D, Conv2D, DepthwiseConv2D (→ HConv*, HDepthwiseConv2D).

They share `core.WeightedHandler`: a following BatchNormalization folds into Conv1D/Conv2D, a
following relu is fused, and the proxy holds the plain Keras convolution with ``qkernel``/``qbias``,
then a quantizer with the layer's traced output format.
"""

import math

import keras

from ...layers import HConv1D, HConv1DBatchNorm, HConv2D, HConv2DBatchNorm, HDepthwiseConv2D
from ...proxy.frac import conv_frac, conv_magnitude
from ..handler import ExportProblem
from ..registry import register_builtin
from .core import WeightedHandler


class _ConvHandler(WeightedHandler):
    exports_doc = "yes (`dilation_rate` must be 1; `activation='log_softmax'`: no)"
    depthwise = False
    plain_class = None  # the Keras convolution of the proxy

    def default_parallel_factor(self, layer):
        """Fully parallel (io_parallel, latency-bound): one output position per kernel application,
        so EBOPs count every output position and the proxy asks hls4ml for a fully parallel conv."""
        try:
            spatial = tuple(layer.output.shape[1:-1])
        except (AttributeError, ValueError):  # a layer called several times has no single output
            return None
        if not spatial or any(d is None for d in spatial):
            return None
        return int(math.prod(spatial))

    def check(self, layer):
        reason = super().check(layer)
        if reason:
            return reason
        if getattr(layer, "groups", 1) != 1:
            return f"grouped convolution (groups={layer.groups})"
        if layer.padding not in ("valid", "same"):
            return f"padding={layer.padding!r} (only 'valid' and 'same')"
        problem = self.structure_problem(layer)
        return None if problem is None else f"{problem.why} ({problem.remedy})"

    def structure_problem(self, layer):
        """What hls4ml 1.3 cannot export in this convolution's structure (refused before training too)."""
        if any(d != 1 for d in layer.dilation_rate):
            return ExportProblem(f"dilation_rate={tuple(layer.dilation_rate)}, which hls4ml 1.3 ignores",
                                 "use dilation_rate=1")
        return None

    def export_problem(self, layer, bn=None, activation=None):
        return self.structure_problem(layer) or super().export_problem(layer, bn=bn, activation=activation)

    def structure(self, layer):
        return {
            "filters": layer.filters,
            "kernel_size": layer.kernel_size,
            "strides": layer.strides,
            "padding": layer.padding,
            "dilation_rate": layer.dilation_rate,
        }

    def plain_layer(self, layer, common):
        return self.plain_class(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                                kernel_initializer="zeros", **common)

    def output_frac(self, layer, f_in, qkernel, qbias):
        return conv_frac(f_in, qkernel, qbias, layer.strides, layer.padding, layer.dilation_rate, self.depthwise)

    def magnitude(self, layer, bound, qkernel, qbias):
        return conv_magnitude(bound, qkernel, qbias, layer.strides, layer.padding, layer.dilation_rate,
                              self.depthwise)


@register_builtin
class Conv1DHandler(_ConvHandler):
    float_classes = (keras.layers.Conv1D,)
    hgq_class, bn_class, plain_class = HConv1D, HConv1DBatchNorm, keras.layers.Conv1D


@register_builtin
class Conv2DHandler(_ConvHandler):
    float_classes = (keras.layers.Conv2D,)
    hgq_class, bn_class, plain_class = HConv2D, HConv2DBatchNorm, keras.layers.Conv2D


@register_builtin
class DepthwiseConv2DHandler(_ConvHandler):
    float_classes = (keras.layers.DepthwiseConv2D,)
    hgq_class = HDepthwiseConv2D
    exports_doc = "yes (`depth_multiplier` and `dilation_rate` must be 1; `activation='log_softmax'`: no)"
    depthwise = True
    carried = {
        "depthwise_initializer": "depthwise_initializer",
        "bias_initializer": "bias_initializer",
        "depthwise_regularizer": "kernel_regularizer",
        "bias_regularizer": "bias_regularizer",
        "depthwise_constraint": "kernel_constraint",
        "bias_constraint": "bias_constraint",
        "activity_regularizer": "activity_regularizer",
    }

    def structure_problem(self, layer):
        if layer.depth_multiplier != 1:
            return ExportProblem(f"depth_multiplier={layer.depth_multiplier}, which hls4ml 1.3's bit-exact flow "
                                 "cannot convert", "use depth_multiplier=1, followed by a 1x1 Conv2D for more channels")
        return super().structure_problem(layer)

    def structure(self, layer):
        return {
            "kernel_size": layer.kernel_size,
            "strides": layer.strides,
            "padding": layer.padding,
            "depth_multiplier": layer.depth_multiplier,
            "dilation_rate": layer.dilation_rate,
        }

    def plain_layer(self, layer, common):
        return keras.layers.DepthwiseConv2D(layer.kernel_size, strides=layer.strides, padding=layer.padding,
                                            depth_multiplier=layer.depth_multiplier,
                                            depthwise_initializer="zeros", **common)

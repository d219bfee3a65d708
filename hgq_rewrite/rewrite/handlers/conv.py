"""Convolutions: Conv1D/2D, DepthwiseConv1D/2D, SeparableConv1D/2D, and the ZeroPadding before them.

They share `core.WeightedHandler`: a following BatchNormalization folds into Conv1D/Conv2D (and the
pointwise half of a separable convolution), a following relu is fused, and the proxy holds the
plain Keras convolution with ``qkernel``/``qbias``, then a quantizer with the layer's traced output
format. A separable convolution becomes a depthwise convolution followed by a pointwise one (kernel
size 1) holding the bias. hls4ml 1.3's bit-exact pass has no rule for zero padding, so a
ZeroPadding layer (a P-layer in training) is exported only folded into the convolution after it,
when that convolution with padding='same' computes the same thing.
"""

import math

import keras

from ...compat.keras_private import inbound_nodes, outbound_nodes
from ...layers.conv import (
    HConv1D,
    HConv1DBatchNorm,
    HConv2D,
    HConv2DBatchNorm,
    HConvBase,
    HDepthwiseConv1D,
    HDepthwiseConv2D,
)
from ...layers.links import graph_node_indices, input_producers
from ...layers.passive import PZeroPadding1D, PZeroPadding2D
from ...proxy.errors import ProxyConversionError
from ...proxy.frac import conv_frac, conv_magnitude
from ..handler import ExportProblem
from ..registry import register_builtin
from .core import WeightedHandler
from .passive import PassiveHandler


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
        return self.plain_class(layer.filters, layer.kernel_size, strides=layer.strides,
                                padding=proxy_padding(layer), kernel_initializer="zeros", **common)

    def output_frac(self, layer, f_in, qkernel, qbias):
        return conv_frac(f_in, qkernel, qbias, layer.strides, proxy_padding(layer), layer.dilation_rate,
                         self.depthwise)

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


class _DepthwiseHandler(_ConvHandler):
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
        rank = self.hgq_class.rank
        remedy = f"use depth_multiplier=1, followed by a Conv{rank}D with kernel size 1 for more channels"
        return depth_multiplier_problem(layer, remedy) or super().structure_problem(layer)

    def structure(self, layer):
        return {
            "kernel_size": layer.kernel_size,
            "strides": layer.strides,
            "padding": layer.padding,
            "depth_multiplier": layer.depth_multiplier,
            "dilation_rate": layer.dilation_rate,
        }

    def plain_layer(self, layer, common):
        return self.plain_class(layer.kernel_size, strides=layer.strides, padding=proxy_padding(layer),
                                depth_multiplier=layer.depth_multiplier, depthwise_initializer="zeros", **common)


@register_builtin
class DepthwiseConv1DHandler(_DepthwiseHandler):
    float_classes = (keras.layers.DepthwiseConv1D,)
    hgq_class, plain_class = HDepthwiseConv1D, keras.layers.DepthwiseConv1D


@register_builtin
class DepthwiseConv2DHandler(_DepthwiseHandler):
    float_classes = (keras.layers.DepthwiseConv2D,)
    hgq_class, plain_class = HDepthwiseConv2D, keras.layers.DepthwiseConv2D


def depth_multiplier_problem(layer, remedy):
    """Why hls4ml 1.3 cannot export ``layer``'s depth multiplier, or None."""
    if layer.depth_multiplier == 1:
        return None
    return ExportProblem(f"depth_multiplier={layer.depth_multiplier}, which hls4ml 1.3's bit-exact flow cannot "
                         "convert (its depthwise rule assumes one output per input channel)", remedy)


class _SeparableHandler(_ConvHandler):
    """Separable convolution → a depthwise H-convolution (no bias), then a pointwise one (kernel size 1)
    holding the bias, the folded BatchNorm and the fused activation. Both keep the trained weights."""

    hgq_classes = ()  # the layers built are exported by the depthwise and convolution handlers
    dw_class = None
    exports_doc = "yes (`depth_multiplier` and `dilation_rate` must be 1; `activation='log_softmax'`: no)"
    carried = {
        "pointwise_initializer": "kernel_initializer",
        "bias_initializer": "bias_initializer",
        "pointwise_regularizer": "kernel_regularizer",
        "bias_regularizer": "bias_regularizer",
        "pointwise_constraint": "kernel_constraint",
        "bias_constraint": "bias_constraint",
        "activity_regularizer": "activity_regularizer",
    }

    @property
    def target(self):
        return f"{self.dw_class.__name__} + {self.hgq_class.__name__}"

    @property
    def bn_target(self):
        return f"{self.dw_class.__name__} + {self.bn_class.__name__}"

    def structure_problem(self, layer):
        remedy = "use depth_multiplier=1 (the pointwise convolution sets the number of output channels)"
        return depth_multiplier_problem(layer, remedy) or super().structure_problem(layer)

    def float_weights(self, layer):
        return layer.pointwise_kernel, (layer.bias if layer.use_bias else None)

    def structure(self, layer):
        ones = (1,) * self.hgq_class.rank
        return {"filters": layer.filters, "kernel_size": ones, "strides": ones, "padding": "valid",
                "dilation_rate": ones}

    def convert(self, layer, settings, bn=None, activation=None):
        pointwise = super().convert(layer, settings, bn=bn, activation=activation)
        kwargs = settings.kwargs("kq_conf", "paq_conf", "beta", "parallel_factor")
        if "parallel_factor" not in kwargs and self.default_parallel_factor(layer) is not None:
            kwargs["parallel_factor"] = self.default_parallel_factor(layer)
        depthwise = self.dw_class(
            layer.kernel_size, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
            depth_multiplier=layer.depth_multiplier, use_bias=False, kernel_initializer=layer.depthwise_initializer,
            kernel_regularizer=layer.depthwise_regularizer, kernel_constraint=layer.depthwise_constraint,
            name=settings.unique_name(f"{settings.name}_depthwise"), **kwargs)
        depthwise.set_initial_weights(kernel=layer.depthwise_kernel)
        return [depthwise, *pointwise]


@register_builtin
class SeparableConv1DHandler(_SeparableHandler):
    float_classes = (keras.layers.SeparableConv1D,)
    dw_class, hgq_class, bn_class = HDepthwiseConv1D, HConv1D, HConv1DBatchNorm


@register_builtin
class SeparableConv2DHandler(_SeparableHandler):
    float_classes = (keras.layers.SeparableConv2D,)
    dw_class, hgq_class, bn_class = HDepthwiseConv2D, HConv2D, HConv2DBatchNorm


# -- zero padding, folded into the convolution after it -----------------------------------------------
CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv1D,
                keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D, keras.layers.SeparableConv2D, HConvBase)
ZERO_PADDINGS = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D)


def pad_widths(pad):
    """``((before, after), ...)`` per spatial axis of a ZeroPadding layer."""
    return (tuple(pad.padding),) if isinstance(pad, keras.layers.ZeroPadding1D) else tuple(map(tuple, pad.padding))


def same_pads(n, k, s):
    """``(output length, (before, after))`` of padding='same' (Keras and hls4ml 1.3 agree) on length ``n``."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return out, (total // 2, total - total // 2)


def graph_readers(pad):
    """The layers reading ``pad``'s output in the model graph (a reloaded Sequential's stale calls left out)."""
    readers = []
    for node in outbound_nodes(pad):
        op = node.operation
        index = next((i for i, n in enumerate(inbound_nodes(op)) if n is node), None)
        if index in graph_node_indices(op) and not any(op is r for r in readers):
            readers.append(op)
    return readers


def fold_problem(pad):
    """None when ``pad`` folds into every convolution reading it (each with padding='valid' then computes
    what it computes with padding='same' on the unpadded input), else why not."""
    calls = graph_node_indices(pad)
    if len(calls) != 1:
        return f"it is called {len(calls)} times"
    spatial = tuple(inbound_nodes(pad)[calls[0]].arguments.keras_tensors[0].shape[1:-1])
    readers = graph_readers(pad)
    if not readers:
        return "no convolution reads it"
    for conv in readers:
        if not isinstance(conv, CONVOLUTIONS):
            return f"{conv.name!r} ({type(conv).__name__}) reads it, not a convolution"
        if len(graph_node_indices(conv)) != 1:
            return f"convolution {conv.name!r} is shared"
        if conv.padding != "valid" or any(d != 1 for d in conv.dilation_rate):
            return f"convolution {conv.name!r} has padding={conv.padding!r} (needs 'valid', dilation_rate 1)"
        for n, (before, after), k, s in zip(spatial, pad_widths(pad), conv.kernel_size, conv.strides):
            out, same = same_pads(n, k, s)
            if n is None or before != same[0] or (n + before + after - k) // s + 1 != out:
                return (f"its padding {pad_widths(pad)} is not what padding='same' adds for convolution "
                        f"{conv.name!r} (kernel {tuple(conv.kernel_size)}, strides {tuple(conv.strides)})")
    return None


def proxy_padding(conv):
    """The padding of ``conv``'s proxy convolution: 'same' when a ZeroPadding before it is folded into it."""
    if conv.padding != "valid" or len(graph_node_indices(conv)) != 1:
        return conv.padding
    producer = input_producers(conv, graph_node_indices(conv)[0])[0][0]
    if isinstance(producer, ZERO_PADDINGS) and fold_problem(producer) is None:
        return "same"
    return conv.padding


class _ZeroPaddingHandler(PassiveHandler):
    exports_doc = ("folded into the convolutions reading it, when each has padding='valid' and the padding is what "
                   "padding='same' adds (then exported as that convolution with padding='same'); otherwise no")

    def args(self, layer):
        return {"padding": layer.padding}

    def describe(self, layer, **fused):
        if fold_problem(layer) is not None:
            return self.target
        readers = ", ".join(repr(conv.name) for conv in graph_readers(layer))
        return f"{self.target} (exported folded into {readers})"

    def export_problem(self, layer, **fused):
        why = fold_problem(layer)
        if why is None:
            return None
        return ExportProblem(f"hls4ml 1.3's bit-exact pass has no rule for zero padding, so it exports only folded "
                             f"into the convolution after it, and {why}",
                             "remove the ZeroPadding and give the convolution padding='same' (same result when "
                             "the padding is the one 'same' adds), or pad the data before the firmware")

    def emit(self, layer, inputs, ctx):
        if any(id(t) in ctx.graph_outputs for t in ctx.call.outputs):
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({type(layer).__name__}): its output is a model output, and hls4ml 1.3's "
                "bit-exact pass has no rule for zero padding. Remedy: pad the data after the firmware.")
        return inputs[0]  # the convolutions reading it pad (proxy_padding)


@register_builtin
class ZeroPadding1DHandler(_ZeroPaddingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.ZeroPadding1D,), (PZeroPadding1D,), PZeroPadding1D


@register_builtin
class ZeroPadding2DHandler(_ZeroPaddingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.ZeroPadding2D,), (PZeroPadding2D,), PZeroPadding2D

"""Converters for layers with weights: Dense, Conv1D, Conv2D, DepthwiseConv2D.

These converters also accept the two fusions decided by `rewrite.fusion`:
``bn=`` a BatchNormalization folded into the layer (the ``*BatchNorm`` variant
is built and the BN's statistics copied into it), and ``activation="relu"``
from a following ReLU.
"""

import math

import keras

from ...layers.conv import depth_multiplier_problem
from ..registry import Conversion, Converter, register_builtin
from ..targets import hgq_layer
from ._common import NATIVE_ACTIVATIONS, activation_name, assign, channels_last


class WeightedConverter(Converter):
    """Shared logic: structure args, activation split, weight transfer."""

    target = "?"
    bn_target = None  # name of the *BatchNorm variant, if any
    fields = ("beta", "kernel", "activation", "parallel_factor")
    # float attribute -> HGQ constructor keyword, carried over as they are
    carried = {
        "kernel_initializer": "kernel_initializer",
        "bias_initializer": "bias_initializer",
        "kernel_regularizer": "kernel_regularizer",
        "bias_regularizer": "bias_regularizer",
        "kernel_constraint": "kernel_constraint",
        "bias_constraint": "bias_constraint",
        "activity_regularizer": "activity_regularizer",
    }

    def structure(self, layer):
        raise NotImplementedError

    def default_parallel_factor(self, layer):  # noqa: ARG002 - None keeps the HGQ layer's own default
        """``parallel_factor`` when the config sets none."""
        return None

    def check(self, layer):
        mode = getattr(layer, "quantization_mode", None)
        if mode:
            return f"already quantized by Keras (quantization_mode={mode!r})"
        reason = channels_last(layer)
        if reason:
            return reason
        if activation_name(layer.activation) is None:
            return "custom activation function (register a converter, or keep the layer float)"
        return None

    def notes(self, layer):
        if getattr(layer, "lora_enabled", False):
            return ["LoRA weights merged into the kernel"]
        return []

    def carried_kwargs(self, layer):
        out = {}
        for attr, kw in self.carried.items():
            value = getattr(layer, attr, None)
            if value is not None:
                out[kw] = value
        return out

    def _activations(self, layer, activation):
        own = activation_name(layer.activation)
        if activation is not None and own == "linear":
            own = activation
        if own in NATIVE_ACTIVATIONS:
            return own, None
        return "linear", own

    def describe(self, layer, bn=None, activation=None):
        name = self.bn_target if bn is not None else self.target
        _, extra = self._activations(layer, activation)
        return name if extra is None else f"{name} + HActivation({extra})"

    def convert(self, layer, settings, bn=None, activation=None):
        inner, extra = self._activations(layer, activation)
        cls = hgq_layer(self.bn_target if bn is not None else self.target)
        kwargs = dict(self.structure(layer))
        kwargs.update(self.carried_kwargs(layer))
        kwargs.update(activation=inner, use_bias=layer.use_bias, name=settings.name)
        kwargs.update(settings.kwargs("kq_conf", "paq_conf", "beta", "parallel_factor"))
        if "parallel_factor" not in kwargs and self.default_parallel_factor(layer) is not None:
            kwargs["parallel_factor"] = self.default_parallel_factor(layer)
        if bn is not None:
            kwargs.update(
                momentum=bn.momentum, epsilon=bn.epsilon, center=bn.center, scale=bn.scale, bn_trainable=bn.trainable
            )
        new = cls(**kwargs)
        layers = [new]
        if extra is not None:
            act_cls = hgq_layer("HActivation")
            layers.append(
                act_cls(extra, name=settings.unique_name(f"{settings.name}_{extra}"),
                        **settings.kwargs("beta", "paq_conf"))
            )

        def transfer():
            assign(new.kernel, layer.kernel)
            if layer.use_bias:
                assign(new.bias, layer.bias)
            if bn is not None:
                if bn.scale:
                    assign(new.bn_gamma, bn.gamma)
                if bn.center:
                    assign(new.bn_beta, bn.beta)
                assign(new.moving_mean, bn.moving_mean)
                assign(new.moving_variance, bn.moving_variance)
            new.adapt_kernel_bits()

        return Conversion(layers, transfer)


@register_builtin(keras.layers.Dense)
class DenseConverter(WeightedConverter):
    target = "HDense"
    bn_target = "HDenseBatchNorm"

    def structure(self, layer):
        return {"units": layer.units}


class _ConvConverter(WeightedConverter):
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
        if any(d != 1 for d in layer.dilation_rate):
            return f"dilation_rate={layer.dilation_rate}, which hls4ml 1.3 ignores (use dilation_rate=1)"
        return None

    def structure(self, layer):
        return {
            "filters": layer.filters,
            "kernel_size": layer.kernel_size,
            "strides": layer.strides,
            "padding": layer.padding,
            "dilation_rate": layer.dilation_rate,
        }


@register_builtin(keras.layers.Conv1D)
class Conv1DConverter(_ConvConverter):
    target = "HConv1D"
    bn_target = "HConv1DBatchNorm"


@register_builtin(keras.layers.Conv2D)
class Conv2DConverter(_ConvConverter):
    target = "HConv2D"
    bn_target = "HConv2DBatchNorm"


@register_builtin(keras.layers.DepthwiseConv2D)
class DepthwiseConv2DConverter(_ConvConverter):
    target = "HDepthwiseConv2D"
    carried = {
        "depthwise_initializer": "depthwise_initializer",
        "bias_initializer": "bias_initializer",
        "depthwise_regularizer": "kernel_regularizer",
        "bias_regularizer": "bias_regularizer",
        "depthwise_constraint": "kernel_constraint",
        "bias_constraint": "bias_constraint",
        "activity_regularizer": "activity_regularizer",
    }

    def check(self, layer):
        return super().check(layer) or depth_multiplier_problem(layer.depth_multiplier)

    def structure(self, layer):
        return {
            "kernel_size": layer.kernel_size,
            "strides": layer.strides,
            "padding": layer.padding,
            "depth_multiplier": layer.depth_multiplier,
            "dilation_rate": layer.dilation_rate,
        }

"""Layers with weights: Dense, Conv1D, Conv2D, DepthwiseConv2D (→ HDense, HConv*, HDepthwiseConv2D).

They fold a following BatchNormalization (Dense and Conv: the ``*BatchNorm`` variant is built and
the BN's statistics copied into it) and fuse a following relu (see `rewrite.fusion`). The proxy
holds the plain Keras layer with ``qkernel``/``qbias`` (+ ``Activation('relu')``), then a
quantizer with the layer's traced output format.
"""

import math

import keras
import numpy as np
from keras import ops

from ...layers import (
    HActivation,
    HConv1D,
    HConv1DBatchNorm,
    HConv2D,
    HConv2DBatchNorm,
    HDense,
    HDenseBatchNorm,
    HDepthwiseConv2D,
)
from ...proxy.frac import conv_frac, conv_magnitude, dense_frac, dense_magnitude
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import register_builtin
from ...activations import NATIVE_ACTIVATIONS
from ._common import activation_name, assign, channels_last, softmax_problem

FLOAT32_SIGNIFICAND_BITS = 24


class WeightedHandler(LayerHandler):
    """Shared logic: structure args, activation split, weight transfer, the proxy's plain layer."""

    hgq_class = None
    bn_class = None  # the *BatchNorm variant, if any
    fields = ("beta", "kernel", "activation", "parallel_factor")
    fuses_activation = ("relu",)
    exports_doc = "yes (`activation='softmax'`: no)"
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

    @property
    def hgq_classes(self):
        return (self.hgq_class,)

    @property
    def target(self):
        return self.hgq_class.__name__

    @property
    def bn_target(self):
        return None if self.bn_class is None else self.bn_class.__name__

    @property
    def folds_batchnorm(self):
        return self.bn_class is not None

    # -- float -> HGQ ---------------------------------------------------------------------------------
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

    def activation_of(self, layer):
        return activation_name(layer.activation)

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

    def export_problem(self, layer, bn=None, activation=None):
        if isinstance(layer, self.hgq_class):
            return None
        return softmax_problem(self._activations(layer, activation)[1])

    def convert(self, layer, settings, bn=None, activation=None):
        inner, extra = self._activations(layer, activation)
        cls = self.bn_class if bn is not None else self.hgq_class
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
            layers.append(HActivation(extra, name=settings.unique_name(f"{settings.name}_{extra}"),
                                      **settings.kwargs("beta", "paq_conf")))

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

    # -- HGQ -> proxy ---------------------------------------------------------------------------------
    def plain_layer(self, layer, common):
        """The plain Keras layer computing ``layer``'s kernel product (``common``: shared keywords)."""
        raise NotImplementedError

    def output_frac(self, layer, f_in, qkernel, qbias):
        """Fractional bits the kernel product carries, per output."""
        raise NotImplementedError

    def magnitude(self, layer, bound, qkernel, qbias):
        """Bound of the kernel product's magnitude per output, given the input's bound."""
        raise NotImplementedError

    def emit(self, layer, inputs, ctx):
        x = inputs[0]
        name = ctx.layer_name(layer)
        qkernel, qbias = layer.qkernel, layer.qbias
        # weights are set right after: zero initializers skip random draws (a compile each on JAX)
        common = dict(use_bias=qbias is not None, dtype=ctx.dtype, name=name, bias_initializer="zeros")
        plain = self.plain_layer(layer, common)
        y = plain(x)
        plain.set_weights([qkernel] if qbias is None else [qkernel, qbias])
        f_avail = self.output_frac(layer, ctx.frac_of(x), qkernel, qbias)
        if self.float32_may_round(layer, qkernel, qbias, f_avail):
            ctx.float32_inexact.append(layer.name)
        if layer.activation_name == "relu":
            y = keras.layers.Activation("relu", dtype=ctx.dtype, name=ctx.name(f"{name}_relu"))(y)
        overrides = None
        if layer.parallel_factor is not None and self.asks_parallel_factor(y):
            overrides = {"layers": {name: {"parallelization_factor": int(layer.parallel_factor)}}}
        return ctx.quantize_output(layer, y, f_avail, f"{name}_q", overrides)

    def asks_parallel_factor(self, y):
        """Whether the proxy passes ``parallel_factor`` to hls4ml for this output."""
        return True

    def float32_may_round(self, layer, qkernel, qbias, f_avail):
        """True when ``layer``'s float32 sums may round: magnitude bound x carried fractional bits > 24 bits."""
        k, i, _ = (np.asarray(ops.convert_to_numpy(m), np.float64) for m in layer.input_kif_maps(True)[0])
        bound = self.magnitude(layer, 2.0**i, qkernel, qbias)  # |x| <= 2**i for any format (k, i, f)
        with np.errstate(divide="ignore"):
            bits = np.ceil(np.log2(bound)) + np.broadcast_to(f_avail, bound.shape)
        return bool(np.any(np.isfinite(bits) & (bits > FLOAT32_SIGNIFICAND_BITS)))


@register_builtin
class DenseHandler(WeightedHandler):
    float_classes = (keras.layers.Dense,)
    hgq_class, bn_class = HDense, HDenseBatchNorm

    def structure(self, layer):
        return {"units": layer.units}

    def plain_layer(self, layer, common):
        return keras.layers.Dense(layer.units, kernel_initializer="zeros", **common)

    def output_frac(self, layer, f_in, qkernel, qbias):
        return dense_frac(f_in, qkernel, qbias)

    def magnitude(self, layer, bound, qkernel, qbias):
        return dense_magnitude(bound, qkernel, qbias)

    def asks_parallel_factor(self, y):
        return len(y.shape) > 2 and int(np.prod(y.shape[1:-1])) > 1


class _ConvHandler(WeightedHandler):
    exports_doc = "yes (`dilation_rate` must be 1; `activation='softmax'`: no)"
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
    exports_doc = "yes (`depth_multiplier` and `dilation_rate` must be 1; `activation='softmax'`: no)"
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

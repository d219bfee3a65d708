"""Layers with weights: the shared `WeightedHandler`, and Dense (→ HDense; convolutions: `handlers.conv`).

They fold a following BatchNormalization (the ``*BatchNorm`` variant is built and the BN's
statistics copied into it) and fuse a following relu (see `rewrite.fusion`). The proxy holds the
plain Keras layer with ``qkernel``/``qbias`` (+ ``Activation('relu')``), then a quantizer with the
layer's traced output format.
"""

import keras
import numpy as np
from keras import ops

from ...layers import HDense, HDenseBatchNorm
from ...proxy.frac import dense_frac, dense_magnitude
from ..handler import LayerHandler
from ..registry import register_builtin
from ...activations import NATIVE_ACTIVATIONS
from ._common import (activation_layer, activation_name, activation_target, batchnorm_weights, channels_last,
                      softmax_problem)

FLOAT32_SIGNIFICAND_BITS = 24


class WeightedHandler(LayerHandler):
    """Shared logic: structure args, activation split, weight transfer, the proxy's plain layer."""

    hgq_class = None
    bn_class = None  # the *BatchNorm variant, if any
    fields = ("beta", "kernel", "activation", "parallel_factor")
    fuses_activation = ("relu",)
    exports_doc = "yes (`activation='log_softmax'`: no)"
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

    def float_weights(self, layer):
        """The float layer's kernel and bias (None without one), in the HGQ layer's layouts."""
        return layer.kernel, (layer.bias if layer.use_bias else None)

    def describe(self, layer, bn=None, activation=None):
        name = self.bn_target if bn is not None else self.target
        _, extra = self._activations(layer, activation)
        return name if extra is None else f"{name} + {activation_target(extra)}"

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
        kernel, bias = self.float_weights(layer)
        new.set_initial_weights(kernel=kernel, bias=bias, **({} if bn is None else batchnorm_weights(bn)))
        layers = [new]
        if extra is not None:
            layers.append(activation_layer(extra, settings.unique_name(f"{settings.name}_{extra}"), settings))
        return layers

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

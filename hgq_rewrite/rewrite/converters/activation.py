"""Converters for Activation and ReLU layers (→ HActivation, or fused; see `fusion`)."""

import keras

from ..registry import Conversion, Converter, register_builtin
from ..targets import hgq_layer
from ._common import activation_name


class _ActivationConverter(Converter):
    target = "HActivation"
    fields = ("beta", "activation")

    def name_of(self, layer):
        raise NotImplementedError

    def is_relu(self, layer):
        """True if the layer computes a plain relu (then it may be fused)."""
        return self.name_of(layer) == "relu"

    def check(self, layer):
        if self.name_of(layer) is None:
            return "custom activation function (register a converter, or keep the layer float)"
        return None

    def notes(self, layer):
        if self.name_of(layer) in ("softmax", "log_softmax"):
            return [
                "trains and evaluates, but does not export: hls4ml 1.3 has no bit-exact softmax; remove it "
                "before to_proxy_model (argmax is unchanged) and apply it after the firmware"
            ]
        return []

    def describe(self, layer):
        return f"HActivation({self.name_of(layer)})"

    def convert(self, layer, settings):
        cls = hgq_layer("HActivation")
        return Conversion([cls(self.name_of(layer), name=settings.name, **settings.kwargs("beta", "paq_conf"))])


@register_builtin(keras.layers.Activation)
class ActivationConverter(_ActivationConverter):
    def name_of(self, layer):
        return activation_name(layer.activation)


@register_builtin(keras.layers.ReLU)
class ReLUConverter(_ActivationConverter):
    def name_of(self, layer):
        slope, thr, top = float(layer.negative_slope), float(layer.threshold), layer.max_value
        if slope == 0 and thr == 0:
            if top is None:
                return "relu"
            if float(top) == 6.0:
                return "relu6"
        return None

    def check(self, layer):
        if self.name_of(layer) is None:
            return ("ReLU with negative_slope/threshold/max_value other than relu or relu6 "
                    "(register a converter, or keep the layer float)")
        return None


@register_builtin(keras.layers.Softmax)
class SoftmaxConverter(_ActivationConverter):
    def name_of(self, layer):
        return "softmax" if layer.axis in (-1, [-1], (-1,)) else None

    def check(self, layer):
        if self.name_of(layer) is None:
            return f"Softmax over axis {layer.axis} (only the last axis)"
        return None

"""HActivation: any unary activation followed by a trainable output quantizer."""

import keras
from keras import ops

from ..activations import NATIVE_ACTIVATIONS
from ..quantizers.fixed_point import round_to_grid
from .base import HLayerBase


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class ActivationWithArgs:
    """A Keras activation function with keyword arguments, e.g. ``leaky_relu`` with its ``negative_slope``
    (what the LeakyReLU, ELU and ReLU layers compute); serializable, so an HActivation can hold it."""

    def __init__(self, function, **arguments):
        self.function, self.arguments = function, dict(arguments)
        self.fn = keras.activations.get(function)
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.arguments.items()))
        self.__name__ = f"{function}({args})"

    def __call__(self, x):
        return self.fn(x, **self.arguments)

    def get_config(self):
        return {"function": self.function, **self.arguments}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def resolve_activation(activation, layer_name):
    """(callable, name) for an activation name or callable, with a clear error for unknown names."""
    if callable(activation):
        return activation, getattr(activation, "__name__", type(activation).__name__)
    try:
        fn = keras.activations.get(activation)
    except (ValueError, TypeError):
        fn = None
    if fn is None:
        raise ValueError(
            f"Layer {layer_name!r}: unknown activation {activation!r}. Use a Keras activation name "
            "(e.g. 'relu', 'tanh', 'sigmoid') or a Python callable."
        )
    return fn, activation


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HActivation(HLayerBase):
    """``y = paq(act(x))``. Non-linear activations are exported as lookup tables.

    For a heterogeneous output quantizer the activation is first rounded to the finest
    output grid (what the exported table holds), so the export stays exact.

    Args:
        activation: Keras activation name or a unary callable (``keras.ops`` based).
    """

    def __init__(self, activation, beta=0.0, paq_conf=None, **kwargs):
        super().__init__(beta=beta, paq_conf=paq_conf, **kwargs)
        self.activation, self.activation_name = resolve_activation(activation, self.name)
        self._activation_arg = activation

    def build(self, input_shape):
        self._build_state(tuple(input_shape))

    def call(self, x, training=None):
        y = self.activation(x)
        if self.activation_name not in NATIVE_ACTIVATIONS:
            finest = ops.max(ops.round(self.paq.fbw))
            y = y + ops.stop_gradient(round_to_grid(y, finest) - y)
        return self.paq(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        if not isinstance(self._activation_arg, str):
            cfg["activation"] = keras.saving.serialize_keras_object(self._activation_arg)
        else:
            cfg["activation"] = self._activation_arg
        return cfg

    @classmethod
    def from_config(cls, config):
        act = config.get("activation")
        if isinstance(act, dict):
            config = dict(config, activation=keras.saving.deserialize_keras_object(act))
        return cls(**config)

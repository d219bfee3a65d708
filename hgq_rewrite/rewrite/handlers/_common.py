"""Small helpers shared by the built-in handlers."""

import keras

from ...layers import HActivation, HSoftmax
from ..handler import ExportProblem


def activation_name(fn):
    """Name of a built-in Keras activation function, or None for a custom one."""
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        fn = keras.activations.get(fn)
    name = getattr(fn, "__name__", None)
    try:
        if name and keras.activations.get(name) is fn:
            return name
    except (ValueError, TypeError):
        pass
    return None


def batchnorm_weights(bn):
    """The variables of a float BatchNormalization ``bn``, named as in the H-layer it is folded into."""
    return {"bn_gamma": bn.gamma, "bn_beta": bn.beta, "moving_mean": bn.moving_mean,
            "moving_variance": bn.moving_variance}


def channels_last(layer):
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        return f"data_format={fmt!r}: HGQ layers are channels_last only"
    return None


def softmax_problem(name):
    """Why an activation named ``name`` does not export (log_softmax), or None."""
    if name == "log_softmax":
        return ExportProblem(
            "log_softmax does not export (it trains and evaluates): it is not element-wise and hls4ml 1.3 has no "
            "bit-exact log-softmax",
            "use softmax (it exports as HSoftmax), or apply the log after the firmware",
        )
    return None


def activation_target(name):
    """What an activation ``name`` becomes (for `explain`): HSoftmax for softmax, else an HActivation."""
    return "HSoftmax" if name == "softmax" else f"HActivation({name})"


def activation_layer(function, name, settings):
    """The H-layer computing the activation ``function`` (a name or `ActivationWithArgs`) on its own."""
    if function == "softmax":
        return HSoftmax(name=name, **settings.kwargs("beta", "paq_conf"))
    return HActivation(function, name=name, **settings.kwargs("beta", "paq_conf"))

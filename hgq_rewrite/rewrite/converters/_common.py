"""Small helpers shared by the built-in converters."""

import keras
import numpy as np

# H-layers with weights compute these activations themselves.
NATIVE_ACTIVATIONS = ("linear", "relu")


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


def assign(variable, value):
    """Copy a float weight into a new layer's variable (shapes must agree)."""
    value = np.asarray(keras.ops.convert_to_numpy(value))
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"Cannot copy a weight of shape {value.shape} into {variable.path} of shape {tuple(variable.shape)}."
        )
    variable.assign(value)


def channels_last(layer):
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        return f"data_format={fmt!r}: HGQ layers are channels_last only"
    return None

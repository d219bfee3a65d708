"""The proxy's two-input einsum (hls4ml 1.3's ``Einsum`` node, io_parallel) and the fractional bits and
magnitudes einsums carry (for `EinsumDense` with its kernel too)."""

import keras
import numpy as np
from keras import ops

from ..layers.einsum import einsum_output_shape
from .fixed_point_layer import check_float64
from .registration import register_hls4ml_handlers


def _joint(equation, operands):
    """Each operand broadcast onto the axes of every letter (first-seen order); the letters; the output letters."""
    specs, out = equation.replace(" ", "").split("->")
    specs = specs.split(",")
    letters = "".join(dict.fromkeys("".join(specs)))
    expanded = []
    for spec, x in zip(specs, operands):
        x = np.asarray(x, np.float64)
        perm = [spec.index(c) for c in letters if c in spec]
        shape = [x.shape[spec.index(c)] if c in spec else 1 for c in letters]
        expanded.append(np.transpose(x, perm).reshape(shape))
    return expanded, letters, out


def einsum_frac(equation, f0, f1):
    """Fractional bits each output of the einsum carries: max over its non-zero products of f0 + f1
    (``-inf`` marks an always-zero value, ``inf`` an unknown one)."""
    (a, b), letters, out = _joint(equation, (f0, f1))
    with np.errstate(invalid="ignore"):
        terms = a + b
    terms = np.where(np.isnan(terms), -np.inf, terms)  # unknown x zero: zero
    summed = tuple(j for j, c in enumerate(letters) if c not in out)
    kept = [c for c in letters if c in out]
    return np.transpose(np.max(terms, axis=summed), [kept.index(c) for c in out])


def einsum_magnitude(equation, m0, m1):
    """Bound of each output's magnitude: the einsum of the operands' magnitude bounds."""
    return np.einsum(equation.replace(" ", ""), np.abs(np.asarray(m0, np.float64)), np.abs(np.asarray(m1, np.float64)))


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class ProxyEinsum(keras.layers.Layer):
    """``einsum(equation, x0, x1)`` of two tensors, in float64 (exact for fixed-point operands).

    Args:
        equation: einsum equation with the batch letter first in every operand and the output.
    """

    def __init__(self, equation, **kwargs):
        kwargs.setdefault("dtype", "float64")
        super().__init__(**kwargs)
        check_float64(self.name, self.compute_dtype)
        self.equation = str(equation)
        register_hls4ml_handlers()

    def call(self, inputs):
        x0, x1 = (ops.cast(x, self.compute_dtype) for x in inputs)
        return ops.einsum(self.equation, x0, x1)

    def compute_output_shape(self, input_shape):
        return einsum_output_shape(self.equation, input_shape[0], input_shape[1], self.name)

    def get_config(self):
        cfg = super().get_config()
        cfg["equation"] = self.equation
        return cfg

"""HEinsumDense (an einsum with a trainable quantized kernel) and HEinsum (an einsum of two quantized inputs).

Equations are written with the batch axis, without ``...``: ``"abc,cde->abde"``.
"""

import math
import re

import keras
from keras import ops

from ..quantizers.fixed_point import round_to_grid
from .base import HLayerBase, bits_of
from .kernel_base import HKernelLayer

_EQUATION = re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)")


def split_equation(equation, layer_name):
    """``(input spec, second spec, output spec)`` of ``"ab,bc->ac"``; a clear error for other forms."""
    match = _EQUATION.fullmatch(str(equation).replace(" ", ""))
    if match is None:
        raise ValueError(f"Layer {layer_name!r}: equation {equation!r} is not of the form 'abc,cd->abd' (two "
                         "operands, letters only, no '...'); write every axis out.")
    return match.groups()


def einsum_output_shape(equation, shape0, shape1, layer_name):
    """Shape of ``einsum(equation, x0, x1)`` from the operands' shapes."""
    spec0, spec1, out = split_equation(equation, layer_name)
    sizes = {}
    for spec, shape in ((spec0, shape0), (spec1, shape1)):
        if len(spec) != len(shape):
            raise ValueError(f"Layer {layer_name!r}: equation {equation!r} gives {spec!r} for an operand of shape "
                             f"{tuple(shape)}.")
        for letter, size in zip(spec, shape):
            if size is not None:
                sizes[letter] = size
    return tuple(sizes.get(letter) for letter in out)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HEinsumDense(HKernelLayer):
    """``keras.layers.EinsumDense`` quantized with HGQ: ``y = paq(act(einsum(x, kq(W)) + q(b)))``.

    Args:
        equation: einsum equation, input first, kernel second (``"abc,cde->abde"``).
        output_shape: output shape without the batch axis (``None`` entries: as the input's).
        bias_axes: output letters the bias spans, or None for no bias.
        Other arguments as ``HKernelLayer``. The bias variable is stored flat and reshaped to
        Keras' bias shape (``bias_shape``) when used. EBOPs: Σ over the multiplies of
        input bits × kernel bits.
    """

    def __init__(self, equation, output_shape, bias_axes=None, activation=None, **kwargs):
        kwargs.pop("use_bias", None)  # given by bias_axes
        super().__init__(activation=activation, use_bias=bias_axes is not None, **kwargs)
        self.equation = str(equation)
        self.specs = split_equation(self.equation, self.name)
        self.partial_output_shape = tuple(output_shape) if isinstance(output_shape, (list, tuple)) else (output_shape,)
        self.bias_axes = bias_axes

    def full_output_shape(self, input_shape):
        spec_in, _, spec_out = self.specs
        if len(self.partial_output_shape) != len(spec_out) - 1 or len(input_shape) != len(spec_in):
            raise ValueError(f"Layer {self.name!r}: equation {self.equation!r} does not fit input shape "
                             f"{tuple(input_shape)} and output_shape {self.partial_output_shape}.")
        out = [input_shape[0], *self.partial_output_shape]
        for j, letter in enumerate(spec_out):
            if out[j] is None and letter in spec_in:
                out[j] = input_shape[spec_in.index(letter)]
        return tuple(out)

    def kernel_shape(self, input_shape):
        spec_in, spec_kernel, spec_out = self.specs
        out = self.full_output_shape(input_shape)
        shape = []
        for letter in spec_kernel:
            size = out[spec_out.index(letter)] if letter in spec_out else (
                input_shape[spec_in.index(letter)] if letter in spec_in else None)
            if size is None:
                raise ValueError(f"Layer {self.name!r}: the size of kernel axis {letter!r} of {self.equation!r} is "
                                 f"unknown (input shape {tuple(input_shape)}).")
            shape.append(int(size))
        return tuple(shape)

    @property
    def bias_shape(self):
        """Keras' bias shape: the output axes from the first bias axis on (1 where the bias is shared)."""
        spec_out = self.specs[2]
        out = self.full_output_shape(self._input_shape)
        first = min(spec_out.index(letter) for letter in self.bias_axes)
        return tuple(out[j] if spec_out[j] in self.bias_axes else 1 for j in range(first, len(spec_out)))

    def out_channels(self):
        return math.prod(self.bias_shape) if self.bias_axes else self.kernel_shape(self._input_shape)[-1]

    def apply_kernel(self, x, kernel):
        return ops.einsum(self.equation, x, kernel)

    def compute_output_shape(self, input_shape):
        return self.full_output_shape(tuple(input_shape))

    def quantize_bias(self, bias, output_fbw=None):
        """The bias in Keras' shape, on the finest output grid of the outputs it is added to (``output_fbw``:
        the output bitwidths as read for the training call)."""
        shape = self.bias_shape
        bias = ops.reshape(bias, shape)
        f = ops.round(self.paq.fbw if output_fbw is None else output_fbw)
        f = ops.max(f, axis=tuple(range(len(f.shape) - len(shape))))
        shared = tuple(j for j, size in enumerate(shape) if size == 1)
        if shared:
            f = ops.max(f, axis=shared, keepdims=True)
        return bias + ops.stop_gradient(round_to_grid(bias, f) - bias)

    def bit_products(self, b_in, b_kernel):
        return ops.sum(ops.einsum(self.equation, b_in, b_kernel))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(equation=self.equation, output_shape=list(self.partial_output_shape), bias_axes=self.bias_axes)
        return cfg


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HEinsum(HLayerBase):
    """``paq(einsum(equation, x0, x1))`` of two quantized inputs (attention scores and weighted values).

    Args:
        equation: einsum equation with the batch axis first in every operand (``"aecd,abcd->acbe"``).
        EBOPs: Σ over the multiplies of bits(x0) × bits(x1).
    """

    def __init__(self, equation, beta=0.0, paq_conf=None, **kwargs):
        super().__init__(beta=beta, paq_conf=paq_conf, **kwargs)
        self.equation = str(equation)
        specs = split_equation(self.equation, self.name)
        if not (specs[0][0] == specs[1][0] == specs[2][0]):
            raise ValueError(f"Layer {self.name!r}: equation {self.equation!r} must start every operand and the "
                             "output with the batch axis (e.g. 'abc,adc->abd').")

    def compute_output_shape(self, input_shape):
        return einsum_output_shape(self.equation, input_shape[0], input_shape[1], self.name)

    def build(self, input_shape):
        self._build_state(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        y = self.paq(ops.einsum(self.equation, inputs[0], inputs[1]), training=training)
        self._train_ebops(training)
        return y

    def has_cost(self):
        return True

    def ebops_of_call(self, input_maps, exact, **known):
        return ops.sum(ops.einsum(self.equation, bits_of(input_maps[0]), bits_of(input_maps[1])))

    def get_config(self):
        cfg = super().get_config()
        cfg["equation"] = self.equation
        return cfg

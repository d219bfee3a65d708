"""Common core of the H-layers that multiply by a kernel (Dense, Conv, DepthwiseConv)."""

import keras
import numpy as np
from keras import ops

from ..activations import NATIVE_ACTIVATIONS
from ..quantizers import HQuantizer
from ..quantizers.fixed_point import round_to_grid
from ..quantizers.hquantizer import read
from ..quantizers.replicas import has_value
from .base import HLayerBase, bits_of


def activation_name(activation, layer_name):
    """Normalise the in-layer activation; only linear and relu can be fused into an H-layer."""
    if activation is None:
        return "linear"
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", str(activation))
    if name not in NATIVE_ACTIVATIONS:
        raise ValueError(
            f"Layer {layer_name!r}: activation {name!r} cannot be fused into an H-layer (only 'linear' and "
            f"'relu'). Use activation='linear' and put HActivation({name!r}) after it."
        )
    return name


class HKernelLayer(HLayerBase):
    """y = paq(act(x ⊛ kq(kernel) + q(bias))); subclasses give the kernel shape and the ⊛ operation.

    Args:
        activation: ``None``/``"linear"`` or ``"relu"``.
        use_bias: add a bias, quantized to the finest output grid of its channel.
        kq_conf: kernel quantizer config (defaults from ``get_default_kq_conf()``).
        paq_conf: output quantizer config.
        beta: EBOPs weight in the loss.
        parallel_factor: how many kernel applications run in parallel in hardware.
    """

    def __init__(
        self,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        kq_conf=None,
        paq_conf=None,
        beta=0.0,
        parallel_factor=None,
        **kwargs,
    ):
        super().__init__(beta=beta, paq_conf=paq_conf, **kwargs)
        self.activation_name = activation_name(activation, self.name)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.kq_conf = kq_conf
        self.kq = HQuantizer(kq_conf, "kernel", owner=self.name, name=f"{self.name}_kq")
        self.parallel_factor = None if parallel_factor is None else int(parallel_factor)
        if self.parallel_factor is not None and self.parallel_factor < 1:
            raise ValueError(f"Layer {self.name!r}: parallel_factor must be >= 1, got {parallel_factor}.")

    # -- subclass hooks ------------------------------------------------------------------------------
    def kernel_shape(self, input_shape):
        raise NotImplementedError

    def apply_kernel(self, x, kernel):
        raise NotImplementedError

    def out_channels(self):
        return self.kernel_shape(self._input_shape)[-1]

    # -- build / call --------------------------------------------------------------------------------
    def build(self, input_shape):
        self._input_shape = tuple(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_shape(input_shape),
            initializer=self._initializer("kernel", self.kernel_initializer),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.out_channels(),),
                initializer=self._initializer("bias", self.bias_initializer),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.build_extra()
        self.kq.build(self.kernel.shape)
        self._build_state(self.compute_output_shape(input_shape))
        if has_value(self.kernel):  # traced (a symbolic build), its bits keep init_bw
            self.adapt_kernel_bits()

    def build_extra(self):
        """Hook for extra weights (BatchNorm statistics)."""

    def folded_kernel_bias(self, x=None, training=False):
        """The float kernel and bias the layer multiplies with (BatchNorm variants fold here)."""
        return self.kernel, self.bias

    def folded_kernel(self):
        """The inference kernel of `folded_kernel_bias` alone."""
        return self.kernel

    def quantize_bias(self, bias, output_fbw=None):
        """``bias`` on the finest grid of its output channel (``output_fbw``: the output bitwidths as read
        for the training call)."""
        f = self.paq.max_fraction_bits(keep_axis=-1, fbw=output_fbw)
        bias = read(bias)
        return bias + ops.stop_gradient(round_to_grid(bias, f) - bias)

    def call(self, x, training=None):
        kernel, bias = self.folded_kernel_bias(x, training)
        # in training every variable is read once and its uses share the read (a read is an op of the step)
        kernel = read(kernel) if training else kernel
        kfbw, pfbw = (read(self.kq.fbw), read(self.paq.fbw)) if training else (None, None)
        qkernel = self.kq(kernel, training=training, fbw=kfbw)
        z = self.apply_kernel(x, qkernel)
        if bias is not None:
            z = z + self.quantize_bias(bias, pfbw)
        if self.activation_name == "relu":
            z = ops.relu(z)
        y = self.paq(z, training=training, fbw=pfbw)
        # the EBOPs estimate counts the bits of the inference kernel: the one just quantized unless the
        # training call folded batch statistics into it
        inference_kernel = {} if self.folds_batch_statistics(training) else dict(qkernel=qkernel, kernel=kernel)
        self._train_ebops(training, kernel_fbw=kfbw, **inference_kernel)
        return y

    def folds_batch_statistics(self, training):
        """True when the training call's kernel depends on the batch (BatchNorm variants)."""
        return False

    # -- weights for export --------------------------------------------------------------------------
    def adapt_kernel_bits(self):
        """Re-initialise kernel fractional bits from the current (folded) kernel values (eager)."""
        self.kq.adapt_to(self.folded_kernel())

    @property
    def qkernel(self):
        """Inference kernel (BatchNorm folded), exactly on its fixed-point grid (numpy)."""
        kernel, _ = self.folded_kernel_bias()
        return np.asarray(ops.convert_to_numpy(self.kq(kernel, training=False)))

    @property
    def qbias(self):
        """Inference bias (BatchNorm folded) on its grid, or None."""
        _, bias = self.folded_kernel_bias()
        return None if bias is None else np.asarray(ops.convert_to_numpy(self.quantize_bias(bias)))

    # -- EBOPs ---------------------------------------------------------------------------------------
    def has_cost(self):
        return True

    def kernel_bits(self, exact, qkernel=None, kernel=None, kernel_fbw=None):
        """Bits of each inference weight; known from the training call, if given: the quantized inference kernel
        ``qkernel``, its float values ``kernel`` and the kernel bitwidths ``kernel_fbw``."""
        if exact:
            return self.kq.kernel_bits(self.qkernel, exact=True)
        if kernel is None:
            kernel = self.folded_kernel()
        if qkernel is None:
            qkernel = self.kq(kernel, training=False, fbw=kernel_fbw)  # the value of the training quantizer's output
        # float values: the pruning margin's gradient
        return self.kq.kernel_bits(qkernel, values=kernel, fbw=kernel_fbw)

    def ebops_of_call(self, input_maps, exact, **known):
        b_in = bits_of(input_maps[0])
        return self.bit_products(b_in, self.kernel_bits(exact, **known))

    def bit_products(self, b_in, b_kernel):
        """Σ b_in·b_w over the multiplies instantiated in hardware."""
        raise NotImplementedError

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            activation=self.activation_name,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            kernel_constraint=keras.constraints.serialize(self.kernel_constraint),
            bias_constraint=keras.constraints.serialize(self.bias_constraint),
            kq_conf=self.kq_conf,
            parallel_factor=self.parallel_factor,
        )
        return cfg

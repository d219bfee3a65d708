"""A separate (larger) step size for the bitwidth variables.

Under Adam every variable moves by at most about ``learning_rate`` per step, whatever the size of
its gradient. A bitwidth ``f`` therefore cannot fall by more than ``lr * steps`` bits during a
fine-tuning run (60 epochs of 63 steps at lr 1e-3: about 4 bits), so a larger ``beta`` barely
lowers the EBOPs of a model that starts from a trained float model. Scaling the learning rate of
the bitwidth variables alone (``bitwidth_lr_scale``) lets the EBOPs penalty act within the run
while the weights keep the learning rate they need.

The weights of a trained model have the same problem in relative terms: training grows them
(3-4x the size of their initialisation on MNIST-1D), so the same step moves them 3-4x less,
relative to their size, than it moved the freshly initialised weights. `relative_weight_steps`
gives each kernel (and its bias) the step it had, relative to its size, at initialisation.

`BitwidthAdam` is Adam with these scales (the default optimizer of `finetune`);
`BitwidthStepMixin` adds them to any other Keras optimizer class::

    class BitwidthSGD(hr.BitwidthStepMixin, keras.optimizers.SGD): pass
"""

import math

import keras
import numpy as np
from keras import ops

from .adam_pack import AdamPack, older_moments
from .quantizers.replicas import in_strategy_scope
from .trace import h_layers

DEFAULT_BITWIDTH_LR_SCALE = 10.0
BITWIDTH_VARIABLE_NAMES = ("fbw",)


def is_bitwidth_variable(variable):
    """True for the trainable bitwidths of the HGQ quantizers (variables named ``fbw``)."""
    name = getattr(variable, "path", None) or getattr(variable, "name", "")
    return name.split("/")[-1].split(":")[0] in BITWIDTH_VARIABLE_NAMES


def check_scale(scale, where="bitwidth_lr_scale"):
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"{where} must be a number > 0, got {scale!r}.")
    return float(scale)


def glorot_rms(shape):
    """The root mean square of a Glorot-initialised kernel of this shape (Keras' fan rule)."""
    if len(shape) < 2:
        return None
    receptive = math.prod(shape[:-2])
    return math.sqrt(2.0 / (receptive * (shape[-2] + shape[-1])))


def _trained_kernel_weights(model):
    """``(kernel, [its trainable kernel and bias])`` for every H-layer with a kernel."""
    for layer in h_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            yield kernel, [v for v in (kernel, getattr(layer, "bias", None)) if v is not None and v.trainable]


def relative_weight_steps(model):
    """``{variable path: scale}`` for every trainable H-layer kernel grown past its Glorot size, and its bias.

    The scale is the kernel's root mean square over that of a Glorot-initialised kernel of its
    shape: under Adam the kernel then moves, relative to its size, as far per step as a freshly
    initialised one does at the base learning rate. Kernels at or under their Glorot size keep 1.
    """
    scales = {}
    for kernel, variables in _trained_kernel_weights(model):
        reference = glorot_rms(tuple(kernel.shape))
        if reference is None or not variables:
            continue
        rms = float(np.sqrt(np.mean(np.square(keras.ops.convert_to_numpy(kernel)))))
        if rms > reference:
            scales.update({variable.path: rms / reference for variable in variables})
    return scales


def shrink_weights(model, factor):
    """Multiply the trainable kernel and bias of every H-layer with a kernel by ``factor`` (in place);
    frozen layers keep theirs."""
    for _, variables in _trained_kernel_weights(model):
        for variable in variables:
            variable.assign(ops.multiply(variable, ops.cast(factor, variable.dtype)))


def check_weight_scales(scales, where="weight_lr_scales"):
    if not isinstance(scales, dict):
        raise TypeError(f"{where} must be a dict {{variable path: scale}}, got {type(scales).__name__}.")
    return {str(path): check_scale(scale, f"{where}[{path!r}]") for path, scale in scales.items()}


class BitwidthStepMixin:
    """Multiplies the learning rate of the bitwidth variables by ``self.bitwidth_lr_scale``, and
    that of each variable named in ``self.weight_lr_scales`` (``{variable path: scale}``) by its scale.

    Put it before a Keras optimizer class; the class must set ``bitwidth_lr_scale``
    (default `DEFAULT_BITWIDTH_LR_SCALE`) and may set ``weight_lr_scales`` (default none).
    """

    bitwidth_lr_scale = DEFAULT_BITWIDTH_LR_SCALE
    weight_lr_scales = {}

    def build(self, var_list):
        super().build(var_list)
        self._set_lr_scales(var_list)

    def _set_lr_scales(self, var_list):
        scales = {}
        for v in var_list:
            if is_bitwidth_variable(v):
                scales[self._get_variable_index(v)] = self.bitwidth_lr_scale
            elif v.path in self.weight_lr_scales:
                scales[self._get_variable_index(v)] = self.weight_lr_scales[v.path]
        self._lr_scales = {i: s for i, s in scales.items() if s != 1.0}

    def lr_scale_of(self, variable):
        """The factor on the learning rate of ``variable`` (1.0 for most)."""
        return getattr(self, "_lr_scales", {}).get(self._get_variable_index(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        scale = self.lr_scale_of(variable)
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return super().update_step(gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class BitwidthAdam(BitwidthStepMixin, keras.optimizers.Adam):
    """Adam whose bitwidth variables take ``bitwidth_lr_scale`` times larger steps; the moments of all
    variables of a dtype are two flat vectors (`AdamPack`: the same arithmetic, fewer operations per step).

    Args:
        learning_rate: Adam's learning rate (weights, BatchNorm, ...).
        bitwidth_lr_scale: factor on the learning rate of every HGQ bitwidth variable
            (1.0 is plain Adam).
        weight_lr_scales: ``{variable path: factor}`` on the learning rate of those variables,
            e.g. `relative_weight_steps(model)`; None: none. Paths the optimizer does not train
            (a frozen layer, a model loaded under another name) are left out.
        Other arguments as ``keras.optimizers.Adam``.
    """

    def __init__(self, learning_rate=0.001, bitwidth_lr_scale=DEFAULT_BITWIDTH_LR_SCALE, weight_lr_scales=None,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.bitwidth_lr_scale = check_scale(bitwidth_lr_scale, "BitwidthAdam: bitwidth_lr_scale")
        self.weight_lr_scales = check_weight_scales(weight_lr_scales or {}, "BitwidthAdam: weight_lr_scales")
        self._step_sizes = None
        self._packs = []  # AdamPack per dtype, set by build

    def build(self, var_list):
        """Adam's moments: one flat pair per dtype for all trainable variables (`AdamPack`). Under amsgrad or
        a ``tf.distribute`` strategy, one pair per variable."""
        if self.built:
            return
        if self.amsgrad or in_strategy_scope():
            self._packs = []
            return super().build(var_list)
        super(keras.optimizers.Adam, self).build(var_list)  # the base optimizer's, not Adam's moments
        self._set_lr_scales(var_list)
        self._momentums, self._velocities = [None] * len(var_list), [None] * len(var_list)
        by_dtype = {}
        for v in var_list:
            if not self._overwrite_variable_with_gradient(v):
                by_dtype.setdefault(v.dtype, []).append(v)
        self._packs = [AdamPack(self, group, [self.lr_scale_of(v) for v in group]) for group in by_dtype.values()]

    def load_own_variables(self, store):
        """Also load the state saved by earlier versions: one pair of moments per variable, or one per
        variable but the bitwidths (packed per dtype)."""
        head = len(self.variables) - 2 * len(self._packs)  # iterations (and the learning rate), as saved
        older = self._packs and len(store.keys()) != len(self.variables)
        moments = older and older_moments(self, store, head, is_bitwidth_variable)
        if not moments:
            return super().load_own_variables(store)
        for i in range(head):
            self.variables[i].assign(store[str(i)])
        for pack in self._packs:
            for moment, which in ((pack.momentum, 0), (pack.velocity, 1)):
                moment.assign(np.concatenate([np.reshape(moments[i][which], (-1,)) for i in pack.indices]))

    def apply(self, grads, trainable_variables=None):
        self._step_sizes = {}  # Adam's step size of this step, per (dtype, learning rate scale)
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_sizes = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._packs:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        packed = {self._get_variable_index(v): g for g, v in zip(grads, trainable_variables)}
        for pack in self._packs:
            if any(i in packed for i in pack.indices):
                pack.update(self, packed, pack.step_size(self._step_size, learning_rate))

    def _step_size(self, dtype, scale, learning_rate):
        """Adam's step size ``lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``, computed once per step, dtype and
        learning rate scale (its two bias corrections once per step and dtype)."""
        key = (dtype, scale)
        if key not in self._step_sizes:
            if dtype not in self._step_sizes:
                local_step = ops.cast(self.iterations + 1, dtype)
                beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
                beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
                self._step_sizes[dtype] = (ops.sqrt(1 - beta_2_power), 1 - beta_1_power)
            root, denominator = self._step_sizes[dtype]
            lr = ops.cast(learning_rate if scale == 1.0 else learning_rate * scale, dtype)
            self._step_sizes[key] = lr * root / denominator
        return self._step_sizes[key]

    def update_step(self, gradient, variable, learning_rate):
        """``keras.optimizers.Adam.update_step``, the same arithmetic, with its step size computed once per
        step and dtype instead of once per variable (the HGQ bitwidths double the number of variables)."""
        if self._step_sizes is None or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        alpha = self._step_size(variable.dtype, self.lr_scale_of(variable), learning_rate)
        gradient = ops.cast(gradient, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))

    def get_config(self):
        cfg = super().get_config()
        cfg["bitwidth_lr_scale"] = self.bitwidth_lr_scale
        cfg["weight_lr_scales"] = dict(self.weight_lr_scales)
        return cfg

"""A separate (larger) step size for the bitwidth variables.

Under Adam every variable moves by at most about ``learning_rate`` per step, whatever the size of
its gradient. A bitwidth ``f`` therefore cannot fall by more than ``lr * steps`` bits during a
fine-tuning run (60 epochs of 63 steps at lr 1e-3: about 4 bits), so a larger ``beta`` barely
lowers the EBOPs of a model that starts from a trained float model. Scaling the learning rate of
the bitwidth variables alone (``bitwidth_lr_scale``) lets the EBOPs penalty act within the run
while the weights keep the learning rate they need.

`BitwidthAdam` is Adam with that scale (the default optimizer of `finetune`);
`BitwidthStepMixin` adds it to any other Keras optimizer class::

    class BitwidthSGD(hr.BitwidthStepMixin, keras.optimizers.SGD): pass
"""

import keras
from keras import ops

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


class BitwidthStepMixin:
    """Multiplies the learning rate of the bitwidth variables by ``self.bitwidth_lr_scale``.

    Put it before a Keras optimizer class; the class must set ``bitwidth_lr_scale``
    (default `DEFAULT_BITWIDTH_LR_SCALE`).
    """

    bitwidth_lr_scale = DEFAULT_BITWIDTH_LR_SCALE

    def build(self, var_list):
        super().build(var_list)
        self._bitwidth_indices = {self._get_variable_index(v) for v in var_list if is_bitwidth_variable(v)}

    def update_step(self, gradient, variable, learning_rate):
        indices = getattr(self, "_bitwidth_indices", ())
        if self.bitwidth_lr_scale != 1.0 and indices and self._get_variable_index(variable) in indices:
            learning_rate = learning_rate * self.bitwidth_lr_scale
        return super().update_step(gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class BitwidthAdam(BitwidthStepMixin, keras.optimizers.Adam):
    """Adam whose bitwidth variables take ``bitwidth_lr_scale`` times larger steps.

    Args:
        learning_rate: Adam's learning rate (weights, BatchNorm, ...).
        bitwidth_lr_scale: factor on the learning rate of every HGQ bitwidth variable
            (1.0 is plain Adam).
        Other arguments as ``keras.optimizers.Adam``.
    """

    def __init__(self, learning_rate=0.001, bitwidth_lr_scale=DEFAULT_BITWIDTH_LR_SCALE, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.bitwidth_lr_scale = check_scale(bitwidth_lr_scale, "BitwidthAdam: bitwidth_lr_scale")
        self._step_sizes = None

    def apply(self, grads, trainable_variables=None):
        self._step_sizes = {}  # Adam's step size of this step, per (dtype, learning rate scale)
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_sizes = None

    def update_step(self, gradient, variable, learning_rate):
        """``keras.optimizers.Adam.update_step``, the same arithmetic, with its step size
        ``lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` computed once per step and dtype instead of once
        per variable (the HGQ bitwidths double the number of variables)."""
        if self._step_sizes is None or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        scale = self.bitwidth_lr_scale if self._get_variable_index(variable) in self._bitwidth_indices else 1.0
        key = (dtype, scale)
        if key not in self._step_sizes:
            lr = ops.cast(learning_rate if scale == 1.0 else learning_rate * scale, dtype)
            local_step = ops.cast(self.iterations + 1, dtype)
            beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
            beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
            self._step_sizes[key] = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        alpha = self._step_sizes[key]
        gradient = ops.cast(gradient, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))

    def get_config(self):
        cfg = super().get_config()
        cfg["bitwidth_lr_scale"] = self.bitwidth_lr_scale
        return cfg

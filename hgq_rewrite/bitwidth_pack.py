"""Adam on all bitwidth variables of one dtype at once.

A quantized model has one small bitwidth variable per quantizer, as many as it has weights and
biases. Updating each on its own costs a dozen-odd backend operations per variable per step (on
TensorFlow a third of the operations of a small model's training step, `benchmarks/step_ops.py`).
A `BitwidthPack` holds Adam's two moments of all of them as two flat vectors and updates them with
one set of element-wise operations on the concatenated gradients. Each element goes through the
same arithmetic as under Keras' per-variable Adam, so the result is the same bit for bit.
"""

import math

import numpy as np
from keras import ops


class BitwidthPack:
    """The bitwidth variables of one dtype and their Adam moments, as flat vectors."""

    def __init__(self, optimizer, variables):
        self.variables = list(variables)
        self.indices = [optimizer._get_variable_index(v) for v in self.variables]
        self.sizes = [math.prod(v.shape) for v in self.variables]
        self.dtype = self.variables[0].dtype
        total = sum(self.sizes)
        self.momentum = optimizer.add_variable((total,), initializer="zeros", dtype=self.dtype,
                                               name="bitwidth_momentum")
        self.velocity = optimizer.add_variable((total,), initializer="zeros", dtype=self.dtype,
                                               name="bitwidth_velocity")

    def update(self, optimizer, gradients, alpha):
        """One Adam step of the variables with a gradient in ``gradients`` (``{variable index: gradient}``);
        the others, and their moments, stay as they are, as under Keras' Adam."""
        present = [i in gradients for i in self.indices]
        flat = [ops.reshape(ops.cast(gradients[i], self.dtype), (-1,)) if here else ops.zeros((n,), self.dtype)
                for i, n, here in zip(self.indices, self.sizes, present)]
        g = flat[0] if len(flat) == 1 else ops.concatenate(flat)
        m, v = self.momentum, self.velocity
        m_step = ops.multiply(ops.subtract(g, m), 1 - optimizer.beta_1)
        v_step = ops.multiply(ops.subtract(ops.square(g), v), 1 - optimizer.beta_2)
        if all(present):
            optimizer.assign_add(m, m_step)
            optimizer.assign_add(v, v_step)
        else:
            mask = ops.convert_to_tensor(np.repeat(present, self.sizes))
            for moment, step in ((m, m_step), (v, v_step)):
                old = ops.convert_to_tensor(moment)
                optimizer.assign(moment, ops.where(mask, ops.add(old, step), old))
        delta = ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), optimizer.epsilon))
        pieces = [delta] if len(flat) == 1 else ops.split(delta, np.cumsum(self.sizes)[:-1].tolist())
        for variable, piece, here in zip(self.variables, pieces, present):
            if here:
                optimizer.assign_sub(variable, ops.reshape(piece, variable.shape))

"""Adam on all trainable variables of one dtype at once.

A quantized model has a bitwidth variable beside every kernel, bias and activation, and each
variable updated on its own costs backend operations per step: a dozen-odd on TensorFlow, and on
JAX a kernel or two plus two state arrays that Keras' training loop hands in and out of every
step in Python (about 1 us per array per step, `benchmarks/state_arrays.py`; a small model's step
is a few hundred us). An `AdamPack` holds Adam's two moments of all of them as two flat vectors and
updates them with one set of element-wise operations on the concatenated gradients. Each element
goes through the same arithmetic as under Keras' per-variable Adam, with its variable's learning
rate scale, so the result is the same bit for bit.
"""

import math

import numpy as np
from keras import ops


def flatten(x):
    """``x`` as a vector (no op when it is one: on TensorFlow every op of a step costs its dispatch)."""
    return x if len(x.shape) == 1 else ops.reshape(x, (-1,))


class AdamPack:
    """Trainable variables of one dtype and their Adam moments, as flat vectors.

    ``scales``: the learning rate factor of each variable (see `BitwidthStepMixin`).
    """

    def __init__(self, optimizer, variables, scales):
        self.variables = list(variables)
        self.indices = [optimizer._get_variable_index(v) for v in self.variables]
        self.sizes = [math.prod(v.shape) for v in self.variables]
        self.dtype = self.variables[0].dtype
        self.scales = sorted(set(scales))
        # which of self.scales each element takes (None: all the same)
        self.scale_of_element = None if len(self.scales) == 1 else np.repeat(
            [self.scales.index(s) for s in scales], self.sizes).astype("int32")
        total = sum(self.sizes)
        self.momentum = optimizer.add_variable((total,), initializer="zeros", dtype=self.dtype, name="packed_momentum")
        self.velocity = optimizer.add_variable((total,), initializer="zeros", dtype=self.dtype, name="packed_velocity")

    def step_size(self, step_size_of, learning_rate):
        """Adam's step size of each element (a scalar when every variable has the same scale), given
        ``step_size_of(dtype, scale, learning_rate)``."""
        sizes = [step_size_of(self.dtype, s, learning_rate) for s in self.scales]
        if self.scale_of_element is None:
            return sizes[0]
        return ops.take(ops.stack(sizes), self.scale_of_element)

    def update(self, optimizer, gradients, alpha):
        """One Adam step (step size ``alpha``, see `step_size`) of the variables with a gradient in
        ``gradients`` (``{variable index: gradient}``); the others, and their moments, stay as they are,
        as under Keras' Adam."""
        present = [i in gradients for i in self.indices]
        flat = [flatten(ops.cast(gradients[i], self.dtype)) if here else ops.zeros((n,), self.dtype)
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
                shaped = piece if len(variable.shape) == 1 else ops.reshape(piece, variable.shape)
                optimizer.assign_sub(variable, shaped)


def older_moments(optimizer, store, head, is_bitwidth_variable):
    """``{variable index: (momentum, velocity)}`` from an optimizer state saved by an earlier version (entries
    ``head`` on: a pair per variable, or a pair per variable but the bitwidths, packed per dtype after them);
    None if ``store`` holds neither."""
    variables = [v for v in optimizer._trainable_variables if not optimizer._overwrite_variable_with_gradient(v)]
    entries = [np.asarray(store[str(i)]) for i in range(head, len(store.keys()))]
    bitwidths = [v for v in variables if is_bitwidth_variable(v)]
    groups = {}
    for v in bitwidths:
        groups.setdefault(v.dtype, []).append(v)
    layouts = [(variables, []), ([v for v in variables if not is_bitwidth_variable(v)], list(groups.values()))]
    for own, packed in layouts:
        if len(entries) != 2 * (len(own) + len(packed)):
            continue
        moments = {optimizer._get_variable_index(v): (entries[2 * j], entries[2 * j + 1]) for j, v in enumerate(own)}
        for k, group in enumerate(packed):
            sizes = np.cumsum([math.prod(v.shape) for v in group])[:-1]
            pairs = zip(*(np.split(entries[2 * (len(own) + k) + w].reshape(-1), sizes) for w in (0, 1)))
            moments.update({optimizer._get_variable_index(v): pair for v, pair in zip(group, pairs)})
        if all(np.size(moments[optimizer._get_variable_index(v)][0]) == math.prod(v.shape) for v in variables):
            return moments
    return None

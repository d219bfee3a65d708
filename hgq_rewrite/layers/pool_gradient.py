"""Max pooling over non-overlapping windows, its gradient written as element-wise operations.

XLA on CPU computes the gradient of max pooling (``select_and_scatter``) slowly: 0.31 ms for the seed
CNN's first pooling (28x28x1, batch 32) against 0.08 ms for the same gradient built from the pool's
phases (the strided slices ``x[:, a::p, b::p]``), compared with the pooled maximum and interleaved
back; 0.03-0.40x XLA's time at every measured size (`benchmarks/xla_gradients.py`). An HGQ model
needs that gradient in front of its first layer where the float model does not (the input
quantizer's bits). The gradient goes, as ``select_and_scatter``'s does, to the first maximum of each
window in row-major order; the forward pass is the backend's pooling, or (``sliced``) the maximum
of the phases: for the small bit maps of the EBOPs estimate, where TensorFlow's pooling op costs
~0.1 ms whatever its size (oneDNN), more than the slices and their maximum.
"""

import functools
import itertools

from keras import ops

from ..compat.xla import compiled_by_xla
from ..quantizers.hquantizer import custom_gradient


def windows_do_not_overlap(pool_size, strides, padding):
    """True when each input element is in at most one window (what `phase_max_pool` computes)."""
    return padding == "valid" and tuple(pool_size) == tuple(strides)


def uses_phases(pool_size, strides, padding):
    """True when `phase_max_pool` should compute a data pooling's gradient: XLA (JAX, or a TensorFlow function
    compiled with XLA), windows that do not overlap."""
    return compiled_by_xla() and windows_do_not_overlap(pool_size, strides, padding)


def _interleave(parts, pool_size):
    """The phases (row-major, each ``(batch, *out, channels)``) woven back into ``(batch, *(out * p), channels)``,
    one axis at a time from the last (stack next to the axis, merge the two)."""
    for axis in reversed(range(len(pool_size))):
        p = pool_size[axis]
        woven = []
        for group in (parts[i:i + p] for i in range(0, len(parts), p)):
            stacked = ops.stack(group, axis=axis + 2)
            shape = list(stacked.shape)
            woven.append(ops.reshape(stacked, [-1, *shape[1:axis + 1], shape[axis + 1] * p, *shape[axis + 3:]]))
        parts = woven
    return parts[0]


def _phases(x, pool_size):
    """The strided slices ``x[:, a::p, b::p]`` (row-major offsets), cropped to whole windows."""
    out = tuple(n // p for n, p in zip(x.shape[1:-1], pool_size))
    for offset in itertools.product(*(range(p) for p in pool_size)):
        yield x[(slice(None), *(slice(o, o + n * p, p) for o, n, p in zip(offset, out, pool_size)))]


def phase_max_pool(x, pool_size, sliced=False):
    """``ops.max_pool(x, pool_size, pool_size, "valid")`` (channels last) with an element-wise gradient;
    ``sliced``: the forward pass too from the phases (the same values: a maximum is exact)."""
    pool_size = tuple(pool_size)

    @custom_gradient
    def pool(x):
        phases = list(_phases(x, pool_size)) if sliced else None  # the backward pass reuses them
        if sliced:
            z = functools.reduce(ops.maximum, phases)
        else:
            z = ops.max_pool(x, pool_size, pool_size, "valid", "channels_last")

        def gradient(dz):
            out = tuple(z.shape[1:-1])
            taken = None
            parts = []
            for phase in phases or _phases(x, pool_size):
                hit = ops.equal(phase, z)
                if taken is not None:
                    hit = ops.logical_and(hit, ops.logical_not(taken))
                taken = hit if taken is None else ops.logical_or(taken, hit)
                parts.append(ops.where(hit, dz, ops.zeros_like(dz)))
            grad = _interleave(parts, pool_size)
            rest = [(0, n - m * p) for n, m, p in zip(x.shape[1:-1], out, pool_size)]
            return ops.pad(grad, [(0, 0), *rest, (0, 0)]) if any(r for _, r in rest) else grad

        return z, gradient

    return pool(x)

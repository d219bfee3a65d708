"""A convolution computed as one matmul over its stacked kernel taps (im2col), forward and gradients.

XLA on CPU computes a convolution with few channels, and its gradients, slowly: for conv1 of the seed
CNN (14x14x1 -> 12x12x2, batch 32) the forward pass costs 0.22 ms against 0.11 ms for the same sums
written as the input windows of every kernel position side by side (one tensor of ``taps x in``
channels) times the kernel as one ``(taps * in, out)`` matrix, and a forward and backward pass 0.69 ms
against 0.24 ms (`benchmarks/xla_gradients.py`). The kernel gradient reuses the stacked windows; the
input gradient is one matmul too, its taps shifted back into place. An HGQ model needs the input
gradient of its first convolution where the float model does not (the input quantizer's bits), so
there this is most of the step.

The sums are the convolution's, in another order: the same values wherever they are exact, as they
are for inputs and kernels on fixed-point grids whose products and sums fit the float's mantissa (what
the firmware emulation relies on anyway), and equal to float rounding otherwise.
"""

import itertools
import math

from keras import ops

from ..compat.xla import compiled_by_xla
from ..quantizers.hquantizer import custom_gradient

# stacked taps are used for kernels of at most this many input x output channels whose stacked windows
# (taps times the input) hold at most this many elements (results/xla_gradients_jax.json): 0.3-0.8x XLA's
# time there; 1.1-4.3x past either (32x32 images of 8 or 16 channels: 2-4 million stacked elements)
MAX_TAP_CHANNELS = 256
MAX_STACKED_ELEMENTS = 2**20


def uses_taps(x_shape, kernel_shape, strides):
    """True when `tap_conv` should compute this convolution: XLA (JAX, or a TensorFlow function compiled with
    XLA), stride 1, a small kernel and input (a batch of unknown size counts as small: the compiled step,
    where it matters, knows it)."""
    stacked = math.prod(kernel_shape[:-1]) * math.prod(x_shape[1:-1]) * (x_shape[0] or 1)
    return (compiled_by_xla() and all(s == 1 for s in strides)
            and kernel_shape[-2] * kernel_shape[-1] <= MAX_TAP_CHANNELS and stacked <= MAX_STACKED_ELEMENTS)


def _same_padding(kernel_size, dilation):
    """(before, after) padding of each spatial axis for padding='same' at stride 1."""
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def tap_conv(x, kernel, padding, dilation):
    """``ops.conv(x, kernel, 1, padding, "channels_last", dilation)`` as one matmul over the stacked taps."""
    kernel_size = tuple(kernel.shape[:-2])
    rank = len(kernel_size)
    channels_in, channels_out = kernel.shape[-2], kernel.shape[-1]
    pads = _same_padding(kernel_size, dilation) if padding == "same" else [(0, 0)] * rank
    # where each tap (kernel position, row-major as the kernel's own layout) starts in the padded input
    starts = [[t * d for t, d in zip(tap, dilation)] for tap in itertools.product(*(range(k) for k in kernel_size))]
    reach = [d * (k - 1) for k, d in zip(kernel_size, dilation)]

    @custom_gradient
    def conv(x, kernel):
        xp = ops.pad(x, [(0, 0), *pads, (0, 0)]) if padding == "same" else x
        full = tuple(xp.shape[1:-1])
        out = tuple(n - r for n, r in zip(full, reach))
        windows = ops.stack([xp[(slice(None), *(slice(s, s + o) for s, o in zip(start, out)))] for start in starts],
                            axis=-2)  # (batch, *out, taps, in)
        matrix = ops.reshape(kernel, (len(starts) * channels_in, channels_out))
        z = ops.matmul(ops.reshape(windows, (-1, *out, len(starts) * channels_in)), matrix)

        def gradient(dz):
            dkernel = ops.tensordot(windows, dz, axes=[list(range(rank + 1))] * 2)  # (taps, in, out)
            parts = ops.reshape(ops.matmul(dz, ops.transpose(matrix)), (-1, *out, len(starts), channels_in))
            # tap t's part belongs at offset start_t of the padded input: one pad, then a sum of slices
            parts = ops.pad(parts, [(0, 0), *((r, r) for r in reach), (0, 0), (0, 0)])
            dx = None
            for t, start in enumerate(starts):
                part = parts[(slice(None), *(slice(r - s, r - s + n) for r, s, n in zip(reach, start, full)), t)]
                dx = part if dx is None else dx + part
            if padding == "same":
                dx = dx[(slice(None), *(slice(b, b + n) for (b, _), n in zip(pads, x.shape[1:-1])))]
            return dx, ops.reshape(dkernel, kernel.shape)

        return z, gradient

    return conv(x, kernel)

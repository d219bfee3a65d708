"""A convolution whose gradients are computed tap by tap: one small matmul per kernel position.

XLA on CPU computes the gradients of a convolution with few channels slowly: for conv1 of the seed
CNN (14x14x1 -> 12x12x2, batch 32) they cost 2.3x what the same gradients cost written as one small
matmul per kernel position, shifted into place (`benchmarks/xla_gradients.py`). An HGQ model needs
the input gradient of its first convolution where the float model does not (the input quantizer's
bits), so there this is most of the step. Larger kernels keep XLA's own gradient. The forward pass
is the backend's convolution either way, so the values (and the bit-exactness of inference) do not
change.
"""

import itertools

from keras import backend, ops

from ..quantizers.hquantizer import custom_gradient

# taps are used when the kernel has at most this many input x output channels (results/xla_gradients_jax.json):
# 0.43-0.77x XLA's time with 1 or 8 input channels, within 10% of it at 2 -> 2 and 4 -> 16, and 1.4-1.5x
# at 16 -> 16 and 32 -> 64
MAX_TAP_CHANNELS = 128


def uses_taps(kernel_shape, strides):
    """True when `tap_conv` should compute this convolution's gradients: JAX, stride 1, a small kernel."""
    return (backend.backend() == "jax" and all(s == 1 for s in strides)
            and kernel_shape[-2] * kernel_shape[-1] <= MAX_TAP_CHANNELS)


def _same_padding(kernel_size, dilation):
    """(before, after) padding of each spatial axis for padding='same' at stride 1."""
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def tap_conv(x, kernel, padding, dilation):
    """``ops.conv(x, kernel, 1, padding, "channels_last", dilation)`` with tap-by-tap gradients."""
    kernel_size = tuple(kernel.shape[:-2])
    rank = len(kernel_size)
    pads = _same_padding(kernel_size, dilation) if padding == "same" else [(0, 0)] * rank

    @custom_gradient
    def conv(x, kernel):
        z = ops.conv(x, kernel, 1, padding, "channels_last", dilation)

        def gradient(dz):
            xp = ops.pad(x, [(0, 0), *pads, (0, 0)]) if padding == "same" else x
            out = tuple(dz.shape[1:-1])
            full = tuple(xp.shape[1:-1])
            dx = None
            dk = []
            for tap in itertools.product(*(range(k) for k in kernel_size)):
                start = [t * d for t, d in zip(tap, dilation)]
                w = kernel[tap]  # (in, out)
                part = ops.matmul(dz, ops.transpose(w))  # (batch, *out, in)
                shift = [(0, 0)] + [(s, f - s - o) for s, f, o in zip(start, full, out)] + [(0, 0)]
                part = ops.pad(part, shift)
                dx = part if dx is None else dx + part
                window = xp[(slice(None), *(slice(s, s + o) for s, o in zip(start, out)))]
                dk.append(ops.tensordot(window, dz, axes=[list(range(rank + 1))] * 2))
            if padding == "same":
                dx = dx[(slice(None), *(slice(b, b + n) for (b, _), n in zip(pads, x.shape[1:-1])))]
            return dx, ops.reshape(ops.stack(dk), kernel.shape)

        return z, gradient

    return conv(x, kernel)


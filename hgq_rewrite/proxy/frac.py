"""Fractional bits actually carried by values (numpy; ``-inf`` where a value is always 0).

A quantizer in the proxy never asks for more fractional bits than its input carries (hls4ml
drops those bits before it rounds and saturates). These functions bound what a layer's output
carries from what its weights and inputs carry, and the magnitude of its sums.
"""

import math

import numpy as np


def full(arr, shape):
    """``arr`` as float64 broadcast to ``shape``."""
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape)


def frac_bits(values):
    """Smallest f with ``value * 2**f`` an integer, per element; ``-inf`` for zeros."""
    a = np.abs(np.asarray(values, dtype=np.float64))
    out = np.full(a.shape, -np.inf)
    nz = a > 0
    if nz.any():
        mant, exp = np.frexp(a[nz])
        ints = (mant * 2.0**53).astype(np.int64)
        trailing = np.log2((ints & -ints).astype(np.float64))
        out[nz] = 53 - exp - trailing
    return out


def dense_frac(f_in, kernel, bias):
    """Per output: max over non-zero terms of f_in + f_w (and the bias); f_in has shape (1, ..., n_in)."""
    f_w = frac_bits(kernel)  # (n_in, units)
    out = np.max(f_in[..., :, None] + f_w, axis=-2)
    if bias is not None:
        out = np.maximum(out, frac_bits(bias))
    return out


def conv_patches(x, kernel_size, strides, padding, dilation, pad_value):
    """``(output spatial shape, [(kernel offset, input patch of shape (*out_spatial, C)), ...])``."""
    out_sp, pads = [], []
    for n, k, s, d in zip(x.shape[:-1], kernel_size, strides, dilation):
        span = d * (k - 1) + 1
        if padding == "same":
            o = math.ceil(n / s)
            total = max((o - 1) * s + span - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            o = (n - span) // s + 1
            pads.append((0, 0))
        out_sp.append(o)
    xp = np.pad(x, pads + [(0, 0)], constant_values=pad_value)
    patches = []
    for offset in np.ndindex(*kernel_size):
        window = tuple(slice(o * d, o * d + (m - 1) * s + 1, s) for o, d, s, m in zip(offset, dilation, strides, out_sp))
        patches.append((offset, xp[window]))
    return tuple(out_sp), patches


def conv_frac(f_in, kernel, bias, strides, padding, dilation, depthwise):
    """Like `dense_frac` for a (depthwise) convolution, channels_last; f_in has shape (1, *spatial, C)."""
    f_w = frac_bits(kernel)  # (*k, C, F) or (*k, C, dm)
    out_sp, patches = conv_patches(f_in[0], f_w.shape[:-2], strides, padding, dilation, -np.inf)
    n_out = f_w.shape[-2] * f_w.shape[-1] if depthwise else f_w.shape[-1]
    out = np.full((*out_sp, n_out), -np.inf)
    for offset, patch in patches:
        cand = patch[..., :, None] + f_w[offset]
        out = np.maximum(out, cand.reshape(*out_sp, n_out) if depthwise else np.max(cand, axis=-2))
    if bias is not None:
        out = np.maximum(out, frac_bits(bias))
    return out[None]


def dense_magnitude(magnitude, kernel, bias):
    """Per output: sum of |weight| x input magnitude bound (+ |bias|) of a Dense."""
    return magnitude @ np.abs(kernel) + (np.abs(bias) if bias is not None else 0.0)


def conv_magnitude(magnitude, kernel, bias, strides, padding, dilation, depthwise):
    """`dense_magnitude` for a (depthwise) convolution, channels_last; magnitude has shape (1, *spatial, C)."""
    w = np.abs(kernel)
    out_sp, patches = conv_patches(magnitude[0], w.shape[:-2], strides, padding, dilation, 0.0)
    n_out = w.shape[-2] * w.shape[-1] if depthwise else w.shape[-1]
    out = np.zeros((*out_sp, n_out))
    for offset, patch in patches:
        out += (patch[..., :, None] * w[offset]).reshape(*out_sp, n_out) if depthwise else patch @ w[offset]
    return out[None] + (np.abs(bias) if bias is not None else 0.0)


def covering_kif(values, f):
    """The smallest (k, i, f) format holding every value in ``values`` (all on the ``2**-f`` grid)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    k = int(lo < 0)
    i = 0
    while hi > 2.0**i - 2.0**-f or lo < -k * 2.0**i:
        i += 1
    while i > -f - k + 1 and hi <= 2.0 ** (i - 1) - 2.0**-f and lo >= -k * 2.0 ** (i - 1):
        i -= 1
    return k, i, int(f)

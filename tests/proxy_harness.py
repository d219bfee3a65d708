"""Helpers for the proxy tests: hand-built proxies with on-grid weights and random formats."""

from fractions import Fraction

import numpy as np
import keras

from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT

F64 = "float64"


def dyadic(rng, shape, f=3, scale=1.0, density=1.0):
    """Random weights on the grid 2**-f (some zeros when density < 1)."""
    w = np.round(rng.normal(0.0, scale, shape) * 2.0**f) / 2.0**f
    if density < 1.0:
        w = w * (rng.random(shape) < density)
    return w


def random_kif(rng, shape, k=(0, 1), i=(-1, 4), f=(0, 5)):
    """Per-element formats: k drawn from the tuple, i and f uniform in [lo, hi]."""
    k = rng.choice(np.asarray(k), size=shape)
    i = rng.integers(i[0], i[1] + 1, size=shape)
    f = rng.integers(f[0], f[1] + 1, size=shape)
    return k, i, f


def q(kif, RND="RND", SAT="WRAP", name=None, **kwargs):
    """FixedPointQuantizer from a (k, i, f) triple of scalars or arrays (batch axis added for arrays)."""
    k, i, f = (np.asarray(v) for v in kif)
    if k.ndim:
        k, i, f = k[None], i[None], f[None]
    return FixedPointQuantizer.from_kif(k, i, f, RND=RND, SAT=SAT, name=name, **kwargs)


def hetero(rng, x, RND="RND", SAT="WRAP", name=None, **ranges):
    """Apply a heterogeneous quantizer with random formats matching the features of ``x``."""
    return q(random_kif(rng, tuple(x.shape[1:]), **ranges), RND=RND, SAT=SAT, name=name)(x)


def set_dyadic_weights(rng, layer, f=3, scale=0.5, density=1.0):
    layer.set_weights([dyadic(rng, w.shape, f=f, scale=scale, density=density) for w in layer.get_weights()])


def inputs_with_overflow(rng, shape, n, scale=2.0, far=100.0, frac_far=0.25):
    """Normal samples, a quarter of them scaled far outside any calibrated range."""
    x = rng.normal(0.0, scale, (n, *shape))
    x[: int(n * frac_far)] *= far
    return x


def reference_quantize(x, k, i, f, round_mode, overflow_mode):
    """Independent exact (rational arithmetic) ap_fixed cast, element by element.

    Agrees with the ap_types headers shipped with hls4ml on 540 (format, mode) pairs, including
    negative I, I > B and 1-bit types (checked with a g++ program during development).
    """
    x = np.asarray(x, dtype=np.float64)
    k, i, f = (np.broadcast_to(np.asarray(v, dtype=np.int64), x.shape) for v in (k, i, f))
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        kk, ii, ff = int(k[idx]), int(i[idx]), int(f[idx])
        bits = kk + ii + ff
        if bits <= 0:
            continue
        y = Fraction(float(x[idx])) * Fraction(2) ** ff
        floor = y.numerator // y.denominator
        if round_mode == "TRN":
            code = floor
        elif round_mode == "RND":
            half = y + Fraction(1, 2)
            code = half.numerator // half.denominator
        else:  # RND_CONV
            rest = y - floor
            code = floor + 1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else floor
        top = 2 ** (bits - kk) - 1
        if overflow_mode == "WRAP":
            code %= 2**bits
            if kk and code >= 2 ** (bits - 1):
                code -= 2**bits
        elif overflow_mode == "SAT":
            code = min(max(code, -(2 ** (bits - 1)) if kk else 0), top)
        else:  # SAT_SYM; a 1-bit signed ap_fixed has no symmetric range and saturates like SAT
            bottom = -(2 ** (bits - 1)) if (kk and bits == 1) else (-top if kk else 0)
            code = min(max(code, bottom), top)
        out[idx] = float(Fraction(code) * Fraction(2) ** (-ff))
    return out


def compile_report(proxy, x, **kwargs):
    """Run the bit-exact harness and print its one-line summary (visible with ``pytest -s``)."""
    from hgq_rewrite.proxy import check_bit_exact

    report = check_bit_exact(proxy, x, **kwargs)
    print(f"\n[{proxy.name}] {report}")
    return report


def model(inputs, outputs, name):
    return keras.Model(inputs, outputs, name=name)


def unary_lut(fn, kif_in, kif_out, name=None):
    return UnaryLUT.from_function(fn, kif_in, kif_out, name=name)


def concat(tensors, axis=-1, name=None):
    """Concatenate many tensors with a chain of two-input Concatenate layers (hls4ml merges are binary)."""
    out = tensors[0]
    for j, t in enumerate(tensors[1:]):
        layer_name = None if name is None else f"{name}_{j}"
        out = keras.layers.Concatenate(axis=axis, dtype=F64, name=layer_name)([out, t])
    return out

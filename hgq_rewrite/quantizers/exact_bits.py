"""Exact bit counts, in numpy: the significant bits of a weight, the integer bits a range needs.

Counted from ``frexp``'s exponent and mantissa, never from a float log2, which rounds near powers of two.
"""

import numpy as np

TINY = 2.0**-60  # stands in for 0 inside log2; far below any representable step


def integer_bits(a):
    """``floor(log2 a) + 1`` for ``a > 0`` (numpy, float32), 0 for ``a == 0``: ``frexp``'s exponent."""
    return np.where(a > 0, np.frexp(a)[1], 0).astype("float32")


def _ceil_log2(x):
    """``ceil(log2 x)`` for ``x > 0`` (numpy), exact: ``frexp``'s exponent, less one for a power of two."""
    mantissa, exponent = np.frexp(x)
    return np.where(mantissa == 0.5, exponent - 1, exponent)


def range_integer_bits(lo, hi, f):
    """Integer bits (no sign bit) a format with ``f`` fractional bits needs to hold ``hi`` (``hi <= 2**i - 2**-f``)
    and ``lo`` (``lo >= -2**i`` when ``lo < 0``), exactly (numpy, float64); the larger of the two.

    Not from float32's log2, which rounds ``log2(16 + 2**-20)`` to 4.0: [0, 16] at 20 fractional bits would get
    4 integer bits, and the firmware wrap 16 to 0.
    """
    lo, hi, f = (np.asarray(v, "float64") for v in (lo, hi, f))
    step = np.ldexp(1.0, (-f).astype(np.int64))
    positive = np.where(hi > 0, hi, 1.0)
    top = np.frexp(positive)[1]  # positive < 2**top <= 2 * positive
    room = np.ldexp(1.0, top) - positive  # exact (Sterbenz): the gap up to 2**top
    i_hi = np.maximum(np.where(room >= step, top, top + 1), 1 - f)  # 1 - f: a positive value below the step
    i_hi = np.where(hi > 0, i_hi, _ceil_log2(np.maximum(hi + step, TINY)))  # hi <= 0: as little as the step
    i_lo = np.where(lo < 0, _ceil_log2(np.maximum(-lo, TINY)), -1e9)
    return np.maximum(i_hi, i_lo)


def significant_bits(q):
    """Exact span of significant bits of |q| (numpy): 0.75 -> 2, 4.0 -> 1, 0 -> 0."""
    a = np.abs(np.asarray(q, dtype=np.float64))
    out = np.zeros(a.shape, dtype=np.int64)
    nz = a > 0
    if not nz.any():
        return out
    mant, exp = np.frexp(a[nz])  # a = mant * 2**exp, mant in [0.5, 1)
    ints = (mant * 2.0**53).astype(np.int64)  # exact integer mantissa
    trailing = np.zeros(ints.shape, dtype=np.int64)
    rest = ints.copy()
    while True:
        even = (rest & 1) == 0
        if not even.any():
            break
        trailing += even
        rest = np.where(even, rest >> 1, rest)
    out[nz] = 53 - trailing
    return out

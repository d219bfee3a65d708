"""Pure fixed-point arithmetic on ``keras.ops``.

A format is (k, i, f): ``k`` sign bit (0/1), ``i`` integer bits excluding the
sign, ``f`` fractional bits; total width ``b = k + i + f``. hls4ml's
``ap_fixed<B, I>`` is ``B = k + i + f``, ``I = k + i``. Elements with
``b <= 0`` are pruned to exactly 0. Arguments broadcast against ``x``.
"""

from keras import backend, ops

ROUNDING_MODES = ("RND", "TRN", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_SYM")


def check_modes(round_mode, overflow_mode=None):
    """Raise a clear ``ValueError`` for an unknown rounding/overflow mode name."""
    if round_mode not in ROUNDING_MODES:
        raise ValueError(f"Unknown rounding mode {round_mode!r}; use one of {ROUNDING_MODES}.")
    if overflow_mode is not None and overflow_mode not in OVERFLOW_MODES:
        raise ValueError(f"Unknown overflow mode {overflow_mode!r}; use one of {OVERFLOW_MODES}.")


def _floor(y):
    # keras.ops.floor returns float32 for float64 input on JAX (Keras' 64 -> 32-bit promotion); floor_divide
    # keeps float64, which proxy models need to stay exact
    if backend.backend() == "jax" and backend.standardize_dtype(y.dtype) == "float64":
        return ops.floor_divide(y, 1.0)
    return ops.floor(y)


def round_to_integer(y, mode):
    """Round ``y`` to an integer: RND half up, TRN floor, RND_CONV half to even.

    Exact in any float precision: ``floor(y)`` and ``y - floor(y)`` are exact, while ``y + 0.5``
    is not once ``|y| >= 2**(mantissa bits - 1)``.
    """
    if mode == "RND":
        low = _floor(y)
        return low + ops.cast(y - low >= 0.5, y.dtype)
    if mode == "TRN":
        return _floor(y)
    if mode == "RND_CONV":
        return ops.round(y)  # keras.ops.round rounds half to even
    check_modes(mode)


def round_to_grid(x, f, mode="RND"):
    """Round ``x`` onto the grid ``2**-f``."""
    scale = ops.power(2.0, ops.cast(f, x.dtype))
    return round_to_integer(x * scale, mode) / scale


def remove_periods(x, period):
    """``x`` minus the whole periods it holds, towards 0: exact in any float precision for a power-of-2
    ``period`` (unlike ``mod``, whose ``+ period`` for negative ``x`` rounds)."""
    return x - ops.sign(x) * _floor(ops.abs(x) / period) * period


def apply_overflow(x, k, i, f, mode="WRAP"):
    """Bring on-grid values ``x`` into the (k, i, f) range with WRAP, SAT or SAT_SYM."""
    dtype = x.dtype
    k, i, f = (ops.cast(v, dtype) for v in (k, i, f))
    step = ops.power(2.0, -f)
    top = ops.power(2.0, i) - step
    if mode == "SAT":
        return ops.minimum(ops.maximum(x, -k * ops.power(2.0, i)), top)
    if mode == "SAT_SYM":
        # a signed 1-bit type has no symmetric range: ap_fixed then saturates like SAT
        low = ops.where(k + i + f == 1, -k * ops.power(2.0, i), -k * top)
        return ops.minimum(ops.maximum(x, low), top)
    if mode == "WRAP":
        span = ops.power(2.0, i + k)  # 2**(k+i) = size of the integer range
        offset = k * ops.power(2.0, i)
        # whole periods off first (exact for any x), where x + offset would round the offset away for a huge x
        return ops.mod(remove_periods(x, span) + offset, span) - offset
    check_modes("RND", mode)


def quantize(x, k, i, f, round_mode="RND", overflow_mode="WRAP"):
    """Emulate a cast to ``ap_(u)fixed<k+i+f, k+i, round_mode, overflow_mode>``."""
    check_modes(round_mode, overflow_mode)
    dtype = x.dtype
    k, i, f = (ops.cast(v, dtype) for v in (k, i, f))
    q = apply_overflow(round_to_grid(x, f, round_mode), k, i, f, overflow_mode)
    return ops.where(k + i + f > 0, q, ops.zeros_like(q))


def kif_to_kbi(k, i, f):
    """(k, i, f) -> (k, B, I) with B = k+i+f and I = k+i (ap_fixed convention)."""
    return k, k + i + f, k + i


def kbi_to_kif(k, b, i_with_sign):
    """(k, B, I) -> (k, i, f) with i = I-k and f = B-I."""
    return k, i_with_sign - k, b - i_with_sign


EXPORT_OVERFLOW_MODES = ("WRAP", "SAT")


def wrap_from_arguments(overflow, aggressive, where):
    """True (WRAP), False (SAT) or None (not given) from ``overflow=`` or the seed's ``aggressive=``.

    ``aggressive=True`` means WRAP and ``False`` SAT (the seed's name, kept without a warning);
    ``overflow="WRAP"|"SAT"`` says the same by name. Both may be given only if they agree.
    """
    if overflow is not None and overflow not in EXPORT_OVERFLOW_MODES:
        raise ValueError(f"{where}: overflow must be one of {EXPORT_OVERFLOW_MODES}, got {overflow!r}.")
    wrap = None if overflow is None else overflow == "WRAP"
    if aggressive is not None:
        if wrap is not None and wrap != bool(aggressive):
            raise ValueError(f"{where}: overflow={overflow!r} and aggressive={aggressive!r} disagree; give overflow= only.")
        wrap = bool(aggressive)
    return wrap

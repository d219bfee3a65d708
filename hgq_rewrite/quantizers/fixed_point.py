"""Pure fixed-point arithmetic on ``keras.ops``.

A format is (k, i, f): ``k`` sign bit (0/1), ``i`` integer bits excluding the
sign, ``f`` fractional bits; total width ``b = k + i + f``. hls4ml's
``ap_fixed<B, I>`` is ``B = k + i + f``, ``I = k + i``. Elements with
``b <= 0`` are pruned to exactly 0. Arguments broadcast against ``x``.
"""

from keras import backend, ops

from ..compat.xla import compiled_by_xla

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


def _float32_with_exponent(e):
    """``2**e`` for integer ``e`` in [-126, 127] (a normal float32), from its bits: exponent field ``e + 127``."""
    return ops.view(ops.left_shift(ops.cast(e, "int32") + 127, 23), "float32")


def exp2(f, per_element=False):
    """``2**f`` for integer-valued ``f``, exact (as ``ops.power(2.0, f)``, which is exact there too).

    ``per_element``: ``f`` holds one exponent per element of the tensor it scales (a kernel's per-weight
    bits). Then, under XLA in float32, it is built from the bits: XLA's CPU ``pow`` costs several times a
    multiply per element, one per weight each training step. Not otherwise: XLA recomputes a chain of
    cheap operations in each of its consumers, and an activation's quantized value has several (the next
    layer's convolution taps, the range record, the gradients), while ``pow``, costly, marks the chain
    to be computed once. ``f`` splits into two factors within float32's normal exponents, so subnormal,
    zero and infinite results come out as the product of exact powers rounds them, as ``pow`` does; NaN
    stays NaN.
    """
    f = ops.convert_to_tensor(f)
    if not (per_element and compiled_by_xla() and backend.standardize_dtype(f.dtype) == "float32"):
        return ops.power(2.0, f)
    head = ops.clip(f, -126.0, 127.0)
    tail = ops.clip(f - head, -126.0, 127.0)  # |f| beyond 252 gives 0 or inf, like pow
    power = _float32_with_exponent(head) * _float32_with_exponent(tail)
    return ops.where(ops.isnan(f), f, power)


def floor_log2(a):
    """``floor(log2 a)`` for ``a >= 2**-126`` (inf and NaN pass through as log2 gives them).

    Under XLA in float32, the exponent field of ``a``: exact and cheaper than XLA's log2. Elsewhere
    ``floor(ops.log2(a))`` (fewer ops for TensorFlow's executor), one too high for the values a few ulps
    below a power of two, whose float32 log2 rounds up to the integer.
    """
    a = ops.convert_to_tensor(a)
    if not (compiled_by_xla() and backend.standardize_dtype(a.dtype) == "float32"):
        return ops.floor(ops.log2(a))
    exponent = ops.cast(ops.right_shift(ops.view(a, "int32"), 23) - 127, "float32")
    return ops.where(ops.isfinite(a), exponent, a)


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
    scale = exp2(ops.cast(f, x.dtype))
    return round_to_integer(x * scale, mode) / scale


def remove_periods(x, period):
    """``x`` minus the whole periods it holds, towards 0: exact in any float precision for a power-of-2
    ``period`` (unlike ``mod``, whose ``+ period`` for negative ``x`` rounds)."""
    return x - ops.sign(x) * _floor(ops.abs(x) / period) * period


def apply_overflow(x, k, i, f, mode="WRAP"):
    """Bring on-grid values ``x`` into the (k, i, f) range with WRAP, SAT or SAT_SYM."""
    dtype = x.dtype
    k, i, f = (ops.cast(v, dtype) for v in (k, i, f))
    step = exp2(-f)
    top = exp2(i) - step
    if mode == "SAT":
        return ops.minimum(ops.maximum(x, -k * exp2(i)), top)
    if mode == "SAT_SYM":
        # a signed 1-bit type has no symmetric range: ap_fixed then saturates like SAT
        low = ops.where(k + i + f == 1, -k * exp2(i), -k * top)
        return ops.minimum(ops.maximum(x, low), top)
    if mode == "WRAP":
        span = exp2(i + k)  # 2**(k+i) = size of the integer range
        offset = k * exp2(i)
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

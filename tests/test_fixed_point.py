"""Fixed-point helpers against a plain numpy reference."""

import numpy as np
import pytest
from keras import ops

from hgq_rewrite.quantizers import fixed_point as fp


def np_round(y, mode):
    if mode == "RND":
        return np.floor(y + 0.5)
    if mode == "TRN":
        return np.floor(y)
    return np.round(y)  # numpy rounds half to even


def np_quantize(x, k, i, f, rnd, sat):
    n = np_round(x * 2.0**f, rnd)  # integer code
    b = k + i + f
    lo, hi = -k * 2.0 ** (b - k), 2.0 ** (b - k) - 1  # integer range of ap_fixed
    if sat == "SAT":
        n = np.clip(n, lo, hi)
    elif sat == "SAT_SYM":
        n = np.clip(n, np.where(b == 1, lo, -k * hi), hi)  # signed 1 bit: no symmetric range
    else:
        n = np.mod(n - lo, 2.0**b) + lo
    return np.where(b > 0, n * 2.0**-f, 0.0)


@pytest.mark.parametrize("rnd", fp.ROUNDING_MODES)
@pytest.mark.parametrize("sat", fp.OVERFLOW_MODES)
@pytest.mark.parametrize("k", [0, 1])
def test_quantize_matches_numpy_reference(rnd, sat, k):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(scale=6, size=2000), np.arange(-40, 40) / 8 + 1 / 16])  # ties included
    i = rng.integers(-2, 4, size=x.shape)
    f = rng.integers(-1, 5, size=x.shape)
    got = ops.convert_to_numpy(fp.quantize(ops.convert_to_tensor(x, "float64"), k, i, f, rnd, sat))
    np.testing.assert_array_equal(got, np_quantize(x, k, i, f, rnd, sat))


def test_rounding_modes_on_ties():
    x = ops.convert_to_tensor(np.array([0.5, 1.5, 2.5, -0.5, -1.5]), "float64")
    assert list(ops.convert_to_numpy(fp.round_to_grid(x, 0, "RND"))) == [1, 2, 3, 0, -1]
    assert list(ops.convert_to_numpy(fp.round_to_grid(x, 0, "TRN"))) == [0, 1, 2, -1, -2]
    assert list(ops.convert_to_numpy(fp.round_to_grid(x, 0, "RND_CONV"))) == [0, 2, 2, 0, -2]


def test_zero_or_negative_width_prunes_to_zero():
    x = ops.convert_to_tensor(np.array([3.0, -2.0]), "float64")
    assert list(ops.convert_to_numpy(fp.quantize(x, 0, 0, 0))) == [0, 0]
    assert list(ops.convert_to_numpy(fp.quantize(x, 1, -3, 1))) == [0, 0]


def test_kif_kbi_round_trip():
    k, i, f = np.array([0, 1, 1]), np.array([3, -1, 2]), np.array([2, 4, -1])
    kb = fp.kif_to_kbi(k, i, f)
    assert [list(v) for v in kb] == [[0, 1, 1], [5, 4, 2], [3, 0, 3]]
    back = fp.kbi_to_kif(*kb)
    for a, b in zip(back, (k, i, f)):
        np.testing.assert_array_equal(a, b)


def test_unknown_mode_is_named():
    x = ops.convert_to_tensor([1.0])
    with pytest.raises(ValueError, match="rounding mode 'NEAREST'"):
        fp.quantize(x, 1, 2, 2, "NEAREST")
    with pytest.raises(ValueError, match="overflow mode 'CLIP'"):
        fp.quantize(x, 1, 2, 2, "RND", "CLIP")


def _compiled_by_xla(fn):
    """``fn`` compiled with XLA on the current backend (JAX always compiles with XLA)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


def _exp2_forms():
    """exp2 under XLA per element (the bit form in float32) and not (pow), and on TensorFlow also eagerly."""
    import keras

    def per_element(f):
        return fp.exp2(f, per_element=True)

    forms = {"xla per element": _compiled_by_xla(per_element), "xla": _compiled_by_xla(fp.exp2)}
    if keras.backend.backend() == "tensorflow":
        forms["eager"] = per_element
    return forms


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp2_is_exact_at_every_integer_exponent(dtype):
    f = np.arange(-200, 201, dtype=dtype)
    expected = np.ldexp(np.ones((), dtype), f.astype(int)).astype(dtype)  # 0 below, inf above the range
    for name, fn in _exp2_forms().items():
        got = ops.convert_to_numpy(fn(ops.convert_to_tensor(f)))
        normal = f >= np.log2(np.finfo(dtype).tiny)  # subnormal results: up to the CPU's denormal mode
        np.testing.assert_array_equal(got[normal], expected[normal], err_msg=f"{name} {dtype}")
        assert np.all((got[~normal] == expected[~normal]) | (got[~normal] == 0)), (name, dtype)


def test_exp2_keeps_nan_and_infinite_exponents_as_pow_does():
    f = np.array([np.nan, np.inf, -np.inf, 3.0], "float32")
    for name, fn in _exp2_forms().items():
        got = ops.convert_to_numpy(fn(ops.convert_to_tensor(f)))
        assert np.isnan(got[0]) and got[1] == np.inf and got[2] == 0 and got[3] == 8, (name, got)


def test_floor_log2_is_exact_just_below_powers_of_two():
    """float32's log2 of the value just below 2**k rounds up to k for k >= 3 or k <= -2: the XLA bit form is exact."""
    k = np.arange(-60, 100)
    powers = np.ldexp(np.float32(1), k).astype("float32")
    below = np.nextafter(powers, np.float32(0))
    rng = np.random.default_rng(0)
    spread = rng.uniform(2.0**-60, 2.0**60, 500).astype("float32")
    x = np.concatenate([powers, below, spread, np.array([np.inf], "float32")])
    expected = np.frexp(x)[1] - 1.0
    expected[-1] = np.inf
    got = ops.convert_to_numpy(_compiled_by_xla(fp.floor_log2)(ops.convert_to_tensor(x)))
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(ops.convert_to_numpy(_compiled_by_xla(fp.floor_log2)(ops.convert_to_tensor([np.nan]))))

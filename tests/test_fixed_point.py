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

"""EBOPs of small layers against a hand computation, and bitwidth propagation through P-layers."""

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.layers import (
    HConv2D,
    HDense,
    HQuantize,
    PAveragePooling2D,
    PFlatten,
    PGlobalAveragePooling1D,
    PMaxPooling2D,
    PPermute,
    Signature,
)
from hgq_rewrite.quantizers import significant_bits


def test_dense_ebops_equal_hand_computation():
    inp = keras.Input((3,))
    dense = HDense(2, use_bias=False, name="d")
    model = keras.Model(inp, dense(Signature([[1, 0, 1]], [[4, 3, 6]], [[2, 1, 3]])(inp)))
    w = np.array([[0.5, 0.75], [1.5, 0.0], [-3.0, 0.625]], "float32")
    dense.kernel.assign(w)
    dense.kq.fbw.assign(np.full((3, 2), 4.0))
    dense.paq.set_range([[-1.0, -1.0]], [[1.0, 1.0]])
    b_in = np.array([4, 3, 6])
    b_w = significant_bits(w)  # [[1,2],[2,0],[2,3]]
    expected = float((b_in[:, None] * b_w).sum())  # 4*3 + 3*2 + 6*5 = 48
    assert expected == 48
    assert dense.set_exact_ebops() == expected


def test_conv_ebops_scale_with_parallel_factor():
    inp = keras.Input((4, 4, 1))
    q = HQuantize(name="q")
    conv = HConv2D(1, 2, use_bias=False, parallel_factor=9, name="c")
    model = keras.Model(inp, conv(q(inp)))
    conv.kernel.assign(np.array([1.0, 0.5, 0.25, 3.0], "float32").reshape(2, 2, 1, 1))
    conv.kq.fbw.assign(np.full((2, 2, 1, 1), 4.0))
    x = np.random.default_rng(0).uniform(-1.6, 1.6, size=(64, 4, 4, 1)).astype("float32")
    q.paq.fbw.assign(np.full(q.paq.bw_shape, 2.0))
    total = hr.trace_minmax(model, x)
    k, i, f = q.output_kif()
    b_in = (k + i + f)[0, ..., 0]
    assert b_in.max() == 4  # signed, 1 integer bit, 2 fractional bits
    b_w = np.array([[1, 1], [1, 2]])
    per_position = [(b_in[r : r + 2, c : c + 2] * b_w).sum() for r in range(3) for c in range(3)]
    assert total == pytest.approx(sum(per_position) * 9 / 9)
    conv.parallel_factor = 3
    assert conv.set_exact_ebops() == pytest.approx(sum(per_position) * 3 / 9)


def _conv_bit_products_by_position(b_in, b_kernel, strides, padding, dilation, depthwise):
    """Σ over output positions of the bits each multiply meets, written out position by position (numpy)."""
    rank = b_in.ndim - 2
    ks = b_kernel.shape[:rank]
    x = b_in[0]
    if padding == "same":
        pads = []
        for n, k, s, d in zip(x.shape[:-1], ks, strides, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [*pads, (0, 0)])
    out = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(x.shape[:-1], ks, strides, dilation)]
    total = 0.0
    for pos in np.ndindex(*out):
        for tap in np.ndindex(*ks):
            where = tuple(p * s + t * d for p, t, s, d in zip(pos, tap, strides, dilation))
            w = b_kernel[tap]  # (in, out) or (in, multiplier)
            total += float((x[where][:, None] * w).sum())
    return total


@pytest.mark.parametrize("rank, strides, padding, dilation, depthwise", [
    (2, (1, 1), "valid", (1, 1), False), (2, (2, 1), "same", (1, 1), False), (2, (1, 1), "same", (2, 2), False),
    (2, (2, 2), "valid", (1, 1), False), (1, (3,), "same", (1,), False), (2, (1, 1), "same", (1, 1), True),
    (1, (2,), "valid", (2,), True),
])
def test_conv_bit_products_equal_the_multiplies_position_by_position(rank, strides, padding, dilation, depthwise):
    from hgq_rewrite.layers import HConv1D, HDepthwiseConv1D, HDepthwiseConv2D

    spatial, ks = (7, 6)[:rank], (3, 2)[:rank]
    cls = {(1, False): HConv1D, (2, False): HConv2D, (1, True): HDepthwiseConv1D, (2, True): HDepthwiseConv2D}
    args = dict(kernel_size=ks, strides=strides, padding=padding, dilation_rate=dilation, parallel_factor=5)
    layer = cls[rank, depthwise](**args) if depthwise else cls[rank, depthwise](3, **args)
    layer.build((None, *spatial, 2))
    rng = np.random.default_rng(rank)
    b_in = rng.integers(0, 9, size=(1, *spatial, 2)).astype("float32")
    b_kernel = rng.integers(0, 6, size=layer.kernel.shape).astype("float32")
    positions = np.prod(layer.output_spatial(layer._input_shape))
    expected = _conv_bit_products_by_position(b_in, b_kernel, strides, padding, dilation, depthwise) * 5 / positions
    assert float(keras.ops.convert_to_numpy(layer.bit_products(b_in, b_kernel))) == pytest.approx(expected, rel=1e-6)


def _traced_kif(layer_fn, shape, data):
    inp = keras.Input(shape)
    q = HQuantize(paq_conf={"init_bw": 2}, name="q")
    out_layer = layer_fn()
    model = keras.Model(inp, out_layer(q(inp)))
    hr.trace_minmax(model, data)
    return q.output_kif(), out_layer.output_kif()


def test_permute_transposes_bitwidth_maps():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(32, 2, 3)).astype("float32") * np.array([1, 4, 16], "float32")
    (k, i, f), (k2, i2, f2) = _traced_kif(lambda: PPermute((2, 1)), (2, 3), data)
    np.testing.assert_array_equal(i2, np.transpose(i, (0, 2, 1)))


def test_average_pooling_adds_fraction_bits_max_pooling_does_not():
    data = np.random.default_rng(2).normal(size=(32, 4, 4, 1)).astype("float32")
    (_, i, f), (_, i_avg, f_avg) = _traced_kif(lambda: PAveragePooling2D(2), (4, 4, 1), data)
    assert f_avg.max() == f.max() + 2 and i_avg.max() == i.max()
    (_, _, f), (_, _, f_max) = _traced_kif(lambda: PMaxPooling2D(2), (4, 4, 1), data)
    assert f_max.max() == f.max()
    (_, _, f), (_, _, f_g) = _traced_kif(lambda: PGlobalAveragePooling1D(), (4, 3), data[..., 0, 0].reshape(32, 4, 1) * np.ones((1, 1, 3), "float32"))
    assert f_g.max() == f.max() + 2


def test_flatten_keeps_every_element_format():
    data = np.random.default_rng(3).normal(size=(32, 2, 3)).astype("float32")
    (k, i, f), (k2, i2, f2) = _traced_kif(PFlatten, (2, 3), data)
    np.testing.assert_array_equal(i2.ravel(), np.broadcast_to(i, (1, 2, 3)).ravel())


def test_pooling_ignores_always_zero_elements_like_hls4ml():
    """hls4ml writes an always-zero (0-bit) element as (0, 0, 0): its fractional bits do not widen the window's
    union. Counted otherwise, a convolution after pooling had ~40% more EBOPs than its firmware."""
    rng = np.random.default_rng(4)
    data = rng.uniform(0.1, 0.9, size=(64, 2, 2, 1)).astype("float32")
    data[:, 0, 0, 0] = 0.0  # always zero: a 0-bit element after tracing
    inp = keras.Input((2, 2, 1))
    q = HQuantize(paq_conf={"init_bw": 2}, name="q")
    pool = PMaxPooling2D(2)
    model = keras.Model(inp, pool(q(inp)))
    bits = np.full(tuple(q.paq.fbw.shape), 2.0, "float32")
    bits.reshape(-1)[0] = 8.0  # the always-zero element asks for many fractional bits
    q.paq.fbw.assign(bits)
    hr.trace_minmax(model, data)
    k, i, f = (np.broadcast_to(m, (1, 2, 2, 1)).reshape(-1) for m in q.output_kif())
    assert k[0] + i[0] + f[0] <= 0 and f[0] > f[1:].max()
    k2, i2, f2 = (np.asarray(m).reshape(-1) for m in pool.output_kif())
    assert (k2[0], i2[0], f2[0]) == (max(k[1:].max(), 0), max(i[1:].max(), 0), max(f[1:].max(), 0))


def _first_max_gradient(x, pool_size, dz):
    """numpy: each window's upstream gradient to its first maximum in row-major order (XLA's rule)."""
    grad = np.zeros_like(x)
    out = dz.shape[1:-1]
    for index in np.ndindex(x.shape[0], *out, x.shape[-1]):
        b, pos, c = index[0], index[1:-1], index[-1]
        window = tuple(slice(o * p, o * p + p) for o, p in zip(pos, pool_size))
        values = x[(b, *window, c)]
        first = np.unravel_index(np.argmax(values), values.shape)
        grad[(b, *(o * p + w for o, p, w in zip(pos, pool_size, first)), c)] = dz[index]
    return grad


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="tf.GradientTape (JAX: test_backends_jax.py)")
@pytest.mark.parametrize("shape, pool_size", [((3, 9, 7, 2), (2, 2)), ((2, 10, 3), (3,))])
def test_bit_maps_pool_from_their_phases_with_the_first_maximum_gradient(shape, pool_size):
    """Bit maps (integers: ties everywhere) pool from the phases: TensorFlow's values, one gradient rule on
    every backend."""
    import tensorflow as tf

    from hgq_rewrite.layers.pool_gradient import phase_max_pool

    rng = np.random.default_rng(8)
    x = tf.constant(rng.integers(-2, 3, size=shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = phase_max_pool(x, pool_size, sliced=True)
        dz = tf.constant(rng.normal(size=z.shape).astype("float32"))
        total = tf.reduce_sum(z * dz)
    np.testing.assert_array_equal(z.numpy(), keras.ops.max_pool(x, pool_size, pool_size, "valid").numpy())
    expected = _first_max_gradient(x.numpy(), pool_size, dz.numpy())
    np.testing.assert_array_equal(tape.gradient(total, x).numpy(), expected)

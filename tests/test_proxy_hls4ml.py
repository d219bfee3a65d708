"""Hand-built proxies vs hls4ml's C simulation: zero mismatches, including far-out-of-range inputs.

Each model composes several layer kinds so that only a few C++ compiles are needed; the compiled
reports are shared through module-scoped fixtures. Run with ``pytest -s -m slow`` to see timings.
"""

import zlib

import numpy as np
import pytest
import keras

from proxy_harness import (
    F64,
    compile_report,
    concat,
    hetero,
    inputs_with_overflow,
    q,
    random_kif,
    set_dyadic_weights,
    unary_lut,
)

pytestmark = pytest.mark.slow
L = keras.layers
N_SAMPLES = 3000


def _union(layer):
    """(k, i, f) covering every element of a quantizer (what a LUT input quantizer must hold)."""
    k, i, f = layer.kif
    return int(k.max()), int(i.max()), int(f.max())


def build_dense_merge_lut(rng):
    """Dense, Dense(activation='relu'), Dense + Activation('relu'), Add, Concatenate, UnaryLUT(tanh, sigmoid).

    Quantizers: homogeneous SAT input, heterogeneous WRAP/RND, TRN, RND_CONV, SAT_SYM and SAT.
    """
    inp = keras.Input((16,), dtype=F64, name="x")
    x = q((1, 2, 3), SAT="SAT", name="q_in")(inp)
    d1 = L.Dense(12, dtype=F64, name="dense1")
    qa = hetero(rng, d1(x), name="qa")
    d2 = L.Dense(12, activation="relu", dtype=F64, name="dense2_relu")
    qb = hetero(rng, d2(qa), k=(0,), name="qb")
    d3 = L.Dense(12, dtype=F64, name="dense3")
    qc = hetero(rng, L.Activation("relu", dtype=F64, name="relu3")(d3(qa)), k=(0,), RND="TRN", name="qc")
    add = L.Add(dtype=F64, name="add")([qb, qc])
    qd_layer = q(random_kif(rng, (12,), i=(0, 4), f=(0, 5)), RND="RND_CONV", name="qd")
    qd = qd_layer(add)
    # tanh: homogeneous quantizer covering the union of qd's formats (no overflow), then the table
    kif_t = _union(qd_layer)
    t = unary_lut("tanh", kif_t, (1, 0, 6), name="lut_tanh")(q(kif_t, SAT="SAT", name="q_lut_tanh")(qd))
    # sigmoid: a narrower WRAP quantizer in front of the table, and a heterogeneous one behind it
    s = unary_lut("sigmoid", (1, 2, 2), (0, 0, 7), name="lut_sigmoid")(q((1, 2, 2), name="q_lut_sigmoid")(qd))
    s = hetero(rng, s, k=(0,), i=(0, 0), f=(2, 7), SAT="SAT_SYM", name="q_sig_out")
    cat = concat([qd, t, s], name="cat")
    d4 = L.Dense(5, dtype=F64, name="dense_out")
    out = hetero(rng, d4(cat), f=(0, 2), SAT="SAT", name="q_out")  # f below what the Dense produces
    model = keras.Model(inp, out, name="dense_merge_lut")
    for layer in (d1, d2, d3, d4):
        set_dyadic_weights(rng, layer, f=3, scale=0.5)
    return model


def build_conv2d_pool(rng):
    """Conv2D, Activation('relu'), MaxPooling2D, DepthwiseConv2D, AveragePooling2D, GlobalAveragePooling2D,
    Flatten, Dense, Concatenate; heterogeneous WRAP input quantizer."""
    inp = keras.Input((10, 10, 2), dtype=F64, name="img")
    x = hetero(rng, inp, k=(1,), i=(1, 3), f=(1, 4), name="q_in")
    c1 = L.Conv2D(3, (3, 3), dtype=F64, name="conv")
    x = hetero(rng, c1(x), name="q_conv")
    x = hetero(rng, L.Activation("relu", dtype=F64, name="relu")(x), k=(0,), name="q_relu")
    x = L.MaxPooling2D((2, 2), dtype=F64, name="maxpool")(x)
    dw = L.DepthwiseConv2D((3, 3), padding="same", dtype=F64, name="dwconv")
    x = hetero(rng, dw(x), name="q_dw")
    x = L.AveragePooling2D((2, 2), dtype=F64, name="avgpool")(x)
    # hls4ml 1.3 needs a Flatten after GlobalAveragePooling2D (see bit_exact._global_pooling_2d_problems)
    g = L.Flatten(dtype=F64, name="gap_flat")(L.GlobalAveragePooling2D(dtype=F64, name="gap")(x))
    d = L.Dense(4, dtype=F64, name="dense")
    f = hetero(rng, d(L.Flatten(dtype=F64, name="flatten")(x)), f=(0, 2), SAT="SAT", name="q_dense")
    out = hetero(rng, L.Concatenate(dtype=F64, name="cat")([g, f]), i=(0, 5), f=(2, 6), name="q_out")
    model = keras.Model(inp, out, name="conv2d_pool")
    for layer in (c1, dw, d):
        set_dyadic_weights(rng, layer, f=3, scale=0.5)
    return model


def build_conv1d_reshape(rng):
    """Conv1D (same, and strided valid), MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, Permute,
    Reshape, Flatten, Dense on a rank-3 tensor, Concatenate; homogeneous TRN/SAT input quantizer."""
    inp = keras.Input((16, 3), dtype=F64, name="seq")
    x = q((1, 3, 4), RND="TRN", SAT="SAT", name="q_in")(inp)
    c1 = L.Conv1D(4, 3, padding="same", dtype=F64, name="conv_same")
    x = hetero(rng, c1(x), name="q_conv_same")
    mp = L.MaxPooling1D(2, dtype=F64, name="maxpool")(x)  # (8, 4)
    p = L.Permute((2, 1), dtype=F64, name="permute")(mp)  # (4, 8)
    c2 = L.Conv1D(3, 2, strides=2, dtype=F64, name="conv_strided")
    a = L.Flatten(dtype=F64, name="flatten")(hetero(rng, c2(p), name="q_conv_strided"))  # 6
    g = L.GlobalAveragePooling1D(dtype=F64, name="gap")(L.AveragePooling1D(2, dtype=F64, name="avgpool")(mp))  # 4
    d1 = L.Dense(3, dtype=F64, name="dense_flat")
    r = hetero(rng, d1(L.Reshape((32,), dtype=F64, name="reshape")(mp)), f=(0, 2), SAT="SAT_SYM", name="q_dense")
    d2 = L.Dense(2, dtype=F64, name="dense_nd")  # Dense on (8, 4) -> (8, 2)
    n = L.Flatten(dtype=F64, name="flatten_nd")(hetero(rng, d2(mp), name="q_dense_nd"))  # 16
    cat = concat([a, g, r, n], name="cat")
    d3 = L.Dense(4, dtype=F64, name="dense_out")
    out = hetero(rng, d3(cat), name="q_out")
    model = keras.Model(inp, out, name="conv1d_reshape")
    for layer in (c1, c2, d1, d2, d3):
        set_dyadic_weights(rng, layer, f=3, scale=0.5)
    return model


def build_overflow_two_io(rng):
    """Two inputs, two outputs; WRAP with few integer bits, homogeneous SAT mid-network, SAT_SYM."""
    in1 = keras.Input((8,), dtype=F64, name="a")
    in2 = keras.Input((4,), dtype=F64, name="b")
    x1 = q((1, 1, 2), name="q_a")(in1)  # WRAP at the input: far-out values wrap around
    x2 = hetero(rng, in2, SAT="SAT", i=(0, 2), f=(1, 3), name="q_b")
    x = L.Concatenate(dtype=F64, name="cat")([x1, x2])
    d1 = L.Dense(8, dtype=F64, name="dense1")
    x = hetero(rng, d1(x), i=(-1, 1), f=(2, 5), name="q1")  # wraps often
    d2 = L.Dense(6, dtype=F64, name="dense2")
    y1 = q((1, 1, 1), SAT="SAT", name="q2")(d2(x))  # homogeneous, saturates often
    d3 = L.Dense(4, dtype=F64, name="dense3")
    y2 = hetero(rng, d3(x), k=(1,), f=(0, 1), SAT="SAT_SYM", name="q3")
    model = keras.Model([in1, in2], [y1, y2], name="overflow_two_io")
    for layer in (d1, d2, d3):
        set_dyadic_weights(rng, layer, f=3, scale=0.7)
    return model


BUILDERS = {
    "dense_merge_lut": (build_dense_merge_lut, "Vitis", {}),
    "conv2d_pool": (build_conv2d_pool, "Vivado", {"part": "xcvu9p-flga2104-2L-e"}),
    "conv1d_reshape": (build_conv1d_reshape, "Vitis", {}),
    "overflow_two_io": (build_overflow_two_io, "Vitis", {}),
}


def _inputs(model, rng):
    xs = [inputs_with_overflow(rng, tuple(t.shape[1:]), N_SAMPLES) for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


@pytest.fixture(scope="module", params=list(BUILDERS))
def compiled(request):
    builder, backend, kwargs = BUILDERS[request.param]
    rng = np.random.default_rng(zlib.crc32(request.param.encode()))
    model = builder(rng)
    x = _inputs(model, rng)
    report = compile_report(model, x, backend=backend, **kwargs)
    return model, x, report


def test_zero_mismatches(compiled):
    model, _, report = compiled
    assert report.ok, str(report)
    assert report.notes == []


def test_inputs_really_overflow(compiled):
    """The far-out samples must exercise WRAP/SAT: the proxy output differs from an unclipped float run."""
    model, x, report = compiled
    xs = x if isinstance(x, list) else [x]
    assert max(np.abs(v).max() for v in xs) > 50


def test_proxy_dtype_is_float64(compiled):
    model, _, report = compiled
    assert report.proxy_output.dtype == np.float64
    assert all(layer.compute_dtype == "float64" for layer in model.layers if not isinstance(layer, L.InputLayer))


def test_quantizer_nodes_survive_or_fuse(compiled):
    """Every quantizer became an hls4ml FixedPointQuantizer node or was fused into its producer's type."""
    from hls4ml.model.optimizer.passes.hgq_proxy_model import FixedPointQuantizer as HLSQuantizer

    model, _, report = compiled
    graph = report.hls_model.graph
    for name, node in graph.items():
        if isinstance(node, HLSQuantizer):
            assert name in [layer.name for layer in model.layers]


def test_timing_recorded(compiled):
    _, _, report = compiled
    assert report.convert_seconds > 0 and report.compile_seconds > 0


def build_known_issues(rng):
    """Layers that hls4ml 1.3.0 gets wrong; one output column group per issue."""
    inp = keras.Input((8,), dtype=F64, name="x")
    x = q((1, 3, 3), SAT="SAT", name="q_in")(inp)
    d = L.Dense(6, dtype=F64, name="dense")
    y = q(random_kif(rng, (6,), k=(1,), i=(1, 3), f=(1, 4)), name="qa")(d(x))
    # 1) keras.layers.ReLU: converted to a ThresholdedReLU node
    relu = q(random_kif(rng, (6,), k=(1,), i=(0, 2), f=(3, 8)), name="q_relu")(L.ReLU(dtype=F64, name="relu")(y))
    # 2) SAT quantizer with more fractional bits than its input carries: hls4ml drops them, and then saturates
    #    to a different bound (2**i - 2**-f needs all f bits)
    sat = q(random_kif(rng, (6,), k=(1,), i=(0, 0), f=(6, 6)), SAT="SAT", name="q_sat")(y)
    model = keras.Model(inp, concat([relu, sat], name="cat"), name="known_issues")
    set_dyadic_weights(rng, d, f=2, scale=0.5)
    return model


def test_known_hls4ml_issues_still_present():
    """Documents the hls4ml 1.3.0 issues listed in docs/bit_exactness.md; fails once hls4ml fixes them."""
    rng = np.random.default_rng(7)
    model = build_known_issues(rng)
    report = compile_report(model, inputs_with_overflow(rng, (8,), 500), strict=False)
    bad = report.proxy_output != report.hls_output
    assert bad[:, :6].any(), "keras.layers.ReLU became bit-exact: update KNOWN_PROBLEMS and the docs"
    assert bad[:, 6:].any(), "SAT with surplus fractional bits became bit-exact: update the docs"
    assert any("ReLU" in note for note in report.notes)

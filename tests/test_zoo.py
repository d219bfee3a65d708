"""The model zoo (issue 12): real-shaped float models (builders in tests/zoo_models.py), each either taken
quantize(calibration_data) → finetune 1 epoch (Keras fit for several outputs) → trace_minmax →
to_proxy_model → hls4ml C simulation with 0 mismatching samples (and the HGQ model equal to its proxy), or
refused at plan time: ``explain`` shows the layer as not exportable, why and the remedy, and
``quantize(strict=True)`` refuses naming the layer.

One parametrized test, so ``pytest -n 2`` spreads the zoo over two workers."""

import re
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.finetune.loss import default_compile
from hgq_rewrite.proxy import predict_float64
from hgq_rewrite.rewrite import UnsupportedLayerError, unregister_handler

import zoo_models as Z
from flow import assert_hls4ml_exact, needs_gxx

N_TRAIN, N_TEST = 160, 200


@dataclass(frozen=True)
class Entry:
    build: Callable
    config: dict | None = None
    refused: tuple | None = None  # refused at plan time: (layer name, regex on the reason, regex on the remedy)


ZOO = {
    "mlp": Entry(Z.mlp),
    "jet_tagger": Entry(Z.jet_tagger),
    "softmax_classifier": Entry(Z.softmax_classifier),
    "conv_bn_relu": Entry(Z.conv_bn_relu),
    "cnn_separable_depthwise": Entry(Z.cnn_separable_depthwise),
    "mobile_block": Entry(Z.mobile_block),
    "resnet": Entry(Z.resnet),
    "conv1d": Entry(Z.conv1d),
    "conv1d_padded": Entry(Z.conv1d_padded),
    "multi_io": Entry(Z.multi_io),
    "nested": Entry(Z.nested),
    "transformer": Entry(Z.transformer),
    "transformer_layernorm": Entry(Z.transformer_layernorm, refused=(
        "ln1", r".*no bit-exact LayerNormalization", r"replace it")),
    "transformer_unknown_length": Entry(Z.transformer_unknown_length, refused=(
        "gap", r"(GlobalAveragePooling1D: )?it pools over axes of unknown size", r"give those axes a size.*EinsumDense\(output_shape")),
    "custom_family": Entry(Z.custom_family),
    "unet_concat": Entry(Z.unet_concat),
    "unet_upsampling": Entry(Z.unet_upsampling, refused=(
        "up", r"no converter for UpSampling2D", r"use padding=.same. in the convolution, or pad/crop/resize")),
    "gap_head": Entry(Z.gap_head),
    "merges": Entry(Z.merges),
    "lut_activations": Entry(Z.lut_activations),
    "reshape_permute": Entry(Z.reshape_permute),
    "kept_float": Entry(Z.kept_float, config={"names": {"skip_me": None}}, refused=(
        "skip_me", r"it is kept float, and the proxy has no rule for a float Dense", r"quantize it")),
}


def _inputs(model, n, seed, scale=1.0, far=0.0):
    """Normal inputs; a tenth of the samples ``far`` times larger (beyond the calibrated ranges) if ``far``."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        x = rng.normal(0, scale, (n, *t.shape[1:]))
        if far:
            x[: n // 10] *= far
        xs.append(x.astype("float32"))
    return xs if len(xs) > 1 else xs[0]


def _targets(model, n, seed):
    """Class labels for a vector output (cross-entropy), float targets otherwise; one per output."""
    rng = np.random.default_rng(seed)
    ys = []
    for t in model.outputs:
        shape = tuple(t.shape[1:])
        ys.append(rng.integers(0, shape[0], n) if len(shape) == 1 and shape[0] > 1
                  else rng.normal(0, 1, (n, *shape)).astype("float32"))
    return ys if len(ys) > 1 else ys[0]


def _train(q, x, y):
    """One epoch, run eagerly (five steps: tracing them would cost more than running them): `finetune`, or
    for several outputs (finetune takes one target array) Keras' fit with a loss per output."""
    if len(q.outputs) > 1:
        losses = [keras.losses.SparseCategoricalCrossentropy(from_logits=True) if v.dtype.kind == "i"
                  else keras.losses.MeanSquaredError() for v in y]
        q.compile(hr.BitwidthAdam(learning_rate=3e-3), loss=losses, run_eagerly=True)
        q.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[hr.ResetMinMax()])
        return
    default_compile(q, y, learning_rate=3e-3)
    q.run_eagerly = True
    hr.finetune(q, x, y, epochs=1, batch_size=32, verbose=0)


def _mismatching_rows(q, proxy, x):
    def flat(y):
        ys = y if isinstance(y, (list, tuple)) else [y]
        return np.concatenate([np.asarray(v, np.float64).reshape(N_TEST, -1) for v in ys], axis=1)

    return int(np.sum(np.any(flat(q(x, training=False)) != flat(predict_float64(proxy, x)), axis=1)))


def _check_refused(model, config, layer, reason, remedy):
    """explain: the layer does not export, why and the remedy; quantize(strict=True) refuses naming it and why."""
    exports = hr.explain(model, config)[layer].exports
    assert exports.startswith("no: ") and re.search(rf"{reason}.*; remedy: {remedy}", exports), exports
    with pytest.raises(UnsupportedLayerError, match=rf"'{layer}': {reason}"):
        hr.quantize(model, config, strict=True)


def _check_exact(model, config):
    x, y = _inputs(model, N_TRAIN, 1), _targets(model, N_TRAIN, 2)
    q = hr.quantize(model, config, strict=True, calibration_data=x)
    _train(q, x, y)
    hr.trace_minmax(q, x)
    proxy = hr.to_proxy_model(q)
    x_test = _inputs(model, N_TEST, 3, scale=1.5, far=8.0)
    assert _mismatching_rows(q, proxy, x_test) == 0
    assert_hls4ml_exact(proxy, x_test)


def _params():
    """The transformer (tables, products, sums) is built at -O3 as users build it; the rest at -O0 (conftest)."""
    for name, entry in ZOO.items():
        yield pytest.param(name, id=name, marks=[pytest.mark.optimized_csim] if name == "transformer" else [])


@pytest.mark.slow
@needs_gxx
@pytest.mark.parametrize("name", _params())
def test_zoo_model(name):
    entry = ZOO[name]
    keras.utils.set_random_seed(0)
    built = entry.build()
    model, handler = built if isinstance(built, tuple) else (built, None)
    Z.randomize_batchnorm(model)
    try:
        if entry.refused:
            _check_refused(model, entry.config, *entry.refused)
        else:
            _check_exact(model, entry.config)
    finally:
        if handler is not None:
            unregister_handler(handler)


def test_the_zoo_has_at_least_fifteen_models():
    assert len(ZOO) >= 15 and len({e.build for e in ZOO.values()}) == len(ZOO)


def test_a_merge_of_an_unknown_length_and_a_known_one_is_no_broadcast():
    x = keras.Input((6, 8))
    m = keras.layers.EinsumDense("btc,cd->btd", output_shape=(None, 8), name="ff")(x)  # length None
    plan = hr.explain(keras.Model(x, keras.layers.Add(name="add")([x, m])))
    assert (plan["add"].decision, plan["add"].target) == ("convert", "HAdd")

"""The cheaper training step computes what the straightforward one computed, bit for bit, and the
backend advice follows the measurements (issue 15)."""

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.backend_advice import backend_advice, speedups
from hgq_rewrite.layers import HDense, HDenseBatchNorm, HQuantize
from hgq_rewrite.quantizers import HQuantizer
from hgq_rewrite.quantizers.hquantizer import Filled


class PerVariableAdam(hr.BitwidthStepMixin, keras.optimizers.Adam):
    """Keras' Adam update for every variable on its own (the reference for BitwidthAdam)."""

    def __init__(self, learning_rate, bitwidth_lr_scale, weight_lr_scales=None):
        super().__init__(learning_rate=learning_rate)
        self.bitwidth_lr_scale = bitwidth_lr_scale
        self.weight_lr_scales = weight_lr_scales or {}


def _model(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,))
    x = HQuantize(name="q")(inp)
    x = HDenseBatchNorm(8, activation="relu", beta=1e-3, name="d1")(x)
    x = HDense(8, activation="relu", beta=1e-3, name="d2")(x)
    return keras.Model(inp, HDense(3, beta=1e-3, name="d3")(x))


@pytest.mark.parametrize("scale, weight_scales",
                         [(1.0, None), (10.0, None), (10.0, {"d2/kernel": 3.0, "d2/bias": 0.5})])
def test_bitwidth_adam_shares_the_step_size_and_matches_per_variable_adam(scale, weight_scales):
    """Two epochs of ``fit`` with BitwidthAdam and with per-variable Adam end in the same weights, bit for bit.
    On TensorFlow both fit eagerly: its compiled step is not reproducible to the last bit from one process to
    the next (per-variable Adam's own compiled result differed in 1 process of 72, in one bitwidth). JAX's
    compiled step is (while JAX run eagerly is not: 1 process of 42 differed)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = rng.integers(0, 3, size=96)
    weights = []
    for optimizer in (hr.BitwidthAdam(1e-2, bitwidth_lr_scale=scale, weight_lr_scales=weight_scales),
                      PerVariableAdam(1e-2, scale, weight_scales)):
        model = _model(1)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      run_eagerly=keras.backend.backend() == "tensorflow")
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        weights.append({v.path: np.asarray(v) for v in model.weights})
    ours, reference = weights
    assert ours.keys() == reference.keys()
    for path in ours:
        np.testing.assert_array_equal(ours[path], reference[path], err_msg=path)
    moved = [p for p in ours if p.endswith("fbw") and not np.array_equal(ours[p], _initial_fbw(p))]
    assert moved  # the bitwidths were trained


def _initial_fbw(path):
    return {v.path: np.asarray(v) for v in _model(1).weights}[path]


def test_training_ebops_estimate_counts_the_inference_kernel():
    """The training call's EBOPs reuse its quantized kernel (plain layers) or quantize the kernel folded
    with the moving statistics (BatchNorm layers): the same as the estimate computed afresh."""
    model = _model(2)
    x = np.random.default_rng(2).normal(size=(32, 6)).astype("float32")
    model(x, training=True)
    for name in ("d1", "d2", "d3"):
        layer = model.get_layer(name)
        fresh = float(keras.ops.convert_to_numpy(layer.compute_ebops(exact=False)))
        assert layer.ebops == pytest.approx(fresh, rel=0, abs=0), name
        assert fresh > 0


def test_filled_variables_start_like_the_keras_initializers():
    q = HQuantizer({"init_bw": 3.7}, "activation")
    q.build((None, 4))
    np.testing.assert_array_equal(np.asarray(q.fbw), np.full((1, 4), np.float32(3.7)))
    np.testing.assert_array_equal(np.asarray(q.min), np.full((1, 4), np.inf, "float32"))
    np.testing.assert_array_equal(np.asarray(q.max), np.full((1, 4), -np.inf, "float32"))
    assert not q.has_ranges() and not q.is_traced()
    assert Filled(2.0)((2, 3), "float64").dtype == np.float64
    layer = HDenseBatchNorm(3, name="bn")
    layer.build((None, 4))
    np.testing.assert_array_equal(np.asarray(layer.moving_variance), np.ones(3, "float32"))
    np.testing.assert_array_equal(np.asarray(layer.bn_gamma), np.ones(3, "float32"))


MEASURED = {"tensorflow": {"a": 0.6, "b": 0.9}, "jax": {"a": 0.2, "b": 0.45}}


def test_backend_advice_names_the_faster_backend_with_its_factors():
    assert speedups("tensorflow", "jax", MEASURED) == pytest.approx({"a": 3.0, "b": 2.0})
    line = backend_advice("tensorflow", MEASURED)
    assert "jax measured 2.0-3.0x faster" in line and "KERAS_BACKEND=jax" in line and "[jax]" in line
    assert backend_advice("jax", MEASURED) is None


def test_no_advice_unless_faster_on_every_task():
    mixed = {"tensorflow": {"a": 0.6, "b": 0.4}, "jax": {"a": 0.2, "b": 0.45}}
    assert backend_advice("tensorflow", mixed) is None
    assert backend_advice("torch", MEASURED) is None


def test_the_shipped_measurements_are_complete():
    from hgq_rewrite.backend_advice import MEASURED_EPOCH_S

    assert set(MEASURED_EPOCH_S) == {"tensorflow", "jax"}
    for times in MEASURED_EPOCH_S.values():
        assert set(times) == {"digits28", "mnist1d", "jets"} and all(t > 0 for t in times.values())


def _variables():
    rng = np.random.default_rng(3)
    shapes = {"a/fbw": (1, 4), "b/fbw": (3, 2), "c/fbw": (5,), "kernel": (3, 2)}
    return [keras.Variable(rng.normal(size=s).astype("float32"), name=n.split("/")[-1]) for n, s in shapes.items()]


def test_bitwidth_adam_updates_all_variables_as_one_and_leaves_those_without_a_gradient_alone():
    """One flat Adam state for all variables of a dtype (two optimizer variables, not two per variable), the
    same arithmetic as per-variable Adam; a variable without a gradient in a step keeps its value and moments."""
    rng = np.random.default_rng(4)
    grads = [[rng.normal(size=v.shape).astype("float32") for v in _variables()] for _ in range(4)]
    grads[1][1] = None
    grads[2][0] = grads[2][2] = None
    finals = []
    for optimizer in (hr.BitwidthAdam(1e-2, bitwidth_lr_scale=10.0), PerVariableAdam(1e-2, 10.0)):
        variables = _variables()
        optimizer.build(variables)
        for step in grads:
            optimizer.apply(step, variables)
        finals.append([np.asarray(v) for v in variables])
        if isinstance(optimizer, hr.BitwidthAdam):
            assert len(optimizer.variables) == 2 + 2  # iterations, learning rate; one packed m, v for all four
    for ours, reference in zip(*finals):
        np.testing.assert_array_equal(ours, reference)


def _saved_state(optimizer):
    store = {}
    optimizer.save_own_variables(store)
    return store


def _bitwidth_packed_layout(reference, variables):
    """The state as the previous BitwidthAdam saved it: a pair of moments per weight, then the bitwidths' packed."""
    store = _saved_state(reference)
    pairs = [(store[str(2 + 2 * j)], store[str(3 + 2 * j)]) for j in range(len(variables))]
    bits = [j for j, v in enumerate(variables) if v.name == "fbw"]
    entries = [store["0"], store["1"]]
    entries += [a for j, pair in enumerate(pairs) if j not in bits for a in pair]
    entries += [np.concatenate([np.ravel(pairs[j][w]) for j in bits]) for w in (0, 1)]
    return {str(i): e for i, e in enumerate(entries)}


@pytest.mark.parametrize("layout", ["per_variable", "bitwidths_packed"])
def test_bitwidth_adam_loads_the_state_earlier_versions_saved(layout):
    """An optimizer state saved with a pair of moments per variable (or per weight, the bitwidths packed) loads
    into the packed moments: training on from it gives what per-variable Adam gives, bit for bit."""
    rng = np.random.default_rng(5)
    grads = [[rng.normal(size=v.shape).astype("float32") for v in _variables()] for _ in range(4)]
    reference, reference_vars = PerVariableAdam(1e-2, 10.0), _variables()
    reference.build(reference_vars)
    for step in grads[:2]:
        reference.apply(step, reference_vars)
    store = _saved_state(reference) if layout == "per_variable" else _bitwidth_packed_layout(reference, reference_vars)
    ours, our_vars = hr.BitwidthAdam(1e-2, bitwidth_lr_scale=10.0), _variables()
    ours.build(our_vars)
    ours.load_own_variables(store)
    for v, r in zip(our_vars, reference_vars):
        v.assign(r)
    for step in grads[2:]:
        reference.apply(step, reference_vars)
        ours.apply(step, our_vars)
    assert int(ours.iterations) == 4
    for v, r in zip(our_vars, reference_vars):
        np.testing.assert_array_equal(np.asarray(v), np.asarray(r))


def test_bitwidth_adam_skips_a_state_of_no_known_layout_and_keeps_its_own():
    """A saved state that is neither the current layout nor an earlier one: Keras' warning naming the optimizer
    and the counts, and the optimizer's own state (and the store) left as they were."""
    optimizer, variables = hr.BitwidthAdam(1e-2, bitwidth_lr_scale=10.0), _variables()
    optimizer.build(variables)
    optimizer.apply([np.ones(v.shape, "float32") for v in variables], variables)
    before = [np.array(v) for v in optimizer.variables]
    store = {str(i): np.zeros((7,), "float32") for i in range(5)}
    with pytest.warns(UserWarning, match=r"Skipping variable loading for optimizer .*has 4 variables.*has 5"):
        optimizer.load_own_variables(store)
    for v, b in zip(optimizer.variables, before):
        np.testing.assert_array_equal(np.asarray(v), b)
    assert all(np.array_equal(a, np.zeros((7,), "float32")) for a in store.values())

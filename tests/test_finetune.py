"""finetune: beta schedules, the Pareto front of the epochs, compiling, and the errors a user meets."""

import json
import math
import os

import keras
import numpy as np
import pytest

from hgq_rewrite.finetune import FRONT_FILE, ParetoFront, dominates, finetune, metric_mode
from hgq_rewrite.layers import HConv1D, HDense, HQuantize, PFlatten
from hgq_rewrite.schedules import BetaScheduler, Constant, Linear, Log, as_schedule, parse_schedule, set_beta
from hgq_rewrite.trace import h_layers


def tiny_model(n_out=3, nested=False):
    inp = keras.Input((6,), name="x")
    x = HQuantize(name="q")(inp)
    x = HDense(8, activation="relu", beta=1e-6, name="d1")(x)
    if nested:
        inner_in = keras.Input((8,))
        inner = keras.Model(inner_in, HDense(n_out, name="inner_d")(inner_in), name="inner")
        out = inner(x)
    else:
        out = HDense(n_out, name="d2")(x)
    return keras.Model(inp, out, name="tiny")


def tiny_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


# --------------------------------------------------------------------------- schedules


def test_schedule_values_per_epoch():
    assert [Constant(3e-5)(e, 10) for e in range(3)] == [3e-5] * 3
    lin = Linear(0.0, 1.0, 2, 6)
    assert [lin(e, 10) for e in range(9)] == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1])
    # end_epoch=None: the last epoch of the fit
    assert [Linear(1.0, 3.0)(e, 3) for e in range(3)] == pytest.approx([1, 2, 3])
    log = Log(1e-7, 1e-4)
    assert [log(e, 4) for e in range(4)] == pytest.approx([1e-7, 1e-6, 1e-5, 1e-4], rel=1e-9)
    assert Log(1e-6, 1e-4, 1, 3)(0, 10) == pytest.approx(1e-6)
    assert Log(1e-6, 1e-4, 1, 3)(2, 10) == pytest.approx(1e-5)
    assert Log(1e-6, 1e-4, 1, 3)(7, 10) == pytest.approx(1e-4)
    # a ramp starts at its start value, also in a one-epoch fit
    assert Linear(0.0, 1.0)(0, 1) == 0.0


def test_parse_schedule_text_forms():
    assert parse_schedule("3e-5") == Constant(3e-5)
    assert parse_schedule("constant:1e-3") == Constant(1e-3)
    assert parse_schedule("linear:0:1e-4") == Linear(0.0, 1e-4)
    assert parse_schedule("log:1e-7:1e-4:5:30") == Log(1e-7, 1e-4, 5, 30)
    assert parse_schedule(str(Log(1e-7, 1e-4, 5, 30))) == Log(1e-7, 1e-4, 5, 30)
    assert as_schedule(2e-6) == Constant(2e-6)
    assert as_schedule(lambda e: 1e-6 * e)(3) == pytest.approx(3e-6)


@pytest.mark.parametrize(
    "text, match",
    [
        ("cubic:1:2", "unknown schedule kind"),
        ("log:0:1e-4", "> 0"),
        ("linear:1e-6", "start, an end"),
        ("-1e-5", ">= 0"),
        ("linear:1:2:5:3", "before start_epoch"),
        ("log:1e-7:1e-4:a", "invalid literal"),
        ("", "non-empty"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_schedule(text)


def test_bad_beta_types():
    with pytest.raises(TypeError, match="beta must be"):
        as_schedule([1e-5])
    with pytest.raises(ValueError, match="finite number"):
        Constant(float("nan"))


def test_beta_scheduler_sets_every_layer_including_nested():
    model = tiny_model(nested=True)
    x, y = tiny_data(32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sched = BetaScheduler.log(1e-6, 1e-3)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(sorted({layer.beta for layer in h_layers(self.model)}))

    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[sched, Spy()])
    expected = [1e-6, 1e-5, 1e-4, 1e-3]
    assert hist.history["beta"] == pytest.approx(expected, rel=1e-6)
    assert [s[0] for s in seen] == pytest.approx(expected, rel=1e-6)
    assert all(len(s) == 1 for s in seen)  # one value on every layer
    assert model.get_layer("inner").get_layer("inner_d").beta == pytest.approx(1e-3, rel=1e-6)
    assert sched.values == pytest.approx(dict(enumerate(expected)), rel=1e-6)


def test_set_beta_and_scheduler_need_h_layers():
    assert set_beta(tiny_model(), 2e-5) == 3
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no H-layers"):
        BetaScheduler(1e-5).set_model(plain)


# --------------------------------------------------------------------------- Pareto front


def brute_front(points, mode):
    """Reference: the points no other point dominates (first of equal points kept)."""
    out = []
    for i, p in enumerate(points):
        if any(dominates(q, p, mode) for q in points):
            continue
        if any(q == p for q in points[:i]):
            continue
        out.append(i)
    return out


def test_front_keeps_only_non_dominated_epochs():
    # (accuracy, EBOPs) per epoch
    points = [(0.5, 100), (0.6, 120), (0.55, 90), (0.6, 120), (0.7, 200), (0.65, 90), (0.4, 50), (0.7, 150)]
    front = ParetoFront("val_accuracy")
    for epoch, (acc, ebops) in enumerate(points):
        front.add(epoch, acc, ebops)
    kept = sorted(e.epoch for e in front.entries)
    assert kept == brute_front(points, "max") == [5, 6, 7]
    assert [e.ebops for e in front.front] == [50, 90, 150]  # sorted by EBOPs


def test_front_random_points_match_brute_force():
    rng = np.random.default_rng(3)
    for mode, metric in (("max", "val_accuracy"), ("min", "val_loss")):
        points = [(float(a), float(b)) for a, b in zip(rng.integers(0, 6, 40) / 5, rng.integers(1, 8, 40))]
        front = ParetoFront(metric)
        assert front.mode == mode
        for epoch, (m, b) in enumerate(points):
            front.add(epoch, m, b)
        assert sorted(e.epoch for e in front.entries) == brute_front(points, mode)


def test_metric_mode():
    assert metric_mode("val_accuracy") == "max"
    assert metric_mode("val_loss") == "min"
    assert metric_mode("mae") == "min"
    assert metric_mode("auc") == "max"


def test_finetune_saves_only_front_members(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    x, y = tiny_data()
    x_before, y_before = x.copy(), y.copy()
    out = tmp_path / "pareto"
    hist, front = finetune(model, x, y, validation_data=(x[:32], y[:32]), epochs=5, beta="log:1e-6:1e-2",
                           batch_size=32, pareto_dir=out, verbose=0)
    np.testing.assert_array_equal(x, x_before)  # the user's arrays are untouched
    np.testing.assert_array_equal(y, y_before)
    # compiled by finetune: integer labels -> sparse categorical cross-entropy + accuracy
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert hist.history["beta"] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2], rel=1e-6)
    points = list(zip(hist.history["val_accuracy"], hist.history["bops"]))
    assert sorted(e.epoch for e in front) == brute_front(points, "max")
    files = sorted(f for f in os.listdir(out) if f.endswith(".keras"))
    assert files == sorted(os.path.basename(e.path) for e in front)
    summary = json.loads((out / FRONT_FILE).read_text())
    assert summary["metric"] == "val_accuracy" and len(summary["points"]) == 5
    assert (out / "history.json").exists()
    # a saved member loads (safe mode) and predicts like the model had at that epoch
    best = front[-1]
    loaded = best.load()
    assert loaded.get_layer("d1").beta == pytest.approx(best.logs["beta"], rel=1e-6)


def test_finetune_in_memory_front_and_restore():
    model = tiny_model()
    x, y = tiny_data()
    _, front = finetune(model, x, y, epochs=3, batch_size=32, verbose=0)
    assert front and all(e.path is None and e.weights is not None for e in front)
    front[0].restore(model)
    for w, v in zip(model.get_weights(), front[0].weights):
        np.testing.assert_array_equal(np.asarray(w), v)
    with pytest.raises(ValueError, match="pareto_dir"):
        front[0].load()


def test_finetune_float_targets_use_mse_and_keeps_user_compile():
    model = tiny_model(n_out=2)
    x, _ = tiny_data()
    y = np.stack([x[:, 0], x[:, 1] * 2], axis=1)
    hist, front = finetune(model, x, y, epochs=2, batch_size=32, verbose=0)
    assert isinstance(model.loss, keras.losses.MeanSquaredError)
    assert front[0].logs and math.isfinite(front[0].metric)
    assert "loss" in hist.history
    # a compiled model keeps its own compile settings
    model2 = tiny_model(n_out=2)
    model2.compile(keras.optimizers.SGD(0.01), "mae")
    finetune(model2, x, y, epochs=1, metric="loss", verbose=0)
    assert model2.loss == "mae"


def test_finetune_verbose_prints_progress(capsys):
    model = tiny_model()
    x, y = tiny_data(64)
    finetune(model, x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "epoch   1/2" in out and "bops" in out


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epochs=0), ValueError, "epochs"),
        (dict(epochs=1.5), ValueError, "epochs"),
        (dict(epochs=1, batch_size=0), ValueError, "batch_size"),
        (dict(epochs=1, y=None), ValueError, "y"),
        (dict(epochs=1, beta="cubic:1:2"), ValueError, "beta"),
        (dict(epochs=1, beta=[1]), TypeError, "beta"),
        (dict(epochs=1, metric="val_accuracy"), ValueError, "validation_data"),
        (dict(epochs=1, validation_data=([1, 2],)), ValueError, "validation_data"),
        (dict(epochs=1, learning_rate=-1), ValueError, "learning_rate"),
        (dict(epochs=1, verbose=5), ValueError, "verbose"),
        (dict(epochs=1, callbacks=["x"]), TypeError, "callbacks"),
    ],
)
def test_finetune_argument_errors(kwargs, error, match):
    x, y = tiny_data(16)
    kwargs = {"y": y, "verbose": 0, **kwargs}
    with pytest.raises(error, match=match):
        finetune(tiny_model(), x, **kwargs)


def test_finetune_data_errors():
    model = tiny_model()
    x, y = tiny_data(16)
    with pytest.raises(ValueError, match="x has 16 samples but y has 15"):
        finetune(model, x, y[:-1], epochs=1)
    bad = x.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        finetune(model, bad, y, epochs=1)
    with pytest.raises(ValueError, match="expects samples of shape"):
        finetune(model, x[:, :4], y, epochs=1)
    with pytest.raises(ValueError, match="1 input"):
        finetune(model, [x, x], y, epochs=1)
    with pytest.raises(ValueError, match="label 7"):
        finetune(model, x, np.full(16, 7), epochs=1)
    with pytest.raises(ValueError, match="no HGQ layers"):
        finetune(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]), x, y, epochs=1)
    with pytest.raises(TypeError, match="keras.Model"):
        finetune("model.keras", x, y, epochs=1)
    with pytest.raises(TypeError, match="not numeric"):
        finetune(model, x, np.array(["a"] * 16), epochs=1)
    assert not model.compiled  # nothing was started


# --------------------------------------------------------------------------- learning-rate decay


def test_finetune_decays_the_learning_rate_over_the_run_unless_told_not_to():
    """A model finetune compiles ends at a tenth of its learning rate (cosine); lr_decay=None keeps it."""
    from hgq_rewrite.finetune.loss import FINAL_LR_FRACTION

    x, y = _lr_data()
    decayed = _lr_model()
    finetune(decayed, x, y, epochs=2, batch_size=32, learning_rate=1e-2, verbose=0)  # 4 steps per epoch
    schedule = keras.optimizers.schedules.deserialize(decayed.optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay) and schedule.decay_steps == 8
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(decayed.optimizer.learning_rate) == pytest.approx(1e-2 * FINAL_LR_FRACTION)  # after 8 steps

    constant = _lr_model()
    finetune(constant, x, y, epochs=2, batch_size=32, learning_rate=1e-2, lr_decay=None, verbose=0)
    assert float(constant.optimizer.learning_rate) == pytest.approx(1e-2)

    with pytest.raises(ValueError, match="lr_decay must be 'cosine' or None"):
        finetune(_lr_model(), x, y, epochs=1, lr_decay="linear", verbose=0)


def _lr_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    return keras.Model(inp, HDense(3)(HQuantize()(inp)))


def _conv_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = HQuantize()(keras.layers.Reshape((8, 1))(inp))
    x = PFlatten()(HConv1D(2, 3, activation="relu")(x))
    return keras.Model(inp, HDense(3)(x))


def _lr_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


def _kernel_at_start(model, x, y, epochs, **kwargs):
    dense = [layer for layer in h_layers(model) if hasattr(layer, "kernel")][0]
    seen = {}

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["kernel"] = np.array(dense.kernel)

    before = np.array(dense.kernel)
    finetune(model, x, y, epochs=epochs, batch_size=64, callbacks=[AtStart()], verbose=0, **kwargs)
    return before, seen["kernel"]


def test_finetune_auto_shrink_only_on_the_first_long_fine_tune_of_a_trained_model():
    """shrink="auto" (default) halves a trained MLP's weights on its first fine-tune of >= 15 epochs; not a second
    fine-tune, a shorter run, a freshly initialised model, a model with a convolution, or with shrink=None."""
    from hgq_rewrite.finetune.api import AUTO_SHRINK_MIN_EPOCHS

    x, y = _lr_data()

    def trained(conv=False):
        model = _conv_model() if conv else _lr_model()
        dense = [layer for layer in h_layers(model) if hasattr(layer, "kernel")][0]
        dense.kernel.assign(np.array(dense.kernel) * 4.0)  # grown past its Glorot size, as training does
        return model

    model = trained()
    before, start = _kernel_at_start(model, x, y, AUTO_SHRINK_MIN_EPOCHS)
    np.testing.assert_array_equal(start, before * 0.5)
    before, start = _kernel_at_start(model, x, y, AUTO_SHRINK_MIN_EPOCHS)  # second fine-tune: compiled
    np.testing.assert_array_equal(start, before)
    for model, epochs, kwargs in ((trained(), AUTO_SHRINK_MIN_EPOCHS - 1, {}),
                                  (trained(), AUTO_SHRINK_MIN_EPOCHS, {"shrink": None}),
                                  (_lr_model(), AUTO_SHRINK_MIN_EPOCHS, {}),
                                  (trained(conv=True), AUTO_SHRINK_MIN_EPOCHS, {})):
        before, start = _kernel_at_start(model, x, y, epochs, **kwargs)
        np.testing.assert_array_equal(start, before)


def test_finetune_shrink_starts_training_from_scaled_kernels_and_biases():
    """shrink=0.5: training starts from half the trained weights; bad factors are refused before anything changes."""
    x, y = _lr_data()
    model = _lr_model()
    dense = [layer for layer in h_layers(model) if hasattr(layer, "kernel")][0]
    dense.bias.assign(np.full(dense.bias.shape, 0.25, "float32"))
    kernel, bias = np.array(dense.kernel), np.array(dense.bias)
    seen = {}

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["kernel"], seen["bias"] = np.array(dense.kernel), np.array(dense.bias)

    finetune(model, x, y, epochs=1, shrink=0.5, callbacks=[AtStart()], verbose=0)
    np.testing.assert_array_equal(seen["kernel"], kernel * 0.5)
    np.testing.assert_array_equal(seen["bias"], bias * 0.5)
    frozen = _lr_model()
    frozen_dense = [layer for layer in h_layers(frozen) if hasattr(layer, "kernel")][0]
    frozen_dense.trainable = False
    kept = np.array(frozen_dense.kernel)
    finetune(frozen, x, y, epochs=1, shrink=0.5, verbose=0)
    np.testing.assert_array_equal(np.array(frozen_dense.kernel), kept)  # a frozen layer is not shrunk
    for bad in (0, 1, 1.5, -0.5, True, "half"):
        before = [np.array(w) for w in model.get_weights()]
        with pytest.raises(ValueError, match="shrink must be a number between 0 and 1"):
            finetune(model, x, y, epochs=1, shrink=bad, verbose=0)
        for w, b in zip(model.get_weights(), before):
            np.testing.assert_array_equal(w, b)


def test_finetune_warns_when_beta_prunes_the_model_to_nothing():
    """A beta too large for the model ends with every multiply pruned (0 EBOPs: the output no longer depends
    on the input); finetune says so instead of returning quietly."""
    model = tiny_model()
    x, y = tiny_data()
    with pytest.warns(UserWarning, match=r"ended at 0 EBOPs.*beta"):
        history, _ = finetune(model, x, y, epochs=12, batch_size=8, beta=1.0, learning_rate=0.05, verbose=0)
    assert history.history["ebops"][0] > 0 and history.history["ebops"][-1] == 0


def test_finetune_does_not_warn_about_pruning_at_a_sane_beta():
    import warnings

    model = tiny_model()
    x, y = tiny_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        history, _ = finetune(model, x, y, epochs=3, batch_size=32, beta=1e-6, verbose=0)
    assert history.history["ebops"][-1] > 0


def test_progress_bar_runs_beside_training_and_only_moves_forward():
    """Keras may hand its batch updates to worker threads, out of order: the bar never goes back."""
    import io

    from rich.console import Console

    from hgq_rewrite.finetune.progress import RichProgress

    bar = RichProgress(console=Console(file=io.StringIO()))
    assert bar.async_safe
    bar.set_params({"epochs": 2, "steps": 10})
    bar.on_train_begin()
    bar.on_epoch_begin(1)
    bar.on_train_batch_end(6, {"loss": 0.5})
    bar.on_train_batch_end(3, {"loss": 0.7})
    assert bar.progress.tasks[0].completed == 17
    bar.on_train_end()

"""Issue 13: nothing the user has is lost, and no bad value is accepted silently.

Every test here failed before its fix: failed saves that destroyed the previous file, outputs that
replaced inputs, finetune runs that mixed with earlier ones or left the model broken, non-finite
beta values and unchecked quantizer fields that trained on nonsense, and errors that named nothing.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.cli import main
from hgq_rewrite.finetune import FRONT_FILE, ParetoFront, finetune
from hgq_rewrite.layers import HDense, HQuantize
from hgq_rewrite.quantizers import set_default_kq_conf, set_default_paq_conf
from hgq_rewrite.quantizers.config import validate_config
from hgq_rewrite.rewrite.errors import ConfigError

ERROR_PREFIX = "hgq-rewrite: error: "


def tiny_hgq(n_out=3, name="tiny"):
    inp = keras.Input((6,), name="x")
    x = HQuantize(name="q")(inp)
    x = HDense(8, activation="relu", beta=1e-6, name="d1")(x)
    return keras.Model(inp, HDense(n_out, name="d2")(x), name=name)


def tiny_float(name="tiny_float"):
    return keras.Sequential(
        [keras.Input((6,), name="features"), keras.layers.Dense(8, activation="relu", name="dense1"),
         keras.layers.Dense(3, name="out")],
        name=name,
    )


def tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)).astype("int64")
    return x, y


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("hgq-rewrite: warning")]
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def float_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    keras.utils.set_random_seed(0)
    model = tiny_float()
    model(np.zeros((1, 6), "float32"))
    path = d / "float.keras"
    model.save(path)
    x, y = tiny_data()
    np.savez(d / "train.npz", x=x, y=y)
    return path


@pytest.fixture(scope="module")
def q_file(float_file):
    out = float_file.parent / "q.keras"
    assert main(["quantize", str(float_file), "-o", str(out)]) == 0
    return out


def _failing_save(calls=None):
    """A stand-in for keras.Model.save that truncates its target, writes a little, then fails (disk full)."""

    def save(self, filepath, *args, **kwargs):
        if calls is not None:
            calls.append(os.fspath(filepath))
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    return save


# --------------------------------------------------------------------------- 1. atomic writes


def test_failed_model_save_keeps_the_previous_file(tmp_path, monkeypatch):
    from hgq_rewrite import files

    target = tmp_path / "good.keras"
    model = tiny_hgq()
    files.save_model(model, target)
    before = target.read_bytes()
    monkeypatch.setattr(keras.Model, "save", _failing_save())
    with pytest.raises(OSError, match="No space"):
        files.save_model(model, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["good.keras"]  # no temporary file left behind


def test_failed_json_write_keeps_the_previous_file(tmp_path, monkeypatch):
    front = ParetoFront("loss", tmp_path)
    front.write_summary({"loss": [1.0]})
    before = (tmp_path / FRONT_FILE).read_text()

    def broken_dump(obj, fp, **kwargs):
        fp.write('{"metric": ')
        raise OSError(28, "No space left on device")

    from hgq_rewrite import files

    monkeypatch.setattr(files.json, "dump", broken_dump)
    with pytest.raises(OSError):
        front.write_summary({"loss": [1.0, 2.0]})
    assert (tmp_path / FRONT_FILE).read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["front.json", "history.json"]


def test_cli_quantize_failed_save_keeps_the_previous_output(float_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "good.keras"
    assert main(["quantize", str(float_file), "-o", str(out)]) == 0
    before = out.read_bytes()
    monkeypatch.setattr(keras.Model, "save", _failing_save())
    code, _, err = run(capsys, "quantize", float_file, "-o", out)
    assert_one_line_error(code, err, "No space left")
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["good.keras"]


def test_cli_quantize_disk_full_keeps_the_previous_output(float_file, tmp_path):
    """The issue's reproduction: a real file-size limit (ulimit -f) during the save."""
    out = tmp_path / "good.keras"
    assert main(["quantize", str(float_file), "-o", str(out)]) == 0
    before = out.read_bytes()
    limit_kb = max(1, len(before) // 1024 // 2)  # half the file: the write must fail
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_kb * 1024}, "
            "resource.getrlimit(resource.RLIMIT_FSIZE)[1])); from hgq_rewrite.cli import main; "
            f"sys.exit(main(['quantize', {str(float_file)!r}, '-o', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 2, proc.stderr
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["good.keras"]


def test_every_finetune_and_export_write_goes_through_a_temporary_file(q_file, tmp_path, monkeypatch, capsys):
    """last.keras, epochNNNN.keras and proxy.keras are written next to their target, then renamed."""
    saved = []
    real_save = keras.Model.save

    def recording_save(self, filepath, *args, **kwargs):
        saved.append(os.fspath(filepath))
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", recording_save)
    out = tmp_path / "ft"
    code, _, err = run(capsys, "finetune", q_file, "--data", q_file.parent / "train.npz", "--epochs", 2, "-o", out)
    assert code == 0, err
    from hgq_rewrite.export.project import export_project as export

    qmodel = keras.saving.load_model(out / "last.keras")
    with pytest.raises(Exception):  # noqa: B017 - stop before hls4ml: only the proxy save matters here
        monkeypatch.setattr("hgq_rewrite.export.project.convert_proxy", _raise)
        export(qmodel, [tiny_data()[0]], str(tmp_path / "exp"), compile=False, log=lambda m: None)
    finals = {"last.keras", "proxy.keras"} | {f for f in os.listdir(out) if f.startswith("epoch")}
    assert saved and not any(os.path.basename(p) in finals for p in saved), saved
    assert all(os.path.dirname(p) in (str(out), str(tmp_path / "exp")) for p in saved)
    assert (tmp_path / "exp" / "proxy.keras").exists()
    leftovers = [f for f in os.listdir(out) if f.startswith(".")]
    assert not leftovers


def _raise(*args, **kwargs):
    raise RuntimeError("stop here")


# --------------------------------------------------------------------------- 2. output == input


def test_cli_quantize_refuses_to_overwrite_its_input(float_file, tmp_path, capsys, monkeypatch):
    src = tmp_path / "m.keras"
    shutil.copy(float_file, src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in ("m.keras", "./m.keras", str(src), "sub/../m.keras"):
        os.makedirs(tmp_path / "sub", exist_ok=True)
        code, _, err = run(capsys, "quantize", "m.keras", "-o", out)
        assert_one_line_error(code, err, "is the input model")
    os.link(src, tmp_path / "hard.keras")  # the same file under another name
    code, _, err = run(capsys, "quantize", "m.keras", "-o", "hard.keras")
    assert_one_line_error(code, err, "is the input model")
    os.symlink(src, tmp_path / "link.keras")
    code, _, err = run(capsys, "quantize", "link.keras", "-o", "m.keras")
    assert_one_line_error(code, err, "is the input model")
    assert src.read_bytes() == before


# --------------------------------------------------------------------------- 3. finetune into an earlier run


def test_cli_finetune_refuses_a_non_empty_run_folder(q_file, tmp_path, capsys):
    data = q_file.parent / "train.npz"
    out = tmp_path / "run"
    code, _, err = run(capsys, "finetune", q_file, "--data", data, "--epochs", 2, "-o", out)
    assert code == 0, err
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    code, _, err = run(capsys, "finetune", q_file, "--data", data, "--epochs", 1, "-o", out)
    assert_one_line_error(code, err, str(out), "--overwrite")
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before

    # --overwrite clears the earlier run first: only the new run's files remain, all listed
    code, _, err = run(capsys, "finetune", q_file, "--data", data, "--epochs", 1, "-o", out, "--overwrite")
    assert code == 0, err
    summary = json.loads((out / "front.json").read_text())
    kept = sorted(f for f in os.listdir(out) if f.startswith("epoch"))
    assert kept == sorted(os.path.basename(e["path"]) for e in summary["front"]) == ["epoch0001.keras"]
    assert len(summary["points"]) == 1


def test_cli_finetune_overwrite_never_deletes_files_it_did_not_write(q_file, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "front.json").write_text("{}")
    code, _, err = run(capsys, "finetune", q_file, "--data", q_file.parent / "train.npz", "--epochs", 1, "-o", out,
                       "--overwrite")
    assert_one_line_error(code, err, "notes.txt", "not written by finetune")
    assert (out / "notes.txt").read_text() == "my notes" and (out / "front.json").read_text() == "{}"


def test_finetune_pareto_dir_checks(tmp_path):
    x, y = tiny_data(32)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match="pareto_dir .*a_file.* is a file"):
        finetune(tiny_hgq(), x, y, epochs=1, pareto_dir=a_file, verbose=0)
    assert a_file.read_text() == "keep me"
    run_dir = tmp_path / "run"
    finetune(tiny_hgq(), x, y, epochs=1, pareto_dir=run_dir, verbose=0)
    with pytest.raises(ValueError, match="overwrite=True"):
        finetune(tiny_hgq(), x, y, epochs=1, pareto_dir=run_dir, verbose=0)
    _, front = finetune(tiny_hgq(), x, y, epochs=1, pareto_dir=run_dir, verbose=0, overwrite=True)
    assert sorted(f for f in os.listdir(run_dir) if f.endswith(".keras")) == [os.path.basename(front[0].path)]


# --------------------------------------------------------------------------- 5. finetune leaves the model as it was


def test_finetune_float_class_ids_are_refused_before_compiling():
    model = tiny_hgq(n_out=3)
    x, y = tiny_data(32)
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"y .*shape \(32,\).*3 outputs.*integer"):
        finetune(model, x, y.astype("float32"), epochs=1, verbose=0)
    assert not model.compiled
    assert_same_weights(weights_of(model), before)
    finetune(model, x, y, epochs=1, verbose=0)  # the retry with integer labels works
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)


def test_finetune_failure_restores_weights_and_compile_state():
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("boom")

    x, y = tiny_data(32)
    model = tiny_hgq()
    before = weights_of(model)
    with pytest.raises(RuntimeError, match="boom"):
        finetune(model, x, y, epochs=3, beta=1e-3, callbacks=[Boom()], verbose=0)
    assert not model.compiled and getattr(model, "optimizer", None) is None
    assert_same_weights(weights_of(model), before)  # beta and ranges included

    model2 = tiny_hgq()
    model2.compile(keras.optimizers.Adam(1e-3), "mse")
    model2.fit(x, np.zeros((32, 3), "float32"), epochs=1, verbose=0)  # optimizer built
    before2, opt_before = weights_of(model2), [np.array(v) for v in model2.optimizer.variables]
    with pytest.raises(RuntimeError, match="boom"):
        finetune(model2, x, np.zeros((32, 3), "float32"), epochs=3, callbacks=[Boom()], verbose=0)
    assert model2.compiled and model2.loss == "mse"
    assert_same_weights(weights_of(model2), before2)
    assert_same_weights([np.array(v) for v in model2.optimizer.variables], opt_before)


# --------------------------------------------------------------------------- 6. beta and NaN losses


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "1e-5", True])
def test_quantize_and_explain_refuse_non_finite_beta(bad):
    model = tiny_float()
    model(np.zeros((1, 6), "float32"))
    for fn in (hr.quantize, hr.explain):
        with pytest.raises(ConfigError, match="beta must be a finite number >= 0"):
            fn(model, beta=bad)


@pytest.mark.parametrize("text", ["defaults: {beta: .nan}", "defaults: {beta: .inf}", "names: {dense1: {beta: .nan}}",
                                  "types: {Dense: {beta: -.inf}}"])
def test_config_files_refuse_non_finite_beta(tmp_path, text):
    model = tiny_float()
    model(np.zeros((1, 6), "float32"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError, match="beta must be a finite number >= 0"):
        hr.quantize(model, str(cfg))


def test_layers_refuse_non_finite_beta():
    for bad in (float("nan"), float("inf"), -1e-6):
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            HDense(3, beta=bad)
    model = tiny_hgq()
    layer = model.get_layer("d1")
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="layer 'd1'.*beta must be a finite number >= 0"):
            layer.beta = bad
    assert layer.beta == pytest.approx(1e-6)


def test_finetune_stops_with_a_clear_error_when_the_loss_turns_nan():
    x, _ = tiny_data(32)
    model = tiny_hgq()
    model.compile(keras.optimizers.Adam(), loss=lambda t, p: keras.ops.mean(p) * float("nan"))
    before = weights_of(model)
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 1, batch 1.*restored"):
        finetune(model, x, np.zeros((32, 3), "float32"), epochs=3, verbose=0)
    assert_same_weights(weights_of(model), before)
    assert all(np.all(np.isfinite(np.asarray(w))) for w in model.trainable_weights)


def test_cli_finetune_exits_non_zero_when_the_loss_overflows(q_file, tmp_path, capsys):
    data = tmp_path / "huge.npz"
    x, _ = tiny_data(32)
    np.savez(data, x=x, y=np.full((32, 3), 3e38, "float32"))
    code, _, err = run(capsys, "finetune", q_file, "--data", data, "--epochs", 2, "-o", tmp_path / "ft")
    assert_one_line_error(code, err, "loss became inf", "epoch 1")


# --------------------------------------------------------------------------- 7. quantizer field values


@pytest.mark.parametrize(
    "conf, fragment",
    [
        ({"init_bw": -3}, "init_bw"),
        ({"init_bw": "4"}, "init_bw"),
        ({"init_bw": float("nan")}, "init_bw"),
        ({"init_bw": True}, "init_bw"),
        ({"trainable": "false"}, "trainable"),
        ({"trainable": 0}, "trainable"),
        ({"l1": -1}, "l1"),
        ({"l1": float("inf")}, "l1"),
        ({"l1": "1e-6"}, "l1"),
        ({"granularity": "per-channel"}, "granularity"),
        ({"granularity": [0.5]}, "granularity"),
        ({"granularity": [1, 1]}, "granularity"),
        ({"bw_clip": (5, 1)}, "bw_clip"),
        ({"bw_clip": ("a", 2)}, "bw_clip"),
        ({"bw_clip": (1, 2, 3)}, "bw_clip"),
        ({"bw_clip": 8}, "bw_clip"),
        ({"bw_clip": (float("-inf"), 4)}, "bw_clip"),
        ({"rounding": "round"}, "rounding"),
        ({"rounding": ["RND"]}, "rounding"),
    ],
)
def test_quantizer_field_values_are_checked(conf, fragment):
    with pytest.raises(ValueError, match=f"where: .*{fragment}"):
        validate_config(conf, "where")
    # the same check guards the config dict of quantize, naming the rule and the field
    model = tiny_float()
    model(np.zeros((1, 6), "float32"))
    user = {"names": {"dense1": {"kernel": dict(conf)}}}
    copy = json.loads(json.dumps(user)) if "nan" not in repr(conf) and "inf" not in repr(conf) else None
    with pytest.raises(ConfigError, match=f"names:dense1: kernel.*{fragment}"):
        hr.quantize(model, user)
    if copy is not None:
        assert json.loads(json.dumps(user)) == copy  # the user's dict is not modified
    with pytest.raises(ValueError, match=f"set_default_kq_conf.*{fragment}"):
        set_default_kq_conf(**conf)
    with pytest.raises(ValueError, match=f"set_default_paq_conf.*{fragment}"):
        set_default_paq_conf(conf)
    assert hr.get_default_kq_conf()["init_bw"] == 4.0  # nothing was half-applied


def test_valid_quantizer_fields_still_pass():
    out = validate_config({"init_bw": np.float32(3), "trainable": np.bool_(False), "l1": 0, "granularity": [0, -1],
                           "bw_clip": [-8, np.int64(12)], "rounding": "TRN"}, "where")
    assert out["init_bw"] == 3.0 and out["trainable"] is False and out["granularity"] == (0, -1)
    assert out["bw_clip"] == (-8.0, 12.0)
    assert validate_config({"init_bw": 0}, "where", role="activation")["init_bw"] == 0.0


def test_kernel_init_bw_must_keep_a_bit():
    with pytest.raises(ValueError, match="init_bw"):
        validate_config({"init_bw": 0}, "where", role="kernel")


def test_granularity_axes_must_exist_in_the_tensor():
    with pytest.raises(ValueError, match=r"layer 'd'.*granularity \(5,\).*rank-2"):
        HDense(3, kq_conf={"granularity": [5]}, name="d").build((None, 6))
    model = tiny_float()
    model(np.zeros((1, 6), "float32"))
    with pytest.raises(ValueError, match=r"dense1.*granularity \(5,\).*rank-2"):
        hr.quantize(model, {"names": {"dense1": {"kernel": {"granularity": [5]}}}})


def test_yaml_init_bw_string_names_the_field(float_file, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("names:\n  dense1: {kernel: {init_bw: '4'}}\n")
    code, _, err = run(capsys, "quantize", float_file, "-o", tmp_path / "o.keras", "--config", cfg)
    assert_one_line_error(code, err, "names:dense1", "init_bw", "'4'")
    assert not (tmp_path / "o.keras").exists()


# --------------------------------------------------------------------------- 8. absurdly wide formats


def test_absurdly_wide_traced_formats_warn(q_file, tmp_path, capsys):
    from hgq_rewrite.formats import wide_formats

    model = keras.saving.load_model(q_file)
    x, _ = tiny_data(32)
    hr.trace_minmax(model, x)
    assert wide_formats(model) == []
    calib = tmp_path / "huge.npz"
    np.savez(calib, x=x * 1e30)
    hr.trace_minmax(model, x * 1e30)
    wide = wide_formats(model)
    assert wide and max(bits for _, bits in wide) > 100
    code, out, err = run(capsys, "report", q_file, "--calib", calib, "--no-plots")
    assert code == 0, err
    assert "hgq-rewrite: warning:" in err and "bits wide" in err and "'features_quantizer'" in err


# --------------------------------------------------------------------------- unclear errors


def test_quantize_names_a_non_model_argument():
    for fn in (hr.quantize, hr.explain):
        with pytest.raises(TypeError, match="model must be a keras.Model .*got ndarray"):
            fn(np.zeros(3))


def test_finetune_metric_typo_is_caught_before_training():
    model = tiny_hgq()
    x, y = tiny_data(32)
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"metric 'accurracy'.*did you mean 'accuracy'"):
        finetune(model, x, y, epochs=2, metric="accurracy", verbose=0)
    assert_same_weights(weights_of(model), before)
    assert not model.compiled


def test_finetune_refuses_datasets_with_a_clear_error():
    tf = pytest.importorskip("tensorflow")
    x, y = tiny_data(32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(TypeError, match="x is a Dataset.*numpy arrays"):
        finetune(tiny_hgq(), ds, y, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="calibration_data is a generator"):
        finetune(tiny_hgq(), x, y, epochs=1, calibration_data=(a for a in [x]), verbose=0)


def test_numpy_scalars_are_accepted():
    x, y = tiny_data(32)
    model = tiny_hgq()
    finetune(model, x, y, epochs=np.int64(1), batch_size=np.int64(16), learning_rate=np.float32(1e-3),
             beta=np.float32(1e-6), calibration_data=x, verbose=0)
    cb = hr.CalibratedBOPs(x, bsz=np.int64(16))
    cb.set_model(model)
    logs = {}
    cb.on_epoch_end(0, logs)
    assert math.isfinite(logs["bops"])


def test_cli_corrupt_keras_file_is_named(tmp_path, float_file, capsys):
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(float_file.read_bytes()[:200])
    code, _, err = run(capsys, "explain", bad)
    assert_one_line_error(code, err, "corrupt.keras", "not a valid .keras archive")
    bad.write_bytes(b"not a zip at all")
    code, _, err = run(capsys, "quantize", bad, "-o", tmp_path / "o.keras")
    assert_one_line_error(code, err, "corrupt.keras", "not a valid .keras archive")


def test_wide_warning_helper_is_quiet_on_untraced_models():
    from hgq_rewrite.formats import warn_wide_formats

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_wide_formats(tiny_hgq()) == []
    assert not [w for w in caught if issubclass(w.category, UserWarning)]


def test_failed_plot_keeps_the_previous_png(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    from hgq_rewrite.report import layer_stats, plot_bit_histograms

    stats = layer_stats(tiny_hgq())
    path = plot_bit_histograms(stats, str(tmp_path / "bits.png"), title="t")
    before = (tmp_path / "bits.png").read_bytes()

    def broken_savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError):
        plot_bit_histograms(stats, path, title="t")
    assert (tmp_path / "bits.png").read_bytes() == before
    assert os.listdir(tmp_path) == ["bits.png"]


def test_a_failed_finetune_closes_its_progress_bar(monkeypatch):
    import importlib

    ft = importlib.import_module("hgq_rewrite.finetune")
    bars = []
    real_init = ft.RichProgress.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        bars.append(self)

    monkeypatch.setattr(ft.RichProgress, "__init__", init)
    x, _ = tiny_data(32)
    model = tiny_hgq()
    model.compile(keras.optimizers.Adam(), loss=lambda t, p: keras.ops.mean(p) * float("nan"))
    with pytest.raises(FloatingPointError):
        finetune(model, x, np.zeros((32, 3), "float32"), epochs=2, verbose=1)
    assert bars and bars[0].progress is not None and not bars[0].progress.live.is_started


def test_trace_minmax_names_bad_calibration_data_and_accepts_numpy_scalars():
    import tensorflow as tf

    q = hr.quantize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    x = np.random.default_rng(0).normal(0, 1, (16, 3))
    with pytest.raises(ValueError, match="calibration data 0 is a .*Dataset; pass numpy arrays"):
        hr.trace_minmax(q, tf.data.Dataset.from_tensor_slices(x))
    with pytest.raises(ValueError, match="beyond float32's range"):
        hr.trace_minmax(q, x * 1e300)
    hr.trace_minmax(q, x, bsz=np.int64(8), cover_factor=np.float32(1.5))

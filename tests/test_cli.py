"""The hgq-rewrite command line: every subcommand on a tiny model, and its error paths (one line, exit 2)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from hgq_rewrite.cli import main

ERROR_PREFIX = "hgq-rewrite: error: "


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny float model, its quantized version and data files."""
    d = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,), name="features"),
            keras.layers.Dense(8, name="dense1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Activation("relu", name="relu1"),
            keras.layers.Dense(3, name="out"),
        ],
        name="tiny_float",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)).astype("int64")
    model(x[:2])
    paths = {
        "float": str(d / "float.keras"),
        "train": str(d / "train.npz"),
        "val": str(d / "val.npz"),
        "calib": str(d / "calib.npz"),
        "cfg": str(d / "cfg.yaml"),
        "dir": d,
    }
    model.save(paths["float"])
    np.savez(paths["train"], x=x, y=y)
    np.savez(paths["val"], x=x[:32], y=y[:32])
    np.savez(paths["calib"], x=x[:64])
    with open(paths["cfg"], "w") as f:
        f.write("types:\n  Dense: {beta: 2.0e-6}\nnames:\n  out: {kernel: {init_bw: 6}}\n")
    return paths


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def qmodel_path(files):
    out = str(files["dir"] / "q.keras")
    assert main(["quantize", files["float"], "-o", out, "--config", files["cfg"], "--beta", "1e-6"]) == 0
    return out


# --------------------------------------------------------------------------- quantize / explain


def test_quantize_writes_an_hgq_model(files, qmodel_path, capsys):
    out = str(files["dir"] / "q2.keras")
    code, stdout, err = run(capsys, "quantize", files["float"], "-o", out, "--config", files["cfg"])
    assert code == 0, err
    assert "layers converted" in stdout and out in stdout
    q = keras.saving.load_model(out, safe_mode=True)
    assert q.get_layer("dense1").beta == pytest.approx(2e-6)  # types:Dense from the YAML config
    assert type(q.get_layer("dense1")).__name__ == "HDenseBatchNorm"
    assert q.get_layer("out").kq.config["init_bw"] == 6


def test_explain_prints_the_plan(files, capsys):
    code, out, err = run(capsys, "explain", files["float"], "--config", files["cfg"])
    assert code == 0, err
    assert "dense1" in out and "types:Dense" in out and "names:out" in out
    code, out, _ = run(capsys, "explain", files["float"], "--json")
    assert code == 0
    plan = json.loads(out)
    assert {e["path"] for e in plan["layers"]} >= {"dense1", "bn1", "relu1", "out"}


@pytest.mark.parametrize(
    "make_argv, fragments",
    [
        (lambda f: ["quantize", "missing.keras", "-o", "o.keras"], ["does not exist"]),
        (lambda f: ["quantize", f["train"], "-o", "o.keras"], ["not a .keras file"]),
        (lambda f: ["quantize", f["float"]], ["required", "-o/--output"]),
        (lambda f: ["quantize", f["float"], "-o", "o.keras", "--beta", "-1"], ["--beta", ">= 0"]),
        (lambda f: ["quantize", f["float"], "-o", "o.txt"], ["must end with .keras"]),
        (lambda f: ["quantize", f["float"], "-o", "o.keras", "--config", "nope.yaml"], ["nope.yaml", "does not exist"]),
        (lambda f: ["explain", f["float"], "--config", f["bad_section"]], ["unknown section", "typse"]),
        (lambda f: ["explain", f["float"], "--config", f["bad_yaml"]], ["annot parse"]),
        (lambda f: ["quantize", f["float"], "-o", "o.keras", "--config", f["miss"]], ["match no layer", "dense_9"]),
        (lambda f: ["frobnicate"], ["invalid choice"]),
        (lambda f: ["demo", "--seed", "one"], ["--seed", "invalid int value"]),
    ],
)
def test_quantize_explain_errors(files, capsys, tmp_path, monkeypatch, make_argv, fragments):
    f = dict(files)
    f["bad_section"] = str(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("typse: {Dense: {beta: 1}}\n")
    f["bad_yaml"] = str(tmp_path / "broken.yaml")
    (tmp_path / "broken.yaml").write_text("types: [unclosed\n")
    f["miss"] = str(tmp_path / "miss.yaml")
    (tmp_path / "miss.yaml").write_text("names:\n  dense_9: {beta: 1.0e-5}\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *make_argv(f))
    assert_one_line_error(code, err, *fragments)
    assert not os.path.exists(tmp_path / "o.keras")


def test_yaml_is_loaded_safely(files, capsys, tmp_path):
    cfg = tmp_path / "evil.yaml"
    cfg.write_text("types: !!python/object/apply:os.system ['echo hacked']\n")
    code, out, err = run(capsys, "explain", files["float"], "--config", cfg)
    assert_one_line_error(code, err, "annot parse")
    assert "hacked" not in out


# --------------------------------------------------------------------------- finetune / report


@pytest.mark.parametrize("flag, key, expected", [
    ((), "shrink", "auto"), (("--shrink", "none"), "shrink", None), (("--shrink", "auto"), "shrink", "auto"),
    ((), "jit_compile", "auto"), (("--xla", "on"), "jit_compile", True), (("--xla", "off"), "jit_compile", False),
    ((), "steps_per_execution", "auto"), (("--steps-per-execution", "4"), "steps_per_execution", 4),
])
def test_finetune_flags_reach_finetune(files, qmodel_path, capsys, tmp_path, monkeypatch, flag, key, expected):
    import sys

    ft = sys.modules["hgq_rewrite.finetune"]  # the package (hgq_rewrite.finetune is also the function's name)
    seen = {}

    def fake_finetune(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here: only the arguments matter")

    monkeypatch.setattr(ft, "finetune", fake_finetune)
    code = main(["finetune", str(qmodel_path), "--data", str(files["train"]), "--epochs", "3", "-o",
                 str(tmp_path / "ft"), *flag])
    assert code != 0 and seen[key] == expected and type(seen[key]) is type(expected)


def test_finetune_and_report(files, qmodel_path, capsys, tmp_path):
    out = tmp_path / "ft"
    code, stdout, err = run(capsys, "finetune", qmodel_path, "--data", files["train"], "--val", files["val"],
                            "--epochs", 3, "--beta", "log:1e-6:1e-4", "--batch-size", 32, "-o", out)
    assert code == 0, err
    assert "Pareto front" in stdout and "epoch   3/3" in stdout
    summary = json.loads((out / "front.json").read_text())
    assert summary["metric"] == "val_accuracy"
    kept = sorted(f for f in os.listdir(out) if f.startswith("epoch"))
    assert kept == sorted(os.path.basename(e["path"]) for e in summary["front"])
    assert (out / "last.keras").exists()

    # report on the model file, tracing on calibration data; plots next to it
    code, stdout, err = run(capsys, "report", str(out / "last.keras"), "--calib", files["calib"],
                            "--pareto", out, "--plots", tmp_path / "plots")
    assert code == 0, err
    assert "dense1" in stdout and "EBOPs" in stdout and "exact, traced on 64 samples" in stdout
    assert (tmp_path / "plots" / "bit_histograms.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "pareto_front.png").stat().st_size > 1000

    # report on the finetune folder: its best member, and the front
    code, stdout, err = run(capsys, "report", out, "--no-plots")
    assert code == 0, err
    assert "best front member" in stdout and "Pareto front" in stdout


def test_report_untraced_model(qmodel_path, capsys, tmp_path):
    code, stdout, err = run(capsys, "report", qmodel_path, "--plots", tmp_path)
    assert code == 0, err
    assert "not traced" in stdout
    assert (tmp_path / "bit_histograms.png").exists()


@pytest.mark.parametrize(
    "make_argv, fragments",
    [
        (lambda f, q: ["finetune", q, "--data", f["calib"], "--epochs", 1, "-o", "ft"], ["no targets", "'y'"]),
        (lambda f, q: ["finetune", q, "--data", f["train"], "--epochs", 0, "-o", "ft"], ["--epochs", ">= 1"]),
        (lambda f, q: ["finetune", q, "--data", f["train"], "--epochs", 1, "-o", "ft", "--steps-per-execution", "0"],
         ["--steps-per-execution", ">= 1"]),
        (lambda f, q: ["finetune", q, "--data", f["train"], "--epochs", 1, "-o", "ft", "--beta", "cubic:1:2"],
         ["beta", "unknown schedule kind"]),
        (lambda f, q: ["finetune", f["float"], "--data", f["train"], "--epochs", 1, "-o", "ft"], ["no HGQ layers"]),
        (lambda f, q: ["finetune", q, "--data", f["wrong"], "--epochs", 1, "-o", "ft"], ["expects samples of shape"]),
        (lambda f, q: ["finetune", q, "--data", f["keys"], "--epochs", 1, "-o", "ft"], ["expected key 'x'", "inputs"]),
        (lambda f, q: ["finetune", q, "--data", f["cfg"], "--epochs", 1, "-o", "ft"], ["cannot read", ".npz"]),
        (lambda f, q: ["finetune", q, "--epochs", 1, "-o", "ft"], ["required", "--data"]),
        (lambda f, q: ["report", f["dir"], "--no-plots"], ["not a finetune folder"]),
        (lambda f, q: ["report", q, "--calib", f["wrong"]], ["expects samples of shape"]),
        (lambda f, q: ["export", q, "--calib", f["nan"], "--out", "exp"], ["NaN"]),
        (lambda f, q: ["export", q, "--calib", f["calib"], "--out", "exp", "--backend", "Quartus"], ["invalid choice"]),
        (lambda f, q: ["export", q, "--calib", f["calib"], "--out", "exp", "--cover-factor", "0"], ["> 0"]),
    ],
)
def test_finetune_report_export_errors(files, qmodel_path, capsys, tmp_path, monkeypatch, make_argv, fragments):
    f = dict(files)
    f["wrong"] = str(tmp_path / "wrong.npz")
    np.savez(f["wrong"], x=np.zeros((4, 5), "float32"), y=np.zeros(4, "int64"))
    f["keys"] = str(tmp_path / "keys.npz")
    np.savez(f["keys"], inputs=np.zeros((4, 6), "float32"), y=np.zeros(4, "int64"))
    f["nan"] = str(tmp_path / "nan.npz")
    np.savez(f["nan"], x=np.full((4, 6), np.nan, "float32"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *make_argv(f, qmodel_path))
    assert_one_line_error(code, err, *fragments)


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        main(["quantize", "missing.keras", "-o", "o.keras", "--debug"])


def test_help_and_no_command(capsys):
    assert main(["--help"]) == 0
    assert "quantize" in capsys.readouterr().out
    assert main([]) == 2


# --------------------------------------------------------------------------- demo / export


def test_demo_quick(capsys):
    code, out, err = run(capsys, "demo", "--quick", "--no-hls")
    assert code == 0, err
    for step in ("[1/5] float model", "[2/5] quantize", "[3/5] finetune", "[4/5] trace_minmax", "[5/5] export"):
        assert step in out
    assert "done in" in out


def test_console_script_error_exit_code(tmp_path):
    """The installed entry point: one error line on stderr (TensorFlow's start-up lines aside), exit 2."""
    exe = os.path.join(os.path.dirname(sys.executable), "hgq-rewrite")
    argv = [exe] if os.path.exists(exe) else [sys.executable, "-c", "import sys; from hgq_rewrite.cli import main; "
                                              "sys.exit(main())"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(argv + ["explain", "missing.keras"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    ours = [line for line in proc.stderr.splitlines() if line.startswith("hgq-rewrite")]
    assert ours == ["hgq-rewrite: error: float model file 'missing.keras' does not exist."]
    assert "Traceback" not in proc.stderr


def _proxy_available():
    try:
        from hgq_rewrite.proxy.convert import to_proxy_model  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _proxy_available(), reason="hgq_rewrite.proxy.convert.to_proxy_model not there yet")
def test_export_compiles_and_is_bit_exact(files, qmodel_path, capsys, tmp_path):
    out = tmp_path / "exp"
    code, stdout, err = run(capsys, "export", qmodel_path, "--calib", files["calib"], "--out", out,
                            "--backend", "Vitis", "--cover-factor", "1.5")
    assert code == 0, stdout + err
    assert "bit-exactness self-check: 64 samples compared, 0 mismatches" in stdout
    assert (out / "proxy.keras").exists()
    assert (out / "hls4ml_prj").is_dir()

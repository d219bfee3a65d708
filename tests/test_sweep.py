"""hr.sweep: grid checks, merging fronts with provenance, and a local Ray run with resume."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from hgq_rewrite.finetune import FRONT_FILE
from hgq_rewrite.sweep import expand_grid, load_sweep, merge_fronts, normalize_grid, sweep


def float_model():
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="d1")(inp)
    out = keras.layers.Dense(3, name="d2")(h)
    return keras.Model(inp, out, name="tiny_float")


def tiny_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


# --------------------------------------------------------------------------- grid


def test_grid_expands_every_combination_with_defaults():
    trials = expand_grid({"beta": [1e-6, 1e-5], "seed": [0, 1], "lr": 3e-3})
    assert [t.id for t in trials] == ["t000", "t001", "t002", "t003"]
    assert trials[1].params == {"beta": 1e-6, "seed": 1, "init": None, "learning_rate": 3e-3, "target_ebops": None}
    assert normalize_grid({"init": [None, 0.05, "bw:6"]})["init"] == [None, 0.05, "bw:6"]
    budgets = expand_grid({"target_ebops": [5e3, 2e4]})
    assert [t.params["target_ebops"] for t in budgets] == [5e3, 2e4] and budgets[0].params["beta"] is None


@pytest.mark.parametrize("grid, words", [
    ({"betta": [1e-6]}, "did you mean 'beta'"),
    ({"target_ebops": [1e4], "beta": [1e-5]}, "either 'beta' or 'target_ebops'"),
    ({"target_ebops": [0]}, "an EBOPs target must be a finite number > 0"),
    ({"beta": [-1.0]}, ">= 0"),
    ({"seed": [0, 0]}, "repeats"),
    ({"seed": []}, "empty"),
    ({"init": ["wide"]}, "init policy"),
    ({"lr": [0]}, "> 0"),
    ([1e-6], "must be a dict"),
])
def test_grid_errors_are_one_line(grid, words):
    with pytest.raises((TypeError, ValueError)) as err:
        expand_grid(grid)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    x, y = tiny_data()
    model = float_model()
    out = tmp_path / "s"
    with pytest.raises(ValueError, match="epochs"):
        sweep(model, x, y, grid={"beta": [1e-6]}, epochs=0, directory=out)
    with pytest.raises(ValueError, match="samples"):
        sweep(model, x, y[:5], grid={"beta": [1e-6]}, epochs=1, directory=out)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        sweep(model, x, y, grid={"beta": [1e-6]}, epochs=1, directory=tmp_path / "busy")
    assert not out.exists()
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_missing_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    x, y = tiny_data()
    with pytest.raises(ImportError, match=r"pip install 'hgq_rewrite\[sweep\]'"):
        sweep(float_model(), x, y, grid={"beta": [1e-6]}, epochs=1, directory=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- merge


def test_merge_keeps_the_non_dominated_points_of_all_trials_with_provenance():
    def front(*points):
        return {"front": [{"epoch": e, "metric": m, "ebops": b, "path": f"/x/epoch{e + 1:04d}.keras", "logs": {}}
                          for e, m, b in points]}

    fronts = [
        ("t000", {"beta": 1e-6}, "/sweep/trials/t000", front((0, 0.90, 100.0), (3, 0.80, 50.0))),
        ("t001", {"beta": 1e-5}, "/sweep/trials/t001", front((1, 0.85, 40.0), (2, 0.95, 300.0), (4, 0.70, 60.0))),
        ("t002", {"beta": 1e-4}, "/sweep/trials/t002", front((0, 0.85, 40.0))),  # equal to t001's: dropped
    ]
    merged = merge_fronts(fronts, "max")
    assert [(m.trial, m.epoch) for m in merged] == [("t001", 1), ("t000", 0), ("t001", 2)]
    assert merged[0].params == {"beta": 1e-5}
    assert merged[0].source == "/sweep/trials/t001/epoch0002.keras"
    assert [(m.trial, m.epoch) for m in merge_fronts(fronts, "min")] == [("t001", 1), ("t000", 3), ("t001", 4)]


# --------------------------------------------------------------------------- Ray


@pytest.fixture
def local_ray():
    """One local Ray with 2 CPUs for the whole test (sweep uses an initialised Ray as it is)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_sweep_on_local_ray_two_trials_then_resume(tmp_path, local_ray):
    # tiny trials (1 epoch of 48 samples): the time goes into Ray and its worker processes' start-up
    x, y = tiny_data(48)
    xv, yv = tiny_data(32, seed=1)
    out = tmp_path / "sweep"
    grid = {"beta": [1e-6, 1e-4], "seed": [3]}
    kwargs = dict(grid=grid, epochs=1, batch_size=16, validation_data=(xv, yv), directory=out, num_cpus=2,
                  cpus_per_trial=1, verbose=2)
    model = float_model()
    before = [w.copy() for w in model.get_weights()]
    result = sweep(model, x, y, **kwargs)
    assert sorted(result.ran) == ["t000", "t001"] and not result.skipped and not result.failed
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    summary = json.loads((out / FRONT_FILE).read_text())
    assert summary["metric"] == "val_accuracy" and summary["mode"] == "max"
    assert {t["status"] for t in summary["trials"]} == {"done"}
    assert {p["trial"] for p in summary["points"]} == {"t000", "t001"}
    assert summary["front"] and (out / "front.png").is_file()
    for m in summary["front"]:
        assert m["params"]["beta"] in (1e-6, 1e-4) and m["params"]["seed"] == 3
        assert os.path.isfile(out / m["path"]) and os.path.isfile(out / m["source"])
        assert m["path"].startswith("members/") and m["source"].startswith(f"trials/{m['trial']}/")
    _, members = load_sweep(out)
    assert members[0].load().count_params() > 0
    # a sweep killed during t001: its trial.json never got written
    os.remove(out / "trials" / "t001" / "trial.json")
    mtime = os.path.getmtime(out / "trials" / "t000" / "trial.json")
    again = sweep(model, x, y, **kwargs)
    assert again.skipped == ["t000"] and again.ran == ["t001"]
    assert os.path.getmtime(out / "trials" / "t000" / "trial.json") == mtime
    assert len(again.front) >= 1
    # the same folder with another grid is refused
    with pytest.raises(ValueError, match="another sweep"):
        sweep(model, x, y, **{**kwargs, "grid": {"beta": [1e-5]}})


def test_cli_sweep_refuses_a_bad_grid_in_one_line(tmp_path, capsys):
    from hgq_rewrite.cli import main

    model_path = str(tmp_path / "float.keras")
    float_model().save(model_path)
    x, y = tiny_data()
    np.savez(tmp_path / "train.npz", x=x, y=y)
    code = main(["sweep", model_path, "--data", str(tmp_path / "train.npz"), "--epochs", "1",
                 "-o", str(tmp_path / "out"), "--beta", "1e-6", "--init", "wide"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "init policy" in err
    assert not (tmp_path / "out").exists()

"""da4ml's LUT estimate in ``hgq-rewrite report`` and in the demo's summary (tiny models, seconds)."""

import keras
import numpy as np
import pytest

from hgq_rewrite.cli import main
from hgq_rewrite.export._deps import available

needs_da = pytest.mark.skipif(not available("da"), reason="da4ml not installed (extra [da])")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_da")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), name="features"),
                              keras.layers.Dense(8, activation="relu", name="dense1"),
                              keras.layers.Dense(3, name="out")], name="tiny_float")
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    model(x[:2])
    model.save(d / "float.keras")
    np.savez(d / "calib.npz", x=x)
    assert main(["quantize", str(d / "float.keras"), "-o", str(d / "q.keras"), "--beta", "1e-6"]) == 0
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@needs_da
def test_report_shows_da4ml_luts(tiny, capsys):
    import hgq_rewrite as hr
    from hgq_rewrite.report import da4ml_estimate

    code, out, err = run(capsys, "report", tiny / "q.keras", "--calib", tiny / "calib.npz", "--no-plots")
    assert code == 0, err
    assert "LUTs (da4ml)" in out and "EBOPs:" in out
    line = next(line for line in out.splitlines() if line.startswith("LUTs:"))
    total = float(line.split()[1].replace(",", ""))
    assert total > 0
    # per layer beside EBOPs: the H-layers that multiply carry LUTs, and they match estimate_resources
    from hgq_rewrite.cli.io import load_hgq

    qmodel = load_hgq(str(tiny / "q.keras"))
    hr.trace_minmax(qmodel, np.load(tiny / "calib.npz")["x"])
    est, note = da4ml_estimate(qmodel)
    assert note is None and est.total == pytest.approx(total, abs=1)
    assert {"dense1", "out"} <= set(est.per_layer) and all(v > 0 for v in est.per_layer.values())


def test_report_without_da4ml_says_how_to_install(tiny, capsys, monkeypatch):
    import hgq_rewrite.export._deps as deps

    monkeypatch.setattr(deps, "available", lambda extra: False if extra == "da" else True)
    code, out, err = run(capsys, "report", tiny / "q.keras", "--calib", tiny / "calib.npz", "--no-plots")
    assert code == 0, err
    hints = [line for line in out.splitlines() if "pip install 'hgq_rewrite[da]'" in line]
    assert len(hints) == 1
    assert "EBOPs:" in out and "dense1" in out and "LUTs (da4ml)" not in out


def test_report_untraced_has_no_lut_line(tiny, capsys):
    code, out, err = run(capsys, "report", tiny / "q.keras", "--no-plots")
    assert code == 0, err
    assert "not traced" in out and not any(line.startswith("LUTs") for line in out.splitlines())


@needs_da
def test_demo_summary_shows_luts(capsys):
    code, out, err = run(capsys, "demo", "--quick", "--no-hls")
    assert code == 0, err
    done = next(line for line in out.splitlines() if line.startswith("done in"))
    assert "EBOPs (~" in done and "LUTs, da4ml)" in done
    assert "da4ml estimate:" in out

"""Smoke runs of the scripts in examples/ in their --quick mode (imported, main() called)."""

import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_listed():
    scripts = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))
    assert scripts == sorted(["quickstart_digits", "jet_tagger", "conv1d_mnist1d", "branched_overrides"])


@pytest.mark.parametrize("name", ["quickstart_digits", "jet_tagger", "conv1d_mnist1d", "branched_overrides"])
def test_example_quick(name, tmp_path, capsys):
    result = load(name).main(["--quick", "--out", str(tmp_path)])
    assert result["ebops"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0
    if "front" in result:
        assert result["front"] >= 1
    out = capsys.readouterr().out
    assert "EBOPs" in out


def test_branched_overrides_apply_the_config():
    mod = load("branched_overrides")
    import hgq_rewrite as hr

    plan = hr.explain(mod.float_model(), mod.CONFIG)
    assert plan["skip_proj"].sources["beta"] == r"patterns:^skip"
    assert plan["deep1"].sources["beta"] == "types:Dense"
    assert plan["logits"].sources["kernel.init_bw"] == "names:logits"
    assert plan["probs"].decision == "float"

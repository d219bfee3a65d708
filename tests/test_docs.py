"""The docs: the layer table is generated from the current registry, and the site builds with --strict."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR = os.path.join(ROOT, "docs", "scripts", "gen_layer_table.py")


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_layer_table", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layer_table_is_current():
    gen = load_generator()
    with open(gen.TARGET, encoding="utf-8") as f:
        current = f.read()
    assert current == gen.render(), "docs/layers.md is stale: run  python docs/scripts/gen_layer_table.py"


def test_layer_table_lists_every_registered_class():
    gen = load_generator()
    text = gen.render()
    for klass in gen.builtin_converters():
        assert klass.__name__ in text


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").exists()

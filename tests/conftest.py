import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402

if os.environ.get("KERAS_BACKEND") == "jax":
    import jax  # noqa: E402

    # float64 proxies need it, and the library never switches it on (tests/test_side_effects.py)
    jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _fresh_defaults():
    """Every test starts from the library's default quantizer configs."""
    from hgq_rewrite.quantizers import reset_default_confs

    reset_default_confs()
    yield
    reset_default_confs()


@pytest.fixture(autouse=True)
def _unoptimized_csim(request, monkeypatch):
    """hls4ml builds its C simulation with -O0 instead of -O3: the same ap_fixed (integer) arithmetic and the
    same float32 softmax tables (checked both ways), built 2-3 times faster. Tests marked ``optimized_csim``
    build at -O3, as users do, so a difference only -O3 makes still shows."""
    if request.node.get_closest_marker("optimized_csim"):
        return
    try:
        from hls4ml.backends.fpga.fpga_backend import FPGABackend
    except ImportError:
        return
    build = FPGABackend.compile

    def compile_unoptimized(self, model):
        script = Path(model.config.get_output_dir()) / "build_lib.sh"
        text = script.read_text()
        assert 'CFLAGS="-O3 ' in text or 'CFLAGS="-O0 ' in text, "hls4ml's build_lib.sh changed: update this fixture"
        script.write_text(text.replace('CFLAGS="-O3 ', 'CFLAGS="-O0 '))
        return build(self, model)

    monkeypatch.setattr(FPGABackend, "compile", compile_unoptimized)

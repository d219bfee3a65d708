import os
import sys

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

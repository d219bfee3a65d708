"""Importing hgq_rewrite changes nothing global: hls4ml's registries, JAX's float64 switch, file descriptor 2.

Each check runs in a fresh interpreter, so nothing imported by other tests hides a side effect.
"""

import os
import subprocess
import sys
import textwrap

import pytest


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "JAX_ENABLE_X64")}
    full_env.update(env)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         env=full_env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


HLS4ML_STATE = """
    import hls4ml
    from hls4ml.converters.keras_v3 import layer_handlers
    from hls4ml.model.flow import get_flow
    from hls4ml.model.optimizer import get_available_passes

    def state():
        return (dict(layer_handlers), list(get_flow("convert").optimizers), sorted(get_available_passes()))
"""


def test_importing_hgq_rewrite_leaves_hls4ml_unchanged():
    _run(HLS4ML_STATE + """
    before = state()
    import hgq_rewrite, hgq_rewrite.cli, hgq_rewrite.proxy, hgq_rewrite.export  # noqa: F401
    assert state() == before, "importing hgq_rewrite changed hls4ml"
    print("ok")
    """)


def test_registration_is_explicit_idempotent_and_undone():
    _run(HLS4ML_STATE + """
    before = state()
    from hgq_rewrite.proxy import FixedPointQuantizer, register_hls4ml_handlers, unregister_hls4ml_handlers
    from hgq_rewrite.proxy.hls4ml_handlers import REMAP_PASS_NAME

    FixedPointQuantizer.from_kif(1, 2, 3)  # the first proxy layer registers the handlers and the pass
    handlers, flow, passes = state()
    key = f"{FixedPointQuantizer.__module__}.FixedPointQuantizer"
    assert key in handlers and REMAP_PASS_NAME in flow and REMAP_PASS_NAME in passes
    assert register_hls4ml_handlers() and state()[1].count(REMAP_PASS_NAME) == 1  # idempotent
    unregister_hls4ml_handlers()
    assert state() == before, "unregister_hls4ml_handlers left hls4ml changed"
    unregister_hls4ml_handlers()  # nothing registered: a no-op
    assert state() == before
    """)


def test_cli_import_keeps_stderr_and_environment():
    res = _run("""
    import os
    import keras  # noqa: F401  (Keras itself sets TF_CPP_MIN_LOG_LEVEL)
    env = dict(os.environ)
    import hgq_rewrite.cli  # noqa: F401
    assert dict(os.environ) == env
    os.write(2, b"stderr-still-open")
    """)
    assert "stderr-still-open" in res.stderr


def test_jax_float64_is_never_switched_on_and_a_proxy_says_how():
    pytest.importorskip("jax")
    res = _run("""
    import jax, keras, numpy as np
    import hgq_rewrite as hr
    from hgq_rewrite.proxy import FixedPointQuantizer, UnaryLUT

    model = hr.quantize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    model(np.zeros((2, 3), "float32"))
    assert not jax.config.jax_enable_x64
    for make in (lambda: FixedPointQuantizer.from_kif(1, 2, 3, name="q_in"),
                 lambda: UnaryLUT.from_function("tanh", (1, 1, 2), (1, 0, 4), name="q_in")):
        try:
            make()
        except RuntimeError as e:
            msg = str(e)
            assert "'q_in'" in msg and 'jax.config.update("jax_enable_x64", True)' in msg and "\\n" not in msg, msg
        else:
            raise AssertionError("a float64 proxy layer was made with JAX's float64 off")
    assert not jax.config.jax_enable_x64
    FixedPointQuantizer.from_kif(1, 2, 3, dtype="float32")  # float32 proxies need nothing
    jax.config.update("jax_enable_x64", True)
    layer = FixedPointQuantizer.from_kif(1, 30, 20)
    x = np.array([[2.0**29 + 2.0**-20]])
    assert np.asarray(layer(x)).dtype == np.float64 and np.asarray(layer(x))[0, 0] == x[0, 0]
    print("ok")
    """, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    assert "ok" in res.stdout

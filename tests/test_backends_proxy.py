"""A proxy model saved on one backend predicts the same on the other, bit for bit.

An HGQ model is made on TensorFlow and saved. Then, on each backend in its own subprocess:
load it, ``trace_minmax``, ``to_proxy_model``, save the proxy and predict (inside and far
outside the calibration range). Finally each backend loads the proxy the *other* backend made
and predicts: it must give exactly that backend's predictions. The two proxies themselves
have the same formats, kernels and masks; lookup tables hold each backend's float32
activation rounded to a grid and may differ by one step at a rare rounding tie.
The steps of the backend pytest runs on run in the test's own process; the other backend's steps run in
one worker process (a backend start-up costs more than a step). The file is that worker script:
``python tests/test_backends_proxy.py STEP[,STEP...] DIR MODEL``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax")


def run(steps, backend, workdir, model):
    """Run ``steps`` on ``backend``: here if pytest runs on it, else in a worker process."""
    import keras

    if keras.backend.backend() == backend:
        for step in steps.split(","):
            worker(step, str(workdir), model)
        return
    # JAX_ENABLE_X64: float64 proxies need it on JAX, and the library does not switch it on
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), steps, str(workdir), model],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"{steps} on {backend} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["every_layer", "wide"])
def test_proxies_made_on_either_backend_predict_the_same(model, tmp_path):
    """``every_layer``: every H/P layer. ``wide``: 24-bit inputs, sums and outputs wider than
    float32 (JAX's default) holds, and a 2**15-entry tanh table."""
    pytest.importorskip("jax")
    run("train,proxy", "tensorflow", tmp_path, model)
    run("proxy,load", "jax", tmp_path, model)  # loads the proxy TensorFlow made
    run("load", "tensorflow", tmp_path, model)  # loads the proxy JAX made
    made = {b: np.load(tmp_path / f"pred_made_{b}.npy") for b in BACKENDS}
    loaded = {b: np.load(tmp_path / f"pred_loaded_{b}.npy") for b in BACKENDS}
    assert made["tensorflow"].dtype == made["jax"].dtype == np.float64
    assert np.unique(made["tensorflow"]).size > 10
    # a proxy saved on one backend predicts the same on the other, bit for bit
    np.testing.assert_array_equal(loaded["jax"], made["tensorflow"])
    np.testing.assert_array_equal(loaded["tensorflow"], made["jax"])
    # proxies made on each backend from the same weights: same formats, kernels, biases and masks
    kif_tf, kif_jax = np.load(tmp_path / "kif_tensorflow.npz"), np.load(tmp_path / "kif_jax.npz")
    for name in kif_tf.files:
        np.testing.assert_array_equal(kif_jax[name], kif_tf[name], err_msg=name)
    w_tf, w_jax = np.load(tmp_path / "weights_tensorflow.npz"), np.load(tmp_path / "weights_jax.npz")
    tables = set(np.load(tmp_path / "tables_tensorflow.npy").tolist())
    assert w_tf.files == w_jax.files
    for name in w_tf.files:
        if name in tables:
            # a table holds the HGQ layer's float32 activation rounded to its grid; the backends' float32
            # tanh/sigmoid differ in the last bit, which can decide a rounding tie: rare, one step
            differ = w_jax[name] != w_tf[name]
            assert differ.mean() < 1e-3, (name, differ.sum())
            step = np.min(np.diff(np.unique(w_tf[name])))
            np.testing.assert_allclose(w_jax[name], w_tf[name], rtol=0, atol=step, err_msg=name)
        else:
            np.testing.assert_array_equal(w_jax[name], w_tf[name], err_msg=name)


# ----------------------------------------------------------------------------------------- worker


def _inputs(model):
    if model == "wide":
        x = (np.random.default_rng(3).normal(size=(2000, 16)) * 30).astype("float32")
        return x[:1000], np.concatenate([x, 4 * x]), None
    from models import every_layer_data

    (img, seq), y = every_layer_data(n=96, seed=3)
    calib = [img[:64], seq[:64]]
    far = [np.concatenate([img, 4 * img]), np.concatenate([seq, seq])]  # 4x: outside the traced range
    return calib, far, y


def _wide_model():
    import keras

    from hgq_rewrite.layers import HActivation, HDense, HQuantize

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), name="x")
    x = HQuantize(paq_conf={"init_bw": 16}, name="q")(inp)
    x = HDense(8, kq_conf={"init_bw": 8}, paq_conf={"init_bw": 6}, name="d1")(x)
    x = HActivation("tanh", paq_conf={"init_bw": 10, "granularity": "tensor"}, name="tanh")(x)
    return keras.Model(inp, HDense(4, paq_conf={"init_bw": 20}, name="d2")(x), name="wide")


def worker(step, workdir, which):
    import keras

    import hgq_rewrite as hr
    from hgq_rewrite.trace import h_layers

    backend = keras.backend.backend()
    calib, far, y = _inputs(which)
    if step == "train":
        from models import every_layer_model

        if which == "wide":
            model = _wide_model()
        else:
            keras.utils.set_random_seed(0)
            model = every_layer_model(beta=1e-6)
            # eagerly: 8 steps cost less than tracing the training step (the weights only need to be trained ones)
            model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          run_eagerly=True)
            model.fit(calib, y[:64], epochs=2, batch_size=16, verbose=0)
        model.save(os.path.join(workdir, "hgq.keras"))
    elif step == "proxy":
        model = keras.saving.load_model(os.path.join(workdir, "hgq.keras"))
        hr.trace_minmax(model, calib)
        kif = {f"{layer.name}/{n}": m for layer in h_layers(model) for n, m in zip("kif", layer.output_kif())}
        np.savez(os.path.join(workdir, f"kif_{backend}.npz"), **kif)
        proxy = hr.to_proxy_model(model)
        proxy.save(os.path.join(workdir, f"proxy_{backend}.keras"))
        np.savez(os.path.join(workdir, f"weights_{backend}.npz"), *proxy.get_weights())
        n, tables = 0, []
        for layer in proxy.layers:
            if type(layer).__name__ == "UnaryLUT":
                tables += [f"arr_{n + j}" for j in range(len(layer.get_weights()))]
            n += len(layer.get_weights())
        np.save(os.path.join(workdir, f"tables_{backend}.npy"), np.asarray(tables, dtype=str))
        pred = np.asarray(proxy.predict(far, batch_size=64, verbose=0))
        np.save(os.path.join(workdir, f"pred_made_{backend}.npy"), pred)
    elif step == "load":
        other = [b for b in BACKENDS if b != backend][0]
        proxy = keras.saving.load_model(os.path.join(workdir, f"proxy_{other}.keras"))
        pred = np.asarray(proxy.predict(far, batch_size=64, verbose=0))
        np.save(os.path.join(workdir, f"pred_loaded_{backend}.npy"), pred)
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    for step_name in sys.argv[1].split(","):
        worker(step_name, sys.argv[2], sys.argv[3])

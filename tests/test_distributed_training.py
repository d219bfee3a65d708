"""Data-parallel training on 2 logical CPU devices equals training on one device.

TensorFlow: ``tf.distribute.MirroredStrategy`` over 2 logical CPUs (set before TF
initialises, so every run is a fresh subprocess). JAX: ``keras.distribution.DataParallel``
with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.

Checked against a one-device run on the same data: activation ranges (min/max over all
replicas' batches), the logged ``bops`` and loss, BatchNorm statistics, the trained weights,
and the traced fixed-point formats and exact EBOPs. The file is also the worker script, one process per
backend with 2 devices running every scenario on one device, then on 2 replicas (a TensorFlow or JAX
start-up costs more than a scenario, and JAX compiles each eager operation once per process):
``python tests/test_distributed_training.py BACKEND SCENARIO[,SCENARIO...] OUT_DIR``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
N_SAMPLES = 1000  # 15 batches of 64 and a short last batch of 40 (20 per replica)
BATCH = 64
SCENARIOS = ("frozen", "scope", "finetune")
DEVICES = 2


def _environment(backend, tmp_path):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "jax":
        # finetune(distribution=...) trains a fresh copy each call; this test's own compilation cache lets
        # the copy reuse the compiled training step instead of compiling the same program again
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={DEVICES}"])
        env["JAX_PLATFORMS"] = "cpu"
        env["JAX_ENABLE_X64"] = "1"  # float64 proxies need it on JAX, and the library does not switch it on
    return env


def run_worker(backend, tmp_path):
    """One worker process running every scenario on 1 device, then on 2: the two runs, {scenario: its arrays}."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), backend, ",".join(SCENARIOS), str(tmp_path)],
        env=_environment(backend, tmp_path),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    found = []
    for devices in (1, DEVICES):
        runs = {}
        for scenario in SCENARIOS:
            data = dict(np.load(tmp_path / f"{devices}_{scenario}.npz", allow_pickle=False))
            data["meta"] = json.loads(str(data["meta"]))
            runs[scenario] = data
        found.append(runs)
    return found


def _ranges(data):
    return {k: v for k, v in data.items() if k.startswith(("min/", "max/"))}


def assert_same_state(one, two):
    """Same weights in, same non-trainable state out: ranges, bops, BN statistics, traced formats."""
    assert one["meta"]["replicas"] == 1 and two["meta"]["replicas"] == 2, (one["meta"], two["meta"])
    # activation ranges seen during the epoch: min/max over all replicas' batches
    r1, r2 = _ranges(one), _ranges(two)
    assert r1.keys() == r2.keys() and r1
    for key in r1:
        np.testing.assert_array_equal(r2[key], r1[key], err_msg=key)
    # EBOPs estimate, and the loss counting the EBOPs term once (not once per replica)
    np.testing.assert_array_equal(two["bops"], one["bops"])
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
    moving = [k for k in one if k.startswith("moving/")]
    for key in moving:  # global-batch statistics (all-reduced), not one replica's
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-7, err_msg=key)
    # then trace_minmax on one device: the same fixed-point formats and exact EBOPs
    kif = [k for k in one if k.startswith("kif/")]
    assert kif
    for key in kif:
        np.testing.assert_array_equal(two[key], one[key], err_msg=key)
    assert two["exact_ebops"] == one["exact_ebops"]


def assert_same_training(one, two):
    """Training on: the runs follow the same path up to float summation order (amplified by rounding)."""
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-2)
    np.testing.assert_allclose(two["train_bops"], one["train_bops"], rtol=1e-2)
    for key in one:
        if key.startswith("weight/"):
            np.testing.assert_allclose(two[key], one[key], rtol=0, atol=0.05 * max(1.0, np.abs(one[key]).max()),
                                       err_msg=key)


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_replicas_train_like_one_device(backend, tmp_path):
    """Every scenario on 1 device and on 2 replicas (one worker process each):

    ``frozen``: a model without BatchNorm/Dropout, lr = 0: ranges recorded while fitting on 2 replicas are
    exactly those of ``trace_minmax`` on one device, and those of a 1-device fit.
    ``scope`` and ``finetune``: quantize() of a float model with BatchNorm; an epoch at lr = 0 (same weights
    throughout), then 2 epochs of training: 2 replicas == 1 device. ``scope``: built and fitted in the
    framework's scope; ``finetune``: built outside, ``finetune(..., distribution=...)`` trains a copy and
    writes the weights back.
    """
    pytest.importorskip(backend)
    ones, twos = run_worker(backend, tmp_path)
    one, two = ones["frozen"], twos["frozen"]
    assert two["meta"]["replicas"] == 2
    for data in (one, two):
        for key, value in _ranges(data).items():
            np.testing.assert_array_equal(value, data["trace_" + key], err_msg=key)
    for key, value in _ranges(one).items():
        np.testing.assert_array_equal(two[key], value, err_msg=key)
    np.testing.assert_allclose(two["bops"], one["bops"], rtol=1e-6)
    for scenario in ("scope", "finetune"):
        assert_same_state(ones[scenario], twos[scenario])
        assert_same_training(ones[scenario], twos[scenario])


# ----------------------------------------------------------------------------------------- worker


def _set_devices(backend, devices):
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


def _distribution(backend, devices):
    if devices == 1:
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    import jax
    import keras

    return keras.distribution.DataParallel(devices=jax.devices())


def _replicas(backend, distribution):
    if distribution is None:
        return 1
    if backend == "tensorflow":
        return distribution.num_replicas_in_sync
    return int(distribution.device_mesh.devices.size)


def _float_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28), name="img")
    x = keras.layers.Reshape((28, 28, 1), name="reshape")(inp)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, name="dense")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="float_cnn")


def _frozen_model():
    """The seed document's model (no BatchNorm, no Dropout): training and inference forward agree."""
    import keras

    sys.path.insert(0, HERE)
    from test_seed_quickstart import seed_model

    keras.utils.set_random_seed(0)
    model = seed_model(1e-5)
    model.build((None, 28, 28))
    model.compile(keras.optimizers.SGD(learning_rate=0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _Capture:
    """Keras callback factory: keeps every activation range at each epoch end (before ResetMinMax)."""

    @staticmethod
    def make(store):
        import keras

        from hgq_rewrite.trace import h_layers

        class Capture(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                for layer in h_layers(self.model):
                    store[f"min/{layer.name}"] = np.asarray(layer.paq.min)
                    store[f"max/{layer.name}"] = np.asarray(layer.paq.max)
                store.setdefault("_loss", []).append(float(logs["loss"]))
                store.setdefault("_bops", []).append(float(logs["bops"]))

        return Capture()


def worker(backend, scenarios, out_dir):
    import keras

    _set_devices(backend, DEVICES)
    sys.path.insert(0, HERE)
    from data import digits_28x28

    x, y = digits_28x28()[:2]
    x, y = x[:N_SAMPLES], y[:N_SAMPLES]
    for devices in (1, DEVICES):  # one device first (no distribution: all on the first device), then 2 replicas
        keras.backend.clear_session()  # the same automatic layer names in both runs
        dist = _distribution(backend, devices)
        for scenario in scenarios:
            run_scenario(backend, devices, scenario, dist, x, y, os.path.join(out_dir, f"{devices}_{scenario}.npz"))


def run_scenario(backend, devices, scenario, dist, x, y, out):
    import keras

    import hgq_rewrite as hr
    from hgq_rewrite.trace import h_layers

    store = {}
    capture = _Capture.make(store)
    if scenario == "frozen":
        with dist.scope() if dist else _null():
            model = _frozen_model()
            model.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0,
                      callbacks=[hr.FreeBOPs(), capture, hr.ResetMinMax()])
        hr.trace_minmax(model, x)  # one device, eager: the reference ranges
        for layer in h_layers(model):
            store[f"trace_min/{layer.name}"] = np.asarray(layer.paq.min)
            store[f"trace_max/{layer.name}"] = np.asarray(layer.paq.max)
    else:
        float_model = _float_model()
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with dist.scope() if dist and scenario == "scope" else _null():
            model = hr.quantize(float_model, beta=1e-5)
            model.compile(keras.optimizers.Adam(0.0), loss)
        fit_args = dict(epochs=1, batch_size=BATCH, verbose=0)
        if scenario == "scope":
            with dist.scope() if dist else _null():
                model.fit(x, y, shuffle=False, callbacks=[hr.FreeBOPs(), capture, hr.ResetMinMax()], **fit_args)
        else:
            hr.finetune(model, x, y, callbacks=[capture], distribution=dist, **fit_args)
        for layer in h_layers(model):
            if hasattr(layer, "moving_mean"):
                store[f"moving/{layer.name}/mean"] = np.asarray(layer.moving_mean)
                store[f"moving/{layer.name}/var"] = np.asarray(layer.moving_variance)
        store["exact_ebops"] = np.float64(hr.trace_minmax(model, x))
        for layer in h_layers(model):
            for name, part in zip("kif", layer.output_kif()):
                store[f"kif/{layer.name}/{name}"] = part
        # now really train (the optimizer keeps its state; only the learning rate changes)
        ranges = {k: store.pop(k) for k in list(store) if k.startswith(("min/", "max/", "_"))}
        model.optimizer.learning_rate.assign(1e-3)
        fit_args["epochs"] = 2
        if scenario == "scope":
            with dist.scope() if dist else _null():
                model.fit(x, y, shuffle=False, callbacks=[hr.FreeBOPs(), capture, hr.ResetMinMax()], **fit_args)
        else:
            hr.finetune(model, x, y, callbacks=[capture], distribution=dist, **fit_args)
        store["train_loss"] = np.asarray(store.pop("_loss"))
        store["train_bops"] = np.asarray(store.pop("_bops"))
        store = {k: v for k, v in store.items() if not k.startswith(("min/", "max/"))}
        store.update(ranges)
        for i, w in enumerate(model.trainable_weights):
            store[f"weight/{i}/{w.path}"] = np.asarray(w)
    store["loss"] = np.asarray(store.pop("_loss"))
    store["bops"] = np.asarray(store.pop("_bops"))
    meta = {"devices": devices, "replicas": _replicas(backend, dist), "backend": keras.backend.backend()}
    store["meta"] = np.asarray(json.dumps(meta))
    np.savez(out, **store)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2].split(","), sys.argv[3])

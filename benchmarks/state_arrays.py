"""What each state array costs a JAX (or TensorFlow) epoch: the float model with unused variables added.

Keras' JAX trainer hands every variable of the model and its optimizer into the compiled step and
back out of it, in Python, at every step; so a variable costs time per step even when the step never
reads it. This fits the mnist1d float MLP with 0, 25 and 50 extra non-trainable (2, 1, 32) variables
that no op uses, interleaved one-epoch fits, and reports each epoch's median over the plain model's::

    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/state_arrays.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/state_arrays.py

Results go to ``results/state_arrays.json`` under the backend's name (other runs kept).
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

from data import LOADERS  # noqa: E402
from epoch_cost import one_epoch, run_header, save_run  # noqa: E402
from models import float_model  # noqa: E402


class UnusedState(keras.layers.Layer):
    """Passes its input through; holds ``n`` non-trainable variables nothing reads."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def build(self, shape):
        self.unused = [self.add_weight(shape=(2, 1, 32), trainable=False, initializer="zeros", name=f"unused{i}")
                       for i in range(self.n)]

    def call(self, x):
        return x


def model_with(extra):
    inp = keras.Input((40,))
    x = UnusedState(extra)(inp) if extra else inp
    model = keras.Model(inp, float_model("mnist1d")(x))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", nargs="+", type=int, default=[0, 25, 50])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "state_arrays.json"))
    args = ap.parse_args()
    x, y, _, _ = LOADERS["mnist1d"](0)
    models = {n: model_with(n) for n in args.extra}
    for model in models.values():
        one_epoch(model, x, y, 64, [])  # traces the step
    times = {n: [] for n in models}
    for r in range(args.rounds):
        for n in (list(models) if r % 2 == 0 else list(models)[::-1]):
            times[n].append(one_epoch(models[n], x, y, 64, [])[0])
    run = run_header()
    base = statistics.median(times[args.extra[0]])
    steps = -(-len(x) // 64)
    for n, t in times.items():
        med = statistics.median(t)
        per_array_us = 1e6 * (med - base) / steps / n if n else 0.0
        run["tasks"][f"mnist1d+{n}"] = {"extra_state_arrays": n, "epoch_times": t, "median_s": med,
                                         "ratio": med / base, "us_per_array_per_step": per_array_us}
        print(f"{keras.config.backend()}: {n} unused state arrays: {1e3 * med:.1f} ms per epoch, "
              f"{med / base:.3f}x, {per_array_us:.2f} us per array per step", flush=True)
    save_run(args.out, "epoch time of the mnist1d float MLP with unused non-trainable variables added "
                       "(interleaved one-epoch fits)", keras.config.backend(), run)


if __name__ == "__main__":
    main()

"""The smallest HGQ training step, trained by Keras' ``fit``, against the float model: a floor for the epoch ratio.

MNIST-1D MLP 40-64-32-10, batch 64, Adam, as the benchmark task, on the current Keras backend. None
of the library: Keras models whose ``train_step`` is written out (``keras.ops`` for the arithmetic,
the backend's own gradient: ``tf.GradientTape`` or ``jax.grad``), and the least an HGQ step is:

- ``float_step``: the float MLP with this written-out step (what the rows below add to);
- ``weight_bits``: every weight rounded onto its own trainable grid ``2**-f`` (straight-through
  gradient for the weight, ``-ln2 * g * (q - w)`` for ``f``), the ``f`` trained by Adam as one flat
  variable;
- ``hgq``: also the input and every layer's output on a per-feature trainable grid, and
  ``beta * EBOPs`` in the loss (integer bits from the batch's largest magnitudes: no range state).

This is no recipe: it drops the range record, bias grids, overflow and all an export needs. It says
what HGQ's training arithmetic costs by itself. The reference is the benchmark's float model
compiled as ``epoch_cost.py`` compiles it; one-epoch fits interleaved over ``--rounds`` rounds::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/min_step.py --label floor
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/min_step.py --label floor

Results go to ``results/min_step_<backend>.json`` under ``--label``.
"""

import argparse
import itertools
import math
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402
from keras import ops  # noqa: E402

from data import LOADERS  # noqa: E402
from epoch_cost import BATCH_SIZE, one_epoch, run_header, save_run  # noqa: E402
from models import float_model  # noqa: E402

LN2 = math.log(2.0)
SIZES = (40, 64, 32, 10)


@ops.custom_gradient
def on_grid(x, f):
    """``x`` rounded half up onto the grid ``2**-round(f)``; straight-through and bit gradients."""
    scale = ops.power(2.0, ops.round(f))
    q = ops.floor(x * scale + 0.5) / scale

    def gradient(*args, upstream=None):
        g = args[0] if upstream is None else upstream
        g_f = -LN2 * g * (q - x)
        return g, (ops.sum(g_f, axis=0, keepdims=True) if tuple(g_f.shape) != tuple(f.shape) else g_f)

    return q, gradient


def ste_round(f):
    return f + ops.stop_gradient(ops.round(f) - f)


def int_bits(magnitude):
    return ops.stop_gradient(ops.floor(ops.log2(ops.maximum(magnitude, 2.0**-60))) + 1.0)


class Floor(keras.Model):
    """The MLP with a written-out train step; ``mode``: ``float_step``, ``weight_bits`` or ``hgq``."""

    def __init__(self, mode, beta=1e-5):
        super().__init__()
        self.mode, self.beta = mode, beta
        self.w = [self.add_weight(shape=(SIZES[n], SIZES[n + 1]), initializer="glorot_uniform") for n in range(3)]
        self.b = [self.add_weight(shape=(SIZES[n + 1],), initializer="zeros") for n in range(3)]
        self.bit_shapes = [(SIZES[n], SIZES[n + 1]) for n in range(3)] + [(1, s) for s in SIZES]
        if mode != "float_step":  # every bitwidth in one variable: one Adam update
            total = sum(math.prod(s) for s in self.bit_shapes)
            self.bits = self.add_weight(shape=(total,), initializer=keras.initializers.Constant(6.0))

    def call(self, x):
        h = x
        for n in range(3):
            h = ops.matmul(h, self.w[n]) + self.b[n]
            h = ops.relu(h) if n < 2 else h
        return h

    def loss_of(self, w, b, bits, x, y):
        """Training loss from the values ``w``, ``b``, ``bits`` (tensors)."""
        if self.mode == "float_step":
            h = x
            for n in range(3):
                h = ops.matmul(h, w[n]) + b[n]
                h = ops.relu(h) if n < 2 else h
            return ops.mean(keras.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
        cuts = list(itertools.accumulate(math.prod(s) for s in self.bit_shapes))[:-1]
        parts = [ops.reshape(p, s) for p, s in zip(ops.split(bits, cuts), self.bit_shapes)]
        f_w, f_a = parts[:3], parts[3:]
        act = self.mode == "hgq"
        h = on_grid(x, f_a[0]) if act else x
        bits_in = ops.relu(int_bits(ops.max(ops.abs(h), axis=0, keepdims=True)) + ste_round(f_a[0]))
        ebops = 0.0
        for n in range(3):
            wq = on_grid(w[n], f_w[n])
            if act:
                ebops = ebops + ops.sum(ops.matmul(bits_in, ops.relu(int_bits(ops.abs(wq)) + ste_round(f_w[n]))))
            h = ops.matmul(h, wq) + b[n]
            h = ops.relu(h) if n < 2 else h
            if act:
                h = on_grid(h, f_a[n + 1])
                bits_in = ops.relu(int_bits(ops.max(ops.abs(h), axis=0, keepdims=True)) + ste_round(f_a[n + 1]))
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
        return loss + self.beta * ebops if act else loss

    def _split(self, values):
        return values[:3], values[3:6], (values[6] if len(values) > 6 else None)

    if keras.config.backend() == "jax":
        def train_step(self, state, data):
            import jax

            trainable, non_trainable, optimizer_vars, metrics_vars = state
            x, y = data

            def loss(values):
                return self.loss_of(*self._split(values), x, y)

            value, grads = jax.value_and_grad(loss)(trainable)
            trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads, trainable)
            return {"loss": value}, (trainable, non_trainable, optimizer_vars, metrics_vars)
    else:
        def train_step(self, data):
            import tensorflow as tf

            x, y = data
            variables = self.trainable_variables
            with tf.GradientTape() as tape:
                value = self.loss_of(*self._split(variables), x, y)
            self.optimizer.apply(tape.gradient(value, variables), variables)
            return {"loss": value}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default=None, help="default: results/min_step_<backend>.json")
    args = ap.parse_args()
    backend = keras.config.backend()
    x, y, _, _ = LOADERS["mnist1d"](0)
    batch = BATCH_SIZE["mnist1d"]
    keras.utils.set_random_seed(0)
    reference = float_model("mnist1d")
    reference.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    models = {"float": reference}
    for mode in ("float_step", "weight_bits", "hgq"):
        models[mode] = Floor(mode)
        models[mode].compile(keras.optimizers.Adam(1e-3))
    for model in models.values():
        one_epoch(model, x, y, batch, [])  # traces the step
    times = {name: [] for name in models}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            times[name].append(one_epoch(models[name], x, y, batch, [])[0])
    run = run_header()
    base = statistics.median(times["float"])
    run["tasks"] = {"mnist1d": {name: {"epoch_times": t, "median_s": statistics.median(t),
                                       "over_float": statistics.median(t) / base} for name, t in times.items()}}
    for name, r in run["tasks"]["mnist1d"].items():
        print(f"{backend} {name}: {1e3 * r['median_s']:.1f} ms per epoch ({r['over_float']:.2f}x the float model)")
    out = args.out or os.path.join(HERE, "results", f"min_step_{backend}.json")
    save_run(out, "the smallest HGQ train step in Keras' fit against the float model (min_step.py)", args.label, run)


if __name__ == "__main__":
    main()

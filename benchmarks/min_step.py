"""The smallest HGQ training step written directly in JAX, against the float step: a floor for the epoch ratio.

MNIST-1D MLP 40-64-32-10, batch 64, Adam, as the benchmark task. No Keras, no library code: the
float step (forward, cross-entropy, gradient, Adam) and, beside it, the least an HGQ step is:

- ``weight_bits``: every weight rounded onto its own trainable grid ``2**-f`` (straight-through
  gradient for the weight, ``-ln2 * g * (q - w)`` for ``f``), Adam on the ``f`` too;
- ``hgq``: also every activation (the input and each layer's output) on a per-feature trainable
  grid, and ``beta * EBOPs`` in the loss (integer bits from the batch's largest magnitudes, no
  range state kept between steps);

each a compiled step, timed over one epoch of batches, the rows interleaved over ``--rounds``
rounds (median ms per step). This is no recipe (it drops the range record, bias grids, overflow
and everything an export needs); it says what the arithmetic of HGQ's training costs by itself on
this backend. Keras' ``fit`` adds its own per-step time to every model alike (``step_ops.py``
measures it)::

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/min_step.py

Results go to ``results/min_step_jax.json`` under ``--label``.
"""

import argparse
import math
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from epoch_cost import run_header, save_run  # noqa: E402

LN2 = math.log(2.0)
SIZES = (40, 64, 32, 10)
BATCH, SAMPLES = 64, 4000


@jax.custom_vjp
def on_grid(x, f):
    """``x`` rounded half up onto the grid ``2**-round(f)``."""
    scale = jnp.exp2(jnp.round(f))
    return jnp.floor(x * scale + 0.5) / scale


def _on_grid_fwd(x, f):
    q = on_grid(x, f)
    return q, (q - x, f.shape)


def _on_grid_bwd(residual, g):
    error, shape = residual
    g_f = -LN2 * g * error
    return g, (jnp.sum(g_f, axis=0, keepdims=True) if g_f.shape != shape else g_f)


on_grid.defvjp(_on_grid_fwd, _on_grid_bwd)


def ste_round(f):
    return f + jax.lax.stop_gradient(jnp.round(f) - f)


def int_bits(magnitude):
    return jax.lax.stop_gradient(jnp.floor(jnp.log2(jnp.maximum(magnitude, 2.0**-60))) + 1.0)


def cross_entropy(logits, y):
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def float_loss(params, x, y):
    h = x
    for n in range(3):
        h = h @ params["w"][n] + params["b"][n]
        h = jax.nn.relu(h) if n < 2 else h
    return cross_entropy(h, y)


def hgq_loss(params, x, y, activations=True, beta=1e-5):
    bits = params["f"]
    h = on_grid(x, bits["a"][0]) if activations else x
    bits_in = jax.nn.relu(int_bits(jnp.max(jnp.abs(h), 0, keepdims=True)) + ste_round(bits["a"][0]))
    ebops = 0.0
    for n in range(3):
        w = on_grid(params["w"][n], bits["w"][n])
        if activations:
            ebops = ebops + jnp.sum(bits_in @ jax.nn.relu(int_bits(jnp.abs(w)) + ste_round(bits["w"][n])))
        h = h @ w + params["b"][n]
        h = jax.nn.relu(h) if n < 2 else h
        if activations:
            h = on_grid(h, bits["a"][n + 1])
            bits_in = jax.nn.relu(int_bits(jnp.max(jnp.abs(h), 0, keepdims=True)) + ste_round(bits["a"][n + 1]))
    return cross_entropy(h, y) + beta * ebops


def adam(params, grads, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    m, v, t = state
    t = t + 1
    m = jax.tree.map(lambda a, g: a + (g - a) * (1 - b1), m, grads)
    v = jax.tree.map(lambda a, g: a + (g * g - a) * (1 - b2), v, grads)
    alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
    params = jax.tree.map(lambda p, mm, vv: p - alpha * mm / (jnp.sqrt(vv) + eps), params, m, v)
    return params, (m, v, t)


def make_step(loss):
    @jax.jit
    def step(state, x, y):
        params, opt = state
        grads = jax.grad(loss)(params, x, y)
        params, opt = adam(params, grads, opt)
        if "f" in params:
            params = dict(params, f=jax.tree.map(lambda f: jnp.clip(f, -23.0, 23.0), params["f"]))
        return params, opt
    return step


def initial_state(key, with_bits):
    keys = jax.random.split(key, 3)
    params = {"w": [jax.random.normal(keys[n], (SIZES[n], SIZES[n + 1])) * math.sqrt(2 / SIZES[n]) for n in range(3)],
              "b": [jnp.zeros(SIZES[n + 1]) for n in range(3)]}
    if with_bits:
        params["f"] = {"w": [jnp.full((SIZES[n], SIZES[n + 1]), 6.0) for n in range(3)],
                       "a": [jnp.full((1, s), 6.0) for s in SIZES]}
    zeros = jax.tree.map(jnp.zeros_like, params)
    return params, (zeros, zeros, jnp.zeros(()))


def fusions(step, state, batch):
    hlo = step.lower(state, *batch).compile().as_text()
    return len(re.findall(r"= \S+ fusion\(", hlo[hlo.index("ENTRY"):]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "min_step_jax.json"))
    args = ap.parse_args()
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (SAMPLES, SIZES[0]))
    y = jax.random.randint(key, (SAMPLES,), 0, SIZES[-1])
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, SAMPLES - BATCH + 1, BATCH)]
    rows = {"float": (make_step(float_loss), False),
            "weight_bits": (make_step(lambda p, x, y: hgq_loss(p, x, y, activations=False)), True),
            "hgq": (make_step(hgq_loss), True)}
    states = {name: initial_state(key, bits) for name, (_, bits) in rows.items()}
    run = run_header()
    run["tasks"] = {"mnist1d_mlp": {name: {"fusions": fusions(step, states[name], batches[0]), "step_ms": []}
                                    for name, (step, _) in rows.items()}}
    out = run["tasks"]["mnist1d_mlp"]
    for name, (step, _) in rows.items():
        jax.block_until_ready(step(states[name], *batches[0]))
    for r in range(args.rounds):
        for name in (list(rows) if r % 2 == 0 else list(rows)[::-1]):
            step, state = rows[name][0], states[name]
            t0 = time.perf_counter()
            for batch in batches:
                state = step(state, *batch)
            jax.block_until_ready(state)
            states[name] = state
            out[name]["step_ms"].append(1e3 * (time.perf_counter() - t0) / len(batches))
    for name, r in out.items():
        r["median_step_ms"] = statistics.median(r["step_ms"])
        r["over_float"] = r["median_step_ms"] / statistics.median(out["float"]["step_ms"])
        print(f"{name}: {r['fusions']} fusions, {r['median_step_ms']:.3f} ms per step ({r['over_float']:.2f}x float)")
    save_run(args.out, "the smallest HGQ step in plain JAX against the float step (min_step.py)", args.label, run)


if __name__ == "__main__":
    main()

"""Time of small convolutions and max pooling on JAX (CPU): XLA's own against ours.

For each shape, a forward and backward pass of ``keras.ops.conv`` (3x3 kernel, stride 1, the
gradients of input and kernel of ``sum(conv * dz)``; ``forward``: the convolution alone) or one
backward pass (``jax.vjp``) of ``keras.ops.max_pool`` (2x2, stride 2), XLA's against ours
(`hgq_rewrite.layers.conv_gradient.tap_conv`, `hgq_rewrite.layers.pool_gradient.phase_max_pool`),
the two interleaved over ``--rounds`` rounds (median). The conv ratios set where `uses_taps`
switches (``MAX_TAP_CHANNELS``, input x output channels)::

    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/xla_gradients.py

Results go to ``results/xla_gradients_jax.json`` (``--out``).
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

from epoch_cost import run_header  # noqa: E402
from hgq_rewrite.layers.conv_gradient import MAX_STACKED_ELEMENTS, MAX_TAP_CHANNELS, tap_conv, uses_taps  # noqa: E402
from hgq_rewrite.layers.pool_gradient import phase_max_pool  # noqa: E402

# (batch, spatial size, in channels, out channels): the benchmark tasks' convolutions, then larger ones
CONV_SHAPES = [(32, 14, 1, 2), (32, 6, 2, 2), (1, 14, 1, 2), (64, 8, 1, 8), (64, 3, 8, 16),
               (32, 16, 4, 16), (32, 16, 8, 32), (32, 16, 16, 16), (32, 16, 16, 32), (32, 32, 16, 32),
               (32, 16, 32, 32), (128, 16, 32, 64), (16, 64, 1, 4), (32, 32, 4, 16), (32, 32, 8, 16),
               (32, 32, 16, 16)]
# (batch, spatial size, channels): the seed CNN's three poolings, digits8's, then larger ones
POOL_SHAPES = [(32, 28, 1), (32, 12, 2), (32, 4, 2), (64, 6, 8), (32, 32, 16), (128, 16, 64)]


def timed(fn, args, repeats):
    """Seconds per call of ``fn(*args)`` (compiled, results awaited)."""
    import jax

    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def backward(f):
    """The gradients of ``f``'s inputs for the upstream gradient (the last argument); its forward pass only as
    far as they need it."""
    import jax

    return jax.jit(lambda *a: jax.vjp(f, *a[:-1])[1](a[-1]))


def jitted(f):
    """``f`` compiled: its forward pass alone."""
    import jax

    return jax.jit(f)


def forward_and_backward(f):
    """The value of ``sum(f(*inputs) * dz)`` and its gradients: the forward pass and the backward pass."""
    import jax

    return jax.jit(jax.value_and_grad(lambda *a: keras.ops.sum(f(*a[:-1]) * a[-1]), argnums=(0, 1)))


def compare(functions, args, rounds, wrap=backward):
    """Median ms of each of ``{"xla": f, "ours": g}`` (jitted through ``wrap``), interleaved."""
    fns = {name: wrap(f) for name, f in functions.items()}
    repeats = max(20, int(2e-3 / max(timed(fns["xla"], args, 5), 1e-6)))  # ~2 ms per round
    times = {name: [] for name in fns}
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            times[name].append(timed(fns[name], args, repeats))
    out = {f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()}
    out["ours_over_xla"] = out["ours_ms"] / out["xla_ms"]
    return out


def random(shape, seed):
    import jax

    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def conv_row(shape, rounds):
    batch, size, cin, cout = shape
    args = (random((batch, size, size, cin), 0), random((3, 3, cin, cout), 1), random((batch, size - 2, size - 2, cout), 2))
    functions = {"xla": lambda x, k: keras.ops.conv(x, k, 1, "valid", "channels_last", 1),
                 "ours": lambda x, k: tap_conv(x, k, "valid", (1, 1))}
    forward = compare(functions, args[:2], rounds, wrap=jitted)
    return {"batch": batch, "size": size, "in": cin, "out": cout,
            "uses_taps": uses_taps(args[0].shape, args[1].shape, (1, 1)),
            **compare(functions, args, rounds, wrap=forward_and_backward),
            "forward": forward}


def pool_row(shape, rounds):
    batch, size, channels = shape
    args = (random((batch, size, size, channels), 0), random((batch, size // 2, size // 2, channels), 1))
    functions = {"xla": lambda x: keras.ops.max_pool(x, 2, 2, "valid", "channels_last"),
                 "ours": lambda x: phase_max_pool(x, (2, 2))}
    return {"batch": batch, "size": size, "channels": channels, **compare(functions, args, rounds)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "xla_gradients_jax.json"))
    args = ap.parse_args()
    if keras.config.backend() != "jax":
        raise SystemExit("xla_gradients.py times XLA's gradients: run it with KERAS_BACKEND=jax.")
    run = run_header()
    run.pop("tasks")
    run.update(max_tap_channels=MAX_TAP_CHANNELS, max_stacked_elements=MAX_STACKED_ELEMENTS, conv=[], max_pool=[])
    for shape in CONV_SHAPES:
        r = conv_row(shape, args.rounds)
        run["conv"].append(r)
        print(f"conv     batch {shape[0]:3d} {shape[1]:2d}x{shape[1]:<2d} {shape[2]:2d} -> {shape[3]:2d} channels: "
              f"xla {r['xla_ms']:.3f} ms, taps {r['ours_ms']:.3f} ms ({r['ours_over_xla']:.2f}x); forward "
              f"{r['forward']['xla_ms']:.3f} / {r['forward']['ours_ms']:.3f} ms{' (used)' if r['uses_taps'] else ''}",
              flush=True)
    for shape in POOL_SHAPES:
        r = pool_row(shape, args.rounds)
        run["max_pool"].append(r)
        print(f"max_pool batch {shape[0]:3d} {shape[1]:2d}x{shape[1]:<2d} {shape[2]:2d} channels: "
              f"xla {r['xla_ms']:.3f} ms, phases {r['ours_ms']:.3f} ms ({r['ours_over_xla']:.2f}x)", flush=True)
    with open(args.out, "w") as f:
        json.dump(run, f, indent=1)


if __name__ == "__main__":
    main()

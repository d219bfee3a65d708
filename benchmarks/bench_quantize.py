"""Time `explain` and `quantize` on chain models of 100, 1,000 and 5,000 layers.

The chain repeats Dense(8) → BatchNormalization → ReLU (so folding and fusion
are exercised), after one input. Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/bench_quantize.py [sizes...]
"""

import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

from hgq_rewrite.rewrite import explain, quantize  # noqa: E402

PATTERN = (lambda i: L.Dense(8, name=f"dense_{i}"),
           lambda i: L.BatchNormalization(name=f"bn_{i}"),
           lambda i: L.ReLU(name=f"relu_{i}"))


def chain(n_layers, width=8):
    x = keras.Input((width,), name="x")
    h = x
    for i in range(n_layers):
        h = PATTERN[i % len(PATTERN)](i)(h)
    return keras.Model(x, h, name=f"chain{n_layers}")


def timed(fn, *args, repeat=1, **kwargs):
    """(result, best wall time of ``repeat`` runs)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return out, best


def main(sizes):
    # Keras maps a Functional graph recursively: deep chains need a higher limit
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * max(sizes) + 1000))
    print("explain: best of 3; quantize: one run (mostly the HGQ layers' own build)")
    print(f"{'layers':>7} {'build float':>12} {'explain':>9} {'str(plan)':>10} {'quantize':>9} {'per layer':>10}")
    for n in sizes:
        model, t_build = timed(chain, n)
        plan, t_explain = timed(explain, model, beta=1e-6, repeat=3)
        _, t_str = timed(str, plan)
        qmodel, t_quant = timed(quantize, model, beta=1e-6)
        assert len(qmodel.layers) == 1 + 1 + -(-n // 3), len(qmodel.layers)  # input quantizer + one per Dense
        print(f"{n:>7} {t_build:>11.2f}s {t_explain:>8.2f}s {t_str:>9.2f}s {t_quant:>8.2f}s "
              f"{1e3 * t_quant / n:>8.2f}ms", flush=True)
        del model, plan, qmodel
        keras.backend.clear_session()


if __name__ == "__main__":
    import threading

    threading.stack_size(512 * 1024 * 1024)  # room for that recursion
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 5000]
    worker = threading.Thread(target=main, args=(sizes,))
    worker.start()
    worker.join()

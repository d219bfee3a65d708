"""Wall time of the library's steps against model size.

Chain models (``bench_quantize.chain`` when it is importable: Dense(8) -> BatchNorm -> ReLU
repeated, one input) of N float layers:

- ``explain`` and ``quantize``: every size;
- ``trace_minmax`` (on 256 samples) and ``to_proxy_model``: sizes up to ``max_export``;
- hls4ml ``convert_from_keras_model`` + ``compile()`` of the proxy: sizes up to ``max_hls``.

Each step runs once (these are seconds-to-minutes operations, not micro-benchmarks).

Keras builds and walks functional models recursively: a 1,000-layer chain already exceeds
Python's default recursion limit inside ``keras.Model(...)`` itself. The section therefore
runs in a thread with a large stack and raises the recursion limit to what Keras needs for
the size (``n + 1000``); our library is measured under that same limit.
"""

import gc
import os
import sys
import threading
import time

import keras
import numpy as np

from harness import _quiet, error_record, ours_available


def chain_model(n_layers, width=8):
    try:
        from bench_quantize import chain

        return chain(n_layers, width=width), "bench_quantize.chain"
    except Exception:  # the other engineer's file not there or changed: same pattern, built here
        L = keras.layers
        x = keras.Input((width,), name="x")
        h = x
        for i in range(n_layers):
            h = (L.Dense(width, name=f"dense_{i}"), L.BatchNormalization(name=f"bn_{i}"),
                 L.ReLU(name=f"relu_{i}"))[i % 3](h)
        return keras.Model(x, h, name=f"chain{n_layers}"), "benchmarks/scaling.py"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def run_scaling(sizes, max_export, max_hls, workdir, log=print):
    """Run `scaling_rows` in a thread with a 512 MiB stack (deep Keras recursion)."""
    out = {}

    def target():
        try:
            out["rows"] = scaling_rows(sizes, max_export, max_hls, workdir, log)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            out["exc"] = exc

    old_stack = threading.stack_size(512 * 2**20)
    try:
        thread = threading.Thread(target=target, name="scaling")
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_stack)
    if "exc" in out:
        raise out["exc"]
    return out["rows"]


def scaling_rows(sizes, max_export, max_hls, workdir, log=print):
    import hgq_rewrite as hr

    _, to_proxy_model = ours_available()
    rows = []
    for n in sizes:
        row = {"layers": n}
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, n + 1000))
        row["recursion_limit"] = sys.getrecursionlimit()
        try:
            model, row["build_float_s"] = _timed(lambda: chain_model(n))
            model, row["chain_source"] = model
            _, row["explain_s"] = _timed(hr.explain, model, beta=1e-6)
            qmodel, row["quantize_s"] = _timed(hr.quantize, model, beta=1e-6)
            row["hgq_layers"] = len(qmodel.layers)
            if n <= max_export:
                x = np.random.default_rng(0).normal(size=(256, model.inputs[0].shape[1])).astype(np.float32)
                _, row["trace_minmax_s"] = _timed(hr.trace_minmax, qmodel, x)
                if to_proxy_model is None:
                    row["to_proxy_model"] = "not available yet"
                else:
                    proxy, row["to_proxy_model_s"] = _timed(to_proxy_model, qmodel, aggressive=True)
                    if n <= max_hls:
                        import hls4ml

                        with _quiet():
                            hls_model, row["hls4ml_convert_s"] = _timed(
                                hls4ml.converters.convert_from_keras_model, proxy, backend="Vitis",
                                io_type="io_parallel", output_dir=os.path.join(workdir, f"chain{n}"))
                            _, row["hls4ml_compile_s"] = _timed(hls_model.compile)
        except Exception as exc:  # record and go on with the next size
            row.update(error_record(exc))
        finally:
            sys.setrecursionlimit(old_limit)
        log(f"  scaling {n:>5} layers: " + ", ".join(
            f"{k} {v:.3f}s" for k, v in row.items() if k.endswith("_s")) + (f"  ERROR {row['error']}" if "error" in row else ""))
        rows.append(row)
        keras.backend.clear_session()
        gc.collect()
    return rows

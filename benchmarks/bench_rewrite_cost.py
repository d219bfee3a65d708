"""quantize() against keras.models.clone_model() on the same Dense-BatchNorm-ReLU chain.

For each size (float layers: 100, 1,000, 5,000 by default) the chain of `bench_quantize.chain`
is built once; then ``keras.models.clone_model(model)`` and ``hgq_rewrite.quantize(model)``
run in turn ``--rounds`` times (same process; the first round includes one-time costs) and the
ratio of the median times is recorded, with every round's times; so is the ratio of the median
process CPU times (``*_cpu_*``), which other jobs on a loaded machine disturb less than wall
time. The Python time of one more quantize run is split by who spends it (cProfile ``tottime``
grouped by package folder) at sizes <= ``--profile-max`` (default 1,000); that profile and one
of clone_model also count the eager backend ops each runs (``eager_ops``: a measure of the
work that does not depend on machine load).

quantize raises the recursion limit itself; clone_model and building the float chain need
it raised by the caller, so this script raises it (and runs in a thread with a 512 MiB
stack) for the float-side steps only. Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/bench_rewrite_cost.py [sizes...]
    # writes benchmarks/results/rewrite_cost.json
"""

import argparse
import cProfile
import datetime
import gc
import json
import os
import pstats
import statistics
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from bench_quantize import chain  # noqa: E402
from epoch_cost import git_commit  # noqa: E402

GROUPS = (
    ("hgq_rewrite/rewrite/handlers/", "handlers"),
    ("hgq_rewrite/rewrite/", "rewrite (walk, plan, build)"),
    ("hgq_rewrite/layers/", "HGQ layers"),
    ("hgq_rewrite/quantizers/", "quantizers"),
    ("hgq_rewrite/", "hgq_rewrite other"),
    ("keras/", "keras"),
    ("tensorflow/", "tensorflow"),
)


def _group(filename):
    for key, name in GROUPS:
        if key in filename:
            return name
    return "other (builtins, numpy, ...)"


def profiled(fn, *args, **kwargs):
    prof = cProfile.Profile()
    prof.enable()
    fn(*args, **kwargs)
    prof.disable()
    return pstats.Stats(prof).stats


def eager_ops(stats):
    """Backend ops run eagerly (TensorFlow's op dispatch entry points) in a profile."""
    return sum(calls for (_, _, name), (_, calls, _, _, _) in stats.items() if "TFE_Py_FastPathExecute" in name)


def profile_split(stats):
    split = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.items():
        split[_group(filename)] = split.get(_group(filename), 0.0) + tottime
    total = sum(split.values())
    return {k: round(v / total, 3) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}


def timed(fn, *args, **kwargs):
    out, wall, _ = timed_cpu(fn, *args, **kwargs)
    return out, wall


def timed_cpu(fn, *args, **kwargs):
    """(result, wall seconds, process CPU seconds)."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(sizes, profile_max, rounds):
    rows = []
    default_limit = sys.getrecursionlimit()
    for n in sizes:
        sys.setrecursionlimit(max(default_limit, 4 * n + 2000))  # float side only
        model, t_build = timed(chain, n)
        t_clone, t_quant, c_clone, c_quant = [], [], [], []
        for _ in range(rounds):
            sys.setrecursionlimit(max(default_limit, 4 * n + 2000))
            clone, t, c = timed_cpu(keras.models.clone_model, model)
            t_clone.append(round(t, 3))
            c_clone.append(round(c, 3))
            del clone
            sys.setrecursionlimit(default_limit)  # quantize must cope on its own
            qmodel, t, c = timed_cpu(hr.quantize, model, beta=1e-6)
            t_quant.append(round(t, 3))
            c_quant.append(round(c, 3))
        plan, t_explain = timed(hr.explain, model, beta=1e-6)
        clone_s, quantize_s = statistics.median(t_clone), statistics.median(t_quant)
        clone_cpu, quantize_cpu = statistics.median(c_clone), statistics.median(c_quant)
        row = {"layers": n, "build_float_s": round(t_build, 3), "clone_model_s": clone_s,
               "quantize_s": quantize_s, "clone_model_rounds_s": t_clone, "quantize_rounds_s": t_quant,
               "explain_s": round(t_explain, 3), "ratio_quantize_over_clone": round(quantize_s / clone_s, 2),
               "clone_model_cpu_rounds_s": c_clone, "quantize_cpu_rounds_s": c_quant,
               "ratio_cpu_quantize_over_clone": round(quantize_cpu / clone_cpu, 2),
               "hgq_model_layers": len(qmodel.layers), "clone_variables": len(model.weights),
               "hgq_variables": len(qmodel.weights), "recursion_limit_during_quantize": default_limit}
        del qmodel, plan
        if n <= profile_max:
            stats = profiled(hr.quantize, model, beta=1e-6)
            row["quantize_python_time_split"] = profile_split(stats)
            row["quantize_eager_ops"] = eager_ops(stats)
            sys.setrecursionlimit(max(default_limit, 4 * n + 2000))
            row["clone_model_eager_ops"] = eager_ops(profiled(keras.models.clone_model, model))
            sys.setrecursionlimit(default_limit)
        print(json.dumps(row), flush=True)
        rows.append(row)
        del model
        keras.backend.clear_session()
        gc.collect()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[100, 1000, 5000])
    ap.add_argument("--profile-max", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="clone_model / quantize runs per size (median)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "rewrite_cost.json"))
    args = ap.parse_args()
    out = {}
    load_before = os.getloadavg()

    def target():
        out["rows"] = run(args.sizes, args.profile_max, args.rounds)

    threading.stack_size(512 * 2**20)
    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    result = {"what": "quantize(model, beta=1e-6) / keras.models.clone_model(model), Dense(8)-BatchNorm-ReLU chain, "
                      f"median of {args.rounds} alternating runs each, TF CPU, 2 shared cores",
              "command": " ".join(["python", *sys.argv]), "backend": keras.config.backend(),
              "keras": keras.__version__, "commit": git_commit(os.path.dirname(HERE)),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]}, "rows": out["rows"]}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

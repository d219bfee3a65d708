"""Issue 14: da4ml's LUT estimate against EBOPs, for our models and HGQ2's, on the issue-11 tasks.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/lut_vs_ebops.py   # ~6 min on 2 cores
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/lut_vs_ebops.py --epochs 1 --betas 1e-5 --tag smoke

Tasks, data and models are those of ``front_vs_hgq2.py`` (imported): ``digits8`` (8x8 conv net) and
``mnist1d`` (MLP 40-64-32-10). Per task and beta, one point of each library (short training):

- ``ours``: ``quantize(trained float, beta, calibration_data=x)`` + ``finetune`` (lr 1e-3), then
  ``trace_minmax`` on the training set; LUTs from ``hr.estimate_resources`` (the proxy replayed on
  da4ml's variables, ``aggressive=True`` like the export).
- ``hgq2``: the HGQ2 twin trained from scratch (lr 3e-3) with ``FreeEBOPs``, ``trace_minmax``; LUTs
  through da4ml's own path, ``da4ml.converter.trace_model`` -> ``da4ml.trace.comb_trace`` ``.cost``.

EBOPs: the ``benchmarks/ebops.py`` rule (hls4ml's bit-exact conversion of the exported model), the
same for both libraries. Fits: LUT ~= a * EBOPs (least squares through the origin) and the slope of
log LUT vs log EBOPs, per library and task and pooled. Writes ``results/lut_vs_ebops[_TAG].json``
and ``.png`` (per task: the front in EBOPs, the front in LUTs, and LUTs vs EBOPs).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import harness as H  # noqa: E402
from front_vs_hgq2 import FLOAT_LR, REWRITE_LR, float_model, load, train_hgq2  # noqa: E402

LIBS = ("ours", "hgq2")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_ours(fm, data, beta, epochs, seed, workdir):
    import hgq_rewrite as hr

    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    qmodel = hr.quantize(fm, beta=beta, calibration_data=x)
    hr.finetune(qmodel, x, y, epochs=epochs, batch_size=64, learning_rate=REWRITE_LR, verbose=0)
    out = {"own_ebops": float(hr.trace_minmax(qmodel, x))}
    out.update(H.export_ours(qmodel, xt, yt, False, workdir))
    out["test_accuracy"] = out.get("proxy_test_accuracy", H.accuracy(qmodel, xt, yt))
    t0 = time.perf_counter()
    try:
        est = hr.estimate_resources(qmodel, aggressive=True)
        out.update(luts=est.luts, latency=est.latency, adder_depth=est.adder_depth,
                   luts_per_layer={r["name"]: r["luts"] for r in est.layers})
    except Exception as e:  # noqa: BLE001
        out["da4ml_error"] = H.error_record(e)["error"]
    out["da4ml_s"] = time.perf_counter() - t0
    return out


def hgq2_luts(model):
    """HGQ2 through da4ml's own path: trace_model -> comb_trace."""
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace

    inp, out = trace_model(model)
    comb = comb_trace(inp, out)
    return {"luts": float(comb.cost), "latency": float(comb.latency[1])}


def run_hgq2(task, data, beta, epochs, seed, workdir):
    model, out = train_hgq2(task, data, beta, epochs, seed)
    out.update(H.export_hgq2(model, data[2], data[3], False, workdir))
    t0 = time.perf_counter()
    try:
        out.update(hgq2_luts(model))
    except Exception as e:  # noqa: BLE001 - keep our points when HGQ2's da4ml path fails
        out["da4ml_error"] = H.error_record(e)["error"]
    out["da4ml_s"] = time.perf_counter() - t0
    return out


def fit(points):
    """LUT ~= a * EBOPs through the origin, and the log-log slope (None below 2 points)."""
    pts = [(p["ebops"], p["luts"]) for p in points if p.get("luts") and p.get("ebops")]
    if not pts:
        return None
    e, l_ = (np.array(v, dtype=np.float64) for v in zip(*pts))
    a = float(np.sum(e * l_) / np.sum(e * e))
    res = {"n": len(pts), "lut_per_ebop": a, "median_ratio": float(np.median(l_ / e)),
           "r2_through_origin": float(1 - np.sum((l_ - a * e) ** 2) / np.sum(l_ ** 2))}
    if len(pts) >= 2 and np.ptp(np.log(e)) > 0:
        slope, icpt = np.polyfit(np.log(e), np.log(l_), 1)
        res.update(loglog_slope=float(slope), loglog_intercept=float(icpt))
    return res


def front(points, key):
    """Pareto front (higher accuracy at lower ``key``) of points sorted by ``key``."""
    out, best = [], -1.0
    for p in points:
        if p["test_accuracy"] > best:
            out.append(p)
            best = p["test_accuracy"]
    return out


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"])
    fig, axes = plt.subplots(len(tasks), 3, figsize=(14, 3.8 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        runs = results["tasks"][task]["runs"]
        for lib, color in zip(LIBS, ("C3", "C0")):
            pts = sorted((r for k, r in runs.items() if k.startswith(lib + "@") and "error" not in r),
                         key=lambda r: r["ebops"])
            if not pts:
                continue
            for ax, key in ((row[0], "ebops"), (row[1], "luts")):
                pk = sorted((p for p in pts if p.get(key)), key=lambda r: r[key])
                if not pk:
                    continue
                ax.scatter([p[key] for p in pk], [p["test_accuracy"] for p in pk], c=color, s=14, alpha=0.5)
                fr = front(pk, key)
                ax.plot([p[key] for p in fr], [p["test_accuracy"] for p in fr], "o-", c=color, label=f"{lib} front")
            lp = [p for p in pts if p.get("luts")]
            if lp:
                row[2].scatter([p["ebops"] for p in lp], [p["luts"] for p in lp], c=color, label=lib)
        f = results["fits"].get(task, {}).get("all")
        row[2].set_xscale("log")
        row[2].set_yscale("log")
        if f:
            xs = np.array(row[2].get_xlim())
            row[2].plot(xs, f["lut_per_ebop"] * xs, "k--", lw=1, label=f"LUT = {f['lut_per_ebop']:.2f}·EBOPs")
        row[0].set(xlabel="EBOPs", ylabel="test accuracy", title=f"{task}: front in EBOPs")
        row[1].set(xlabel="da4ml LUTs", ylabel="test accuracy", title=f"{task}: front in da4ml LUTs")
        row[2].set(xlabel="EBOPs", ylabel="da4ml LUTs", title=f"{task}: LUTs vs EBOPs")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["digits8", "mnist1d"], choices=["mnist1d", "digits8"])
    p.add_argument("--betas", nargs="+", type=float, default=[1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
    p.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON")
    args = p.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "lut_vs_ebops" + (f"_{args.tag}" if args.tag else ""))
    if args.replot:
        with open(stem + ".json") as f:
            plot(json.load(f), stem + ".png")
        return
    results = {"command": "python benchmarks/lut_vs_ebops.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "epochs": args.epochs, "seed": args.seed, "betas": args.betas, "libs": args.libs,
               "hwconf": [1, -1, -1], "tasks": {}, "fits": {}}

    def save():
        with open(stem + ".json", "w") as f:
            json.dump(results, f, indent=1)

    t_start = time.perf_counter()
    for task in args.tasks:
        data = load(task)
        x, y, xt, yt = data
        keras.utils.set_random_seed(args.seed)
        fm = float_model(task)
        fm.compile(keras.optimizers.Adam(FLOAT_LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
        fm.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0)
        tr = {"float_test_accuracy": H.accuracy(fm, xt, yt), "runs": {}}
        results["tasks"][task] = tr
        log(f"{task}: float {tr['float_test_accuracy']:.3f}")
        for beta in args.betas:
            for lib in args.libs:
                t0 = time.perf_counter()
                with H.workdir() as wd:
                    try:
                        r = (run_ours(fm, data, beta, args.epochs, args.seed, wd) if lib == "ours"
                             else run_hgq2(task, data, beta, args.epochs, args.seed, wd))
                    except Exception as e:  # noqa: BLE001
                        r = H.error_record(e)
                r["wall_s"] = time.perf_counter() - t0
                tr["runs"][f"{lib}@{beta:g}"] = r
                save()
                msg = r.get("error") or (f"{r['test_accuracy']:.3f} @ {r['ebops']:,.0f} EBOPs, "
                                         + (f"{r['luts']:,.0f} LUTs" if "luts" in r else r.get("da4ml_error", "")))
                log(f"{task} beta={beta:g} {lib}: {msg} [{r['wall_s']:.0f}s]")
        ok = [r for r in tr["runs"].values() if "error" not in r]
        results["fits"][task] = {"all": fit(ok), **{lib: fit([r for k, r in tr["runs"].items()
                                                              if k.startswith(lib + "@") and "error" not in r])
                                                    for lib in args.libs}}
        save()
    everything = [r for t in results["tasks"].values() for r in t["runs"].values() if "error" not in r]
    results["fits"]["pooled"] = {"all": fit(everything), **{lib: fit(
        [r for t in results["tasks"].values() for k, r in t["runs"].items() if k.startswith(lib + "@")
         and "error" not in r]) for lib in args.libs}}
    results["wall_s"] = time.perf_counter() - t_start
    save()
    plot(results, stem + ".png")
    log(f"fits: {json.dumps(results['fits']['pooled'], indent=1)}")
    log(f"wrote {stem}.json/.png")


if __name__ == "__main__":
    main()

"""Engine ablation: which training choice moves our accuracy-vs-EBOPs front (issue 11).

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/engine_ablation.py --task mnist1d --seed 0 \
        --betas 1e-4 --variants default scale1 scale3 [--hgq2] [--out results/ablation_mnist1d.json]

One trained float model per (task, seed); every variant rewrites it with ``quantize(calibration_data=x)``
and fine-tunes it for the task's N epochs (the settings of ``run.py``) at a fixed beta. ``--hgq2`` adds
HGQ2 from scratch with the same N epochs as the reference row. EBOPs are the unified rule of
``benchmarks/ebops.py`` on the exported hls4ml model (no C simulation), accuracy is the test accuracy of
the model itself. A variant is a set of keyword arguments for ``quantize`` / ``finetune`` (see VARIANTS).
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

import harness as H  # noqa: E402
from models import float_model  # noqa: E402
from run import FULL, load  # noqa: E402

def _l1(value):
    return {"defaults": {"kernel": {"l1": value}, "output": {"l1": value}}}


_NO_L1 = _l1(0.0)

# name -> quantize kwargs, finetune kwargs; "scratch": rewrite the untrained float model;
# "calibrate": quantize(calibration_data=x) (the default)
VARIANTS = {
    "default": {},
    "scale1": {"finetune": {"bitwidth_lr_scale": 1.0}},
    "scale3": {"finetune": {"bitwidth_lr_scale": 3.0}},
    "scale30": {"finetune": {"bitwidth_lr_scale": 30.0}},
    "nocalib": {"calibrate": False},
    "nocalib_scale3": {"calibrate": False, "finetune": {"bitwidth_lr_scale": 3.0}},
    "l1zero_scale3": {"quantize": {"config": _NO_L1}, "finetune": {"bitwidth_lr_scale": 3.0}},
    "prune0": {"quantize": {"config": {"defaults": {"kernel": {"prune_margin": 0.0}}}}},
    "l1_1e8": {"quantize": {"config": _l1(1e-8)}},
    "l1_1e7": {"quantize": {"config": _l1(1e-7)}},
    "scratch": {"scratch": True, "calibrate": False},
    "scratch_scale3": {"scratch": True, "calibrate": False, "finetune": {"bitwidth_lr_scale": 3.0}},
    # the start point: the trained float weights scaled before quantize (kernels and biases x0.5; or only the
    # last kernel layer's, its logits /8), or fine-tuned at a larger learning rate
    "shrink0.5": {"scale_weights": 0.5},
    "logits_div8": {"scale_weights": 0.125, "last_only": True},
    "lr1e-2": {"learning_rate": 1e-2},
    # each grown kernel steps rms/glorot_rms times faster (finetune's relative_weight_step), or not
    "relstep": {"finetune": {"relative_weight_step": True}},
    "plainstep": {"finetune": {"relative_weight_step": False}},
    # the engine before the cosine learning-rate decay and the controller's band under the target, and each alone
    "previous": {"finetune": {"lr_decay": None, "beta_control": {"band": None}}},
    "constlr": {"finetune": {"lr_decay": None}},
    "noband": {"finetune": {"beta_control": {"band": None}}},
    "shrink": {"finetune": {"shrink": 0.5}},
    "noshrink": {"finetune": {"shrink": None}},  # the default before shrink="auto"
    # the controller acts on the error expected this many epochs ahead (BetaController's lead)
    "lead1": {"finetune": {"beta_control": {"lead": 1.0}}},
    "lead2": {"finetune": {"beta_control": {"lead": 2.0}}},
    # below the target beta reaches beta_min 5 % (not 20 %) under it
    "band0.05": {"finetune": {"beta_control": {"band": 0.05}}},
    # no bit-count regulariser (l1) beside beta, with the controller as it is or with lead 1
    "l1zero": {"quantize": {"config": _NO_L1}},
    "l1zero_lead1": {"quantize": {"config": _NO_L1}, "finetune": {"beta_control": {"lead": 1.0}}},
    # the controller's warm-up (default 2 epochs): every warm-up epoch is one fewer trained at the budget
    "warmup1": {"finetune": {"beta_control": {"warmup": 1}}},
    "warmup2": {"finetune": {"beta_control": {"warmup": 2}}},
    "warmup5": {"finetune": {"beta_control": {"warmup": 5}}},  # the default before 2
}


def scaled_copy(float_m, factor, last_only):
    """A copy of ``float_m`` whose kernel layers' kernels and biases are multiplied by ``factor``
    (only the last kernel layer's with ``last_only``)."""
    copy = keras.models.clone_model(float_m)
    copy.set_weights(float_m.get_weights())
    layers = [layer for layer in copy.layers if hasattr(layer, "kernel")]
    for layer in layers[-1:] if last_only else layers:
        for var in (layer.kernel, getattr(layer, "bias", None)):
            if var is not None:
                var.assign(factor * keras.ops.convert_to_numpy(var))
    return copy


def run_variant(name, task, float_m, data, beta, cfg, lr, seed, workdir, target=None):
    import hgq_rewrite as hr

    v = VARIANTS[name]
    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    start = float_model(task) if v.get("scratch") else float_m
    if "scale_weights" in v:
        start = scaled_copy(float_m, v["scale_weights"], v.get("last_only", False))
    calib = {"calibration_data": x} if v.get("calibrate", True) else {}
    qmodel = hr.quantize(start, beta=beta, **calib, **v.get("quantize", {}))
    fkw = dict(v.get("finetune", {}))
    if target:
        fkw.update(target_ebops=target)
    elif "beta_control" in fkw:
        del fkw["beta_control"]  # fixed beta: no controller
    hist, front = hr.finetune(qmodel, x, y, epochs=cfg["epochs"], batch_size=cfg["batch_size"], learning_rate=v.get("learning_rate", lr), verbose=0, **fkw)
    if target and front.reached:
        front.chosen.restore(qmodel)
    own = float(hr.trace_minmax(qmodel, x))
    out = {"variant": name, "beta": beta, "seed": seed, "own_ebops": own, "test_accuracy": H.accuracy(qmodel, xt, yt),
           "train_s": time.perf_counter() - t0, "ebops_history": [float(v) for v in hist.history.get("ebops", [])], "target_ebops": target}
    out["ebops"] = H.export_ours(qmodel, xt, yt, False, os.path.join(workdir, f"{name}_{beta:g}"))["ebops"]
    return out


def hgq2_rows(path, task):
    """``{(seed, beta): row}``: the hgq2 rows of ``task`` in an ``--out`` file."""
    return {(r["seed"], r["beta"]): r for run in json.load(open(path))["runs"] if run["task"] == task
            for r in run["rows"] if r["variant"] == "hgq2"}


def append_run(path, task, rows):
    """Add one run (``task``, this command's arguments, ``rows``) to the JSON file ``path`` (created if needed)."""
    old = json.load(open(path)) if os.path.exists(path) else {"runs": []}
    old["runs"].append({"task": task, "argv": sys.argv[1:], "rows": rows})
    with open(path, "w") as f:
        json.dump(old, f, indent=1)


def summarize(rows):
    """Mean accuracy and EBOPs over seeds, per (beta, variant)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["beta"], r["variant"]), []).append(r)
    for (beta, name), rs in sorted(groups.items()):
        acc = sum(r["test_accuracy"] for r in rs) / len(rs)
        ebops = sum(r["ebops"] for r in rs) / len(rs)
        print(f"mean beta={beta:g} {name:16s} acc {acc:.4f} EBOPs {ebops:,.0f} ({len(rs)} seeds)", flush=True)


def report(path):
    """Markdown: per task and beta, each row's mean accuracy @ mean EBOPs over seeds, its gain over the hgq2
    row of the same seeds, and the EBOPs / target range of the runs aimed at a target."""
    lines = []
    for run in json.load(open(path))["runs"]:
        lines += [f"### {run['task']}: `{' '.join(run['argv'])}`", "",
                  "| beta | row | seeds | accuracy | EBOPs | vs hgq2 | EBOPs / target |", "|---|---|---|---|---|---|---|"]
        rows = run["rows"]
        for beta in sorted({r["beta"] for r in rows}):
            ref = {r["seed"]: r for r in rows if r["beta"] == beta and r["variant"] == "hgq2"}
            for name in dict.fromkeys(r["variant"] for r in rows):
                rs = [r for r in rows if r["beta"] == beta and r["variant"] == name]
                if not rs:
                    continue
                acc, ebops = (sum(r[k] for r in rs) / len(rs) for k in ("test_accuracy", "ebops"))
                gain = ""
                if name != "hgq2" and all(r["seed"] in ref for r in rs):
                    ref_acc = sum(ref[r["seed"]]["test_accuracy"] for r in rs) / len(rs)
                    ref_ebops = sum(ref[r["seed"]]["ebops"] for r in rs) / len(rs)
                    gain = f"{100 * (acc - ref_acc):+.1f} pp, {ebops / ref_ebops:.2f}x EBOPs"
                ratios = [r["ebops"] / r["target_ebops"] for r in rs if r.get("target_ebops")]
                span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
                lines.append(f"| {beta:g} | {name} | {len(rs)} | {acc:.4f} | {ebops:,.0f} | {gain} | {span} |")
        lines.append("")
    return "\n".join(lines)


def sweep_parser(doc, task, seeds, betas):
    """The arguments every sweep script here takes: ``--task``, ``--seeds``, ``--betas`` (with these defaults)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=task, choices=list(FULL["tasks"]))
    p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    p.add_argument("--betas", type=float, nargs="+", default=betas)
    return p


def main(argv=None):
    p = sweep_parser(__doc__, "mnist1d", [0], [1e-4])
    p.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    p.add_argument("--target", type=float, nargs="+", help="finetune(target_ebops=...) per beta (beta then unused)")
    p.add_argument("--hgq2", action="store_true", help="also HGQ2 from scratch, N epochs (the reference)")
    p.add_argument("--hgq2-lr", type=float, nargs="*", default=[],
                   help="also HGQ2 from scratch at these learning rates (rows hgq2_lr<value>)")
    p.add_argument("--target-hgq2", action="store_true",
                   help="finetune(target_ebops = HGQ2's EBOPs at that beta and seed), as run.py's ours_target row")
    p.add_argument("--reuse-hgq2", metavar="JSON",
                   help="take the hgq2 rows (and, with --target-hgq2, the targets) of this task from an earlier --out "
                   "file instead of training HGQ2 again")
    p.add_argument("--out", help="JSON file for the results (appended to when it exists)")
    p.add_argument("--report", metavar="JSON", help="only print the markdown summary of an --out file")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    if args.target_hgq2 and not (args.hgq2 or args.reuse_hgq2):
        p.error("--target-hgq2 needs --hgq2 or --reuse-hgq2")
    reused = hgq2_rows(args.reuse_hgq2, args.task) if args.reuse_hgq2 else {}

    cfg, lr = FULL["tasks"][args.task], FULL["lr"]
    settings = {"max_train": None, "max_test": None}
    rows = []
    with H.workdir(None) as scratch:
        for seed in args.seeds:
            data = load(args.task, settings, seed=seed)
            float_m, _ = H.train_float(args.task, data, cfg["float_epochs"], cfg["batch_size"], lr, seed)
            for j, beta in enumerate(args.betas):
                target = args.target[j] if args.target else None
                if args.reuse_hgq2:
                    if (seed, beta) not in reused:
                        p.error(f"--reuse-hgq2: no hgq2 row of {args.task} seed {seed} beta {beta:g} in {args.reuse_hgq2}")
                    rows.append(reused[seed, beta])
                    target = reused[seed, beta]["ebops"] if args.target_hgq2 else target
                elif args.hgq2:
                    model, tr = H.train_hgq2(args.task, None, data, beta, cfg["epochs"], cfg["batch_size"], lr, seed)
                    ex = H.export_hgq2(model, data[2], data[3], False, os.path.join(scratch, f"hgq2_{beta:g}"))
                    rows.append({"variant": "hgq2", "beta": beta, "seed": seed, "test_accuracy": tr["test_accuracy"],
                                 "ebops": ex["ebops"]})
                    if args.target_hgq2:
                        target = ex["ebops"]
                    print(f"{args.task} seed {seed} beta={beta:g} hgq2: acc {tr['test_accuracy']:.4f} "
                          f"EBOPs {ex['ebops']:,.0f}", flush=True)
                for hlr in args.hgq2_lr:
                    model, tr = H.train_hgq2(args.task, None, data, beta, cfg["epochs"], cfg["batch_size"], hlr, seed)
                    ex = H.export_hgq2(model, data[2], data[3], False, os.path.join(scratch, f"hgq2_{beta:g}_{hlr:g}"))
                    rows.append({"variant": f"hgq2_lr{hlr:g}", "beta": beta, "seed": seed,
                                 "test_accuracy": tr["test_accuracy"], "ebops": ex["ebops"]})
                    print(f"{args.task} seed {seed} beta={beta:g} hgq2 lr {hlr:g}: acc {tr['test_accuracy']:.4f} "
                          f"EBOPs {ex['ebops']:,.0f}", flush=True)
                for name in args.variants:
                    r = run_variant(name, args.task, float_m, data, beta, cfg, lr, seed, scratch, target)
                    rows.append(r)
                    print(f"{args.task} seed {seed} beta={beta:g} {name}: acc {r['test_accuracy']:.4f} "
                          f"EBOPs {r['ebops']:,.0f} (own {r['own_ebops']:,.0f}, {r['train_s']:.0f}s)"
                          + (f" target ratio {r['ebops'] / target:.2f}" if target else ""), flush=True)
    summarize(rows)
    if args.out:
        append_run(args.out, args.task, rows)


if __name__ == "__main__":
    main()

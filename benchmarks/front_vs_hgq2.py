"""Issue 11: accuracy-vs-EBOPs of the rewrite flow against hand-built HGQ2, before/after the engine fixes.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/front_vs_hgq2.py --epochs 60            # full
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/front_vs_hgq2.py --epochs 15 --tasks mnist1d --tag quick

Tasks (the issue's):
- ``mnist1d``: MLP 40-64-32-10 on MNIST-1D from the ``mnist1d`` package
  (``make_dataset(get_dataset_args())``: 4,000 train / 1,000 test; generated offline).
- ``digits8``: scikit-learn digits 8x8, Conv2D(8,3,relu)-MaxPool(2)-Conv2D(16,3,relu)-Flatten-Dense(10)
  (1,437 train / 360 test).

Rows, every one with Adam, batch 64, the same seed and number of epochs:
- ``hgq2``: HGQ2 0.2.0 hand-built, from scratch, lr 3e-3, HGQ2 defaults.
- ``scratch_before`` / ``scratch_after``: ours, ``quantize(untrained float)`` + finetune at lr 3e-3,
  with the seed engine settings / with the current library defaults.
- ``rewrite_before`` / ``rewrite_after``: ours, ``quantize(trained float)`` + ``finetune`` at lr 1e-3
  (the README flow) with the seed engine settings (activation init_bw 8, kernel init_bw 4, bitwidth
  step = lr, conv ``parallel_factor`` set to the output positions by config) / with the current
  defaults (``quantize(..., calibration_data=x)``, finetune's default bitwidth step, default
  conv ``parallel_factor``).

EBOPs: one rule for both libraries (``benchmarks/ebops.py``, read off the hls4ml conversion of the
exported model). Accuracy: test accuracy of the exported model (our proxy / the HGQ2 model), after
``trace_minmax`` on the training set. Each point is the model at the end of training.

Writes ``results/front_vs_hgq2[_TAG].json`` after every run and ``.md`` at the end.
"""

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

import harness as H  # noqa: E402
from data import LOADERS  # noqa: E402
from models import float_model as shared_float_model  # noqa: E402

ROWS = ("hgq2", "scratch_before", "scratch_after", "rewrite_before", "rewrite_after")
ROW_LABELS = {
    "hgq2": "HGQ2 0.2.0, hand-built, from scratch, lr 3e-3",
    "scratch_before": "ours, quantize(untrained float), lr 3e-3, seed engine",
    "scratch_after": "ours, quantize(untrained float), lr 3e-3, new defaults",
    "rewrite_before": "ours, quantize(trained float) + finetune lr 1e-3, seed engine",
    "rewrite_after": "ours, quantize(trained float, calibration_data=x) + finetune lr 1e-3, new defaults",
    "rewrite_before+calib=1": "ablation: seed engine + calibrated initial bits only",
    "rewrite_before+scale=10": "ablation: seed engine + bitwidth step x10 only",
}
SCRATCH_LR, REWRITE_LR, FLOAT_LR = 3e-3, 1e-3, 3e-3


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data and models ------------------------------------------------------------------------------
TASKS = {"mnist1d": "mnist1d_pkg", "digits8": "digits8"}  # this script's task -> the shared data/model name


def load(task):
    return LOADERS[TASKS[task]]()


def float_model(task):
    return shared_float_model(TASKS[task])


def seed_conv_config(task):
    """The seed's way to count convs fully parallel: parallel_factor = output positions, by config."""
    if task == "digits8":
        return {"names": {"conv1": {"parallel_factor": 36}, "conv2": {"parallel_factor": 1}}}
    return None


@contextlib.contextmanager
def seed_engine():
    """The engine settings before issue 11: activation init_bw 8, kernel init_bw 4."""
    import hgq_rewrite as hr

    kq, paq = hr.get_default_kq_conf(), hr.get_default_paq_conf()
    hr.set_default_kq_conf(init_bw=4.0)
    hr.set_default_paq_conf(init_bw=8.0)
    try:
        yield
    finally:
        hr.set_default_kq_conf(kq)
        hr.set_default_paq_conf(paq)


# -- one run --------------------------------------------------------------------------------------
ROW_KNOBS = {
    "scratch_before": dict(scratch=True, seed_engine=True, scale=1.0, calib=False),
    "scratch_after": dict(scratch=True, seed_engine=False, scale=None, calib=False),
    "rewrite_before": dict(scratch=False, seed_engine=True, scale=1.0, calib=False),
    "rewrite_after": dict(scratch=False, seed_engine=False, scale=None, calib=True),
}


def knobs_of(row):
    """Knobs of a row name; exploration rows look like ``rewrite_before+scale=10+calib=1+tol=0.05``."""
    base, *extra = row.split("+")
    knobs = dict(ROW_KNOBS[base])
    for item in extra:
        key, value = item.split("=")
        knobs[key] = float(value)
    return knobs


def run_ours(row, task, float_trained, data, beta, epochs, seed, workdir):
    import hgq_rewrite as hr

    x, y, xt, yt = data
    knobs = knobs_of(row)
    keras.utils.set_random_seed(seed)
    scratch = knobs["scratch"]
    src = float_model(task) if scratch else float_trained
    lr = knobs.get("lr", SCRATCH_LR if scratch else REWRITE_LR)
    ctx = seed_engine() if knobs["seed_engine"] else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        kwargs = {}
        if knobs["calib"]:
            kwargs["calibration_data"] = x
            if "tol" in knobs:
                kwargs["init_tolerance"] = knobs["tol"]
        config = seed_conv_config(task) if knobs["seed_engine"] else None
        qmodel = hr.quantize(src, beta=beta, config=config, **kwargs)
        t_init = time.perf_counter() - t0
        init_acc = H.accuracy(qmodel, xt, yt)
        ft_kwargs = {} if knobs["scale"] is None else {"bitwidth_lr_scale": knobs["scale"]}
        timer = H.EpochTimer()
        hist, _ = hr.finetune(qmodel, x, y, epochs=epochs, batch_size=64, learning_rate=lr, verbose=0,
                              callbacks=[timer], **ft_kwargs)
    own = float(hr.trace_minmax(qmodel, x))
    out = {"own_ebops": own, "keras_test_accuracy": H.accuracy(qmodel, xt, yt), "quantize_s": t_init,
           "initial_test_accuracy": init_acc, "knobs": knobs,
           "median_epoch_s": H.median_epoch(timer.times), "learning_rate": lr,
           "bops_history": [float(v) for v in hist.history.get("bops", [])]}
    out.update(H.export_ours(qmodel, xt, yt, False, workdir))
    out["test_accuracy"] = out.get("proxy_test_accuracy", out["keras_test_accuracy"])
    return out


def train_hgq2(task, data, beta, epochs, seed):
    """HGQ2 hand-built, from scratch, lr 3e-3, batch 64 (the issue's recipe): (model, record)."""
    return H.train_hgq2(TASKS[task], None, data, beta, epochs, 64, SCRATCH_LR, seed)


def run_hgq2(task, data, beta, epochs, seed, workdir):
    model, out = train_hgq2(task, data, beta, epochs, seed)
    out["learning_rate"] = SCRATCH_LR
    out.update(H.export_hgq2(model, data[2], data[3], False, workdir))
    return out


# -- report ---------------------------------------------------------------------------------------
def markdown(results):
    lines = [f"# Issue 11: rewrite flow vs hand-built HGQ2 ({results['epochs']} epochs, seed {results['seed']})", "",
             "Test accuracy @ EBOPs (one rule for both libraries, `benchmarks/ebops.py`), model at the end of "
             "training. Command: `" + results["command"] + "`", ""]
    for task, tr in results["tasks"].items():
        betas = results["betas"]
        lines += [f"## {task} (float model {tr['float_test_accuracy']:.3f})", "",
                  "| | " + " | ".join(f"β={b:g}" for b in betas) + " |", "|---|" + "---|" * len(betas)]
        for row in results["rows"]:
            cells = []
            for b in betas:
                r = tr["runs"].get(f"{row}@{b:g}")
                if r is None:
                    cells.append("–")
                elif "error" in r:
                    cells.append("error")
                else:
                    cells.append(f"{r['test_accuracy']:.3f} @ {r['ebops'] / 1e3:.1f}k")
            lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["mnist1d", "digits8"], choices=["mnist1d", "digits8"])
    p.add_argument("--betas", nargs="+", type=float, default=[1e-6, 1e-5, 1e-4])
    p.add_argument("--rows", nargs="+", default=list(ROWS),
                   help=f"rows among {ROWS}; exploration: ROW+scale=10+calib=1+tol=0.05")
    p.add_argument("--epochs", type=int, default=60, help="fine-tuning / scratch epochs (default 60)")
    p.add_argument("--float-epochs", type=int, default=None, help="float model epochs (default: --epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "front_vs_hgq2" + (f"_{args.tag}" if args.tag else ""))
    results = {"command": "python benchmarks/front_vs_hgq2.py " + " ".join(argv or sys.argv[1:]),
               "epochs": args.epochs, "seed": args.seed, "betas": args.betas, "rows": args.rows,
               "batch_size": 64, "tasks": {}}

    def save():
        with open(stem + ".json", "w") as f:
            json.dump(results, f, indent=1)

    for task in args.tasks:
        data = load(task)
        x, y, xt, yt = data
        keras.utils.set_random_seed(args.seed)
        fm = float_model(task)
        fm.compile(keras.optimizers.Adam(FLOAT_LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
        fm.fit(x, y, epochs=args.float_epochs or args.epochs, batch_size=64, verbose=0)
        tr = {"float_test_accuracy": H.accuracy(fm, xt, yt), "n_train": len(x), "n_test": len(xt), "runs": {}}
        results["tasks"][task] = tr
        log(f"{task}: float {tr['float_test_accuracy']:.3f}")
        for beta in args.betas:
            for row in args.rows:
                t0 = time.perf_counter()
                with H.workdir() as wd:
                    try:
                        r = (run_hgq2(task, data, beta, args.epochs, args.seed, wd) if row == "hgq2"
                             else run_ours(row, task, fm, data, beta, args.epochs, args.seed, wd))
                    except Exception as e:  # noqa: BLE001 - one failing row must not hide the others
                        r = H.error_record(e)
                r["wall_s"] = time.perf_counter() - t0
                tr["runs"][f"{row}@{beta:g}"] = r
                save()
                msg = r.get("error") or (
                    f"{r['test_accuracy']:.3f} @ {r['ebops']:,.0f} EBOPs (own {r['own_ebops']:,.0f})")
                log(f"{task} beta={beta:g} {row}: {msg} [{r['wall_s']:.0f}s]")
    with open(stem + ".md", "w") as f:
        f.write(markdown(results))
    log(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()

"""Rules for beta under the budget: does switching the penalty off hold ``target_ebops`` closer? (issue 11)

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/controller_rules.py --task digits8 --seeds 0 1 2 \
        --rules band gate adaptive_gate --out results/controller_rules.json

``finetune(target_ebops=T)`` of the rewritten trained float model (``quantize(calibration_data=x)``, the
settings of ``run.py``), with T = HGQ2-from-scratch's EBOPs at each beta and seed (the hgq2 rows of
``results/lr_decay_and_band_<task>.json``, the targets of ``run.py``'s ``ours_target`` row). Rules:

- ``band``: the controller as it is (below the target beta falls linearly to ``beta_min`` 20 % under it);
- ``gate``: after the warm-up, an epoch that ends under the target makes the next epoch's beta 0;
- ``adaptive_gate``: ``gate`` until an epoch trained at beta 0 ends more than 10 % over the target (the
  task loss still asks for bits), ``band`` from then on.

The gates are a callback after finetune's `BetaController` that overrides the beta it sets. One float model
per (task, seed); every rule fine-tunes a rewrite of it. Recorded per run: test accuracy of the chosen
member, its EBOPs / target and the last epoch's, every epoch's EBOPs and beta.
"""

import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

import harness as H  # noqa: E402
from engine_ablation import append_run, hgq2_rows, sweep_parser  # noqa: E402
from run import FULL, load  # noqa: E402

GATE_OFF_ABOVE = math.log(1.1)  # adaptive_gate: a beta-0 epoch ending this far over the target ends the gating


class UnderTargetGate(keras.callbacks.Callback):
    """Beta 0 for the epoch after one that ended under ``target`` (after the controller's warm-up).

    ``adaptive``: stop gating for good once a beta-0 epoch ends more than 10 % over the target."""

    def __init__(self, target, warmup, adaptive):
        super().__init__()
        self.target, self.warmup, self.adaptive = target, warmup, adaptive
        self.gate_next = self.gated = self.given_up = False

    def on_epoch_begin(self, epoch, logs=None):
        from hgq_rewrite.schedules import set_beta

        self.gated = self.gate_next and not self.given_up
        if self.gated:
            set_beta(self.model, 0.0)

    def on_epoch_end(self, epoch, logs=None):
        from hgq_rewrite.beta_control import log_error, warmup_epochs

        error = log_error(logs["bops"], self.target)
        if self.gated:
            logs["beta"] = 0.0
            if self.adaptive and error > GATE_OFF_ABOVE:
                self.given_up = True
        in_control = epoch + 1 >= warmup_epochs(self.warmup, self.params["epochs"])
        self.gate_next = in_control and error < 0


def targets_of(task):
    """{(seed, beta): HGQ2-N's EBOPs} from the engine ablation's hgq2 rows."""
    path = os.path.join(HERE, "results", f"lr_decay_and_band_{task}.json")
    return {key: row["ebops"] for key, row in hgq2_rows(path, task).items()}


def run_rule(rule, float_m, data, beta, target, cfg, lr, seed):
    import hgq_rewrite as hr
    from hgq_rewrite.beta_control import DEFAULTS

    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    qmodel = hr.quantize(float_m, beta=beta, calibration_data=x)
    extra = [] if rule == "band" else [UnderTargetGate(target, DEFAULTS["warmup"], rule == "adaptive_gate")]
    hist, front = hr.finetune(qmodel, x, y, epochs=cfg["epochs"], batch_size=cfg["batch_size"], learning_rate=lr,
                              verbose=0, target_ebops=target, callbacks=extra)
    chosen = front.chosen.ebops / target if front.reached else None
    if front.reached:
        front.chosen.restore(qmodel)
    h = hist.history
    return {"rule": rule, "seed": seed, "beta": beta, "target_ebops": target, "test_accuracy": H.accuracy(qmodel, xt, yt),
            "chosen_over_target": chosen, "chosen_epoch": front.chosen.epoch if front.reached else None,
            "last_over_target": h["ebops"][-1] / target, "ebops_over_target": [v / target for v in h["ebops"]],
            "beta_history": h.get("beta", []), "train_s": time.perf_counter() - t0}


def report(path):
    """Markdown: per task and rule, mean test accuracy and its gain over ``band`` on the same runs, and the
    chosen member's EBOPs / target (range, and how many within 10 % of the target)."""
    lines = []
    for run in json.load(open(path))["runs"]:
        rows = run["rows"]
        base = {(r["seed"], r["beta"]): r for r in rows if r["rule"] == "band"}
        lines += [f"### {run['task']}: `{' '.join(run['argv'])}`", "",
                  "| rule | runs | accuracy | vs band | chosen EBOPs / target | within 10 % |", "|---|---|---|---|---|---|"]
        for rule in dict.fromkeys(r["rule"] for r in rows):
            rs = [r for r in rows if r["rule"] == rule]
            acc = sum(r["test_accuracy"] for r in rs) / len(rs)
            paired = [r["test_accuracy"] - base[r["seed"], r["beta"]]["test_accuracy"] for r in rs
                      if (r["seed"], r["beta"]) in base]
            gain = f"{100 * sum(paired) / len(paired):+.2f} pp" if paired and rule != "band" else ""
            ratios = [r["chosen_over_target"] for r in rs if r["chosen_over_target"] is not None]
            span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "none reached"
            within = sum(0.9 <= v <= 1.0 for v in ratios)
            lines.append(f"| {rule} | {len(rs)} | {acc:.4f} | {gain} | {span} | {within}/{len(rs)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = sweep_parser(__doc__, "digits8", [0, 1, 2], [1e-6, 1e-5, 1e-4])
    p.add_argument("--rules", nargs="+", default=["band", "gate", "adaptive_gate"],
                   choices=["band", "gate", "adaptive_gate"])
    p.add_argument("--out", help="JSON file for the results (appended to when it exists)")
    p.add_argument("--report", metavar="JSON", help="only print the markdown summary of an --out file")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return
    cfg, lr = FULL["tasks"][args.task], FULL["lr"]
    targets = targets_of(args.task)
    rows = []
    for seed in args.seeds:
        data = load(args.task, {"max_train": None, "max_test": None}, seed=seed)
        float_m, _ = H.train_float(args.task, data, cfg["float_epochs"], cfg["batch_size"], lr, seed)
        for beta in args.betas:
            if (seed, beta) not in targets:
                p.error(f"no hgq2 row of {args.task} seed {seed} beta {beta:g} in results/lr_decay_and_band_{args.task}.json")
            for rule in args.rules:
                r = run_rule(rule, float_m, data, beta, targets[seed, beta], cfg, lr, seed)
                rows.append(r)
                chosen = "not reached" if r["chosen_over_target"] is None else f"{r['chosen_over_target']:.3f}"
                print(f"{args.task} seed {seed} beta={beta:g} {rule}: acc {r['test_accuracy']:.4f} chosen {chosen} "
                      f"last {r['last_over_target']:.3f} ({r['train_s']:.0f}s)", flush=True)
    if args.out:
        append_run(args.out, args.task, rows)
        print(report(args.out))


if __name__ == "__main__":
    main()

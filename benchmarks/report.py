"""Turn the results JSON into the markdown report and one accuracy-vs-EBOPs plot per task.

Fronts are compared the way issue 11 asks: our front *dominates* another library's front when
every point of that front is beaten by ours at equal EBOPs by at least ``ACC_MARGIN`` accuracy,
or reached by ours at equal (or better) accuracy with at most ``EBOPS_RATIO`` times its EBOPs.
"""

import math
import statistics

ROWS = {
    "hgq2": "HGQ2 from scratch, N epochs",
    "ours": "ours: trained float → quantize(calibration_data) → finetune, N epochs, fixed beta",
    "ours_target": "ours: same, finetune(target_ebops = HGQ2-N's EBOPs at that beta and seed)",
    "ours_target80": "ours: same, finetune(target_ebops = 0.8 × HGQ2-N's EBOPs at that beta and seed)",
    "hgq2_4x": "HGQ2 from scratch, 4N epochs",
    "hgq2_float": "HGQ2 from the trained float weights, N epochs",
}
TARGET_ROWS = {"ours_target": 1.0, "ours_target80": 0.8}  # row: its budget as a multiple of HGQ2-N's EBOPs
OURS = ("ours", *TARGET_ROWS)
ALL_OURS = "ours, all rows"  # the verdict of every run of our rows together (more runs per seed than theirs)
ACC_MARGIN, EBOPS_RATIO = 0.005, 0.8


def pareto_front(points):
    """The (ebops, acc) points no other point beats on both (fewer EBOPs, higher accuracy)."""
    pts = sorted((p for p in points if p[0] is not None and p[1] is not None), key=lambda p: (p[0], -p[1]))
    front, best = [], -math.inf
    for e, a in pts:
        if a > best:
            front.append((e, a))
            best = a
    return front


def deployed_accuracy(r):
    """Accuracy of what is exported: firmware if compiled, else the proxy (ours) / the model (HGQ2)."""
    exp = r.get("export", {})
    for key in ("hls_test_accuracy", "proxy_test_accuracy"):
        if key in exp:
            return exp[key]
    return r.get("train", {}).get("test_accuracy")


def run_points(task_result, row):
    """``{beta: [(ebops, acc), ...one per seed]}`` of one row (failed runs left out)."""
    out = {}
    for seed in task_result["seeds"].values():
        for key, r in seed["runs"].items():
            name, beta = key.split("@")
            e, a = r.get("export", {}).get("ebops"), deployed_accuracy(r)
            if name == row and e is not None and a is not None:
                out.setdefault(float(beta), []).append((e, a))
    return out


def mean_points(task_result, row):
    """One (mean EBOPs, mean accuracy) point per beta, averaged over the seeds."""
    return [(statistics.fmean(e for e, _ in pts), statistics.fmean(a for _, a in pts))
            for _, pts in sorted(run_points(task_result, row).items())]


def seed_points(task_result, row, seed):
    seed_result = task_result["seeds"][seed]
    return run_points({"seeds": {seed: seed_result}}, row)


def compare(ours, theirs):
    """How ``ours`` fares at each point of ``theirs``' front (see the module docstring).

    Returns ``{"points": [...], "dominates": bool}``; each point has its EBOPs and accuracy, our
    best accuracy at no more EBOPs (``acc_gain``) and our fewest EBOPs at no less accuracy
    (``ebops_ratio``), None where ours has no such point.
    """
    out = []
    for e, a in pareto_front(theirs):
        at_e = [oa for oe, oa in ours if oe <= e]
        at_a = [oe for oe, oa in ours if oa >= a]
        gain = max(at_e) - a if at_e else None
        ratio = min(at_a) / e if at_a else None
        ok = (gain is not None and gain >= ACC_MARGIN) or (ratio is not None and ratio <= EBOPS_RATIO)
        out.append({"ebops": e, "acc": a, "acc_gain": gain, "ebops_ratio": ratio, "beaten": ok})
    return {"points": out, "dominates": bool(out) and all(p["beaten"] for p in out)}


def front_verdicts(task_result):
    """``{our row: {their row: {"mean": compare(...), "seeds_dominated": k, "seeds": n}}}``; with more than
    one of our rows, also `ALL_OURS`: the points of every one of our rows taken together."""
    verdicts = {}
    rows = {row for seed in task_result["seeds"].values() for row in (k.split("@")[0] for k in seed["runs"])}
    ours_rows = [r for r in OURS if r in rows]
    groups = {r: [r] for r in ours_rows}
    if len(ours_rows) > 1:
        groups[ALL_OURS] = ours_rows
    for name, group in groups.items():
        verdicts[name] = {}
        for theirs in [r for r in ("hgq2", "hgq2_4x", "hgq2_float") if r in rows]:
            mean = compare([p for r in group for p in mean_points(task_result, r)], mean_points(task_result, theirs))
            per_seed = [compare([p for r in group for v in seed_points(task_result, r, s).values() for p in v],
                                [p for v in seed_points(task_result, theirs, s).values() for p in v])
                        for s in task_result["seeds"]]
            verdicts[name][theirs] = {"mean": mean, "seeds_dominated": sum(v["dominates"] for v in per_seed),
                                      "seeds": len(per_seed)}
    return verdicts


def target_errors(task_result, row):
    """Per run of target row ``row``: (beta, seed, target, last epoch's EBOPs / target, chosen member's / target).

    The controller steers the epochs' exact EBOPs to the target (last epoch); the member
    `finetune` chooses is the best one at or under it, which may be cheaper still.
    """
    out = []
    for seed, sr in task_result["seeds"].items():
        for key, r in sr["runs"].items():
            name, beta = key.split("@")
            train = r.get("train", {})
            target, history = train.get("target_ebops"), train.get("bops_history")
            e = r.get("export", {}).get("ebops")
            if name == row and target and history and e is not None:
                out.append((float(beta), seed, target, history[-1] / target, e / target))
    return out


def plot_task(results, task, path):
    """One figure: every row's runs (faint, one per seed and beta) and its mean-over-seeds front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = results["tasks"][task]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"ours": ("o-", "C0"), "ours_target": ("D-", "C2"), "ours_target80": ("P-", "C5"), "hgq2": ("s--", "C1"),
              "hgq2_4x": ("^--", "C3"), "hgq2_float": ("v:", "C4")}
    for row, label in ROWS.items():
        pts = [p for v in run_points(tr, row).values() for p in v]
        if not pts:
            continue
        marker, color = styles[row]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker[0], color=color, alpha=0.25, ms=4)
        front = pareto_front(mean_points(tr, row))
        ax.plot(*zip(*front), marker, color=color, label=f"{label} (mean front)")
    floats = [s["float"]["test_accuracy"] for s in tr["seeds"].values()]
    if floats:
        ax.axhline(statistics.fmean(floats), color="grey", ls=":", label="float model (mean)")
    ax.set_xscale("log")
    ax.set_xlabel("EBOPs (from the hls4ml model, one rule for both libraries)")
    ax.set_ylabel("test accuracy of the exported model")
    ax.set_title(f"{task}: faint = single runs, lines = mean over seeds per beta")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v, fmt):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return format(v, fmt)


def _cell(pts):
    """``acc ± sd @ EBOPs`` over the seeds of one row at one beta."""
    if not pts:
        return "–"
    accs = [a for _, a in pts]
    sd = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
    return f"{statistics.fmean(accs):.3f}{sd} @ {statistics.fmean(e for e, _ in pts) / 1e3:.1f}k"


def _verdict_line(ours, theirs, v):
    worst = []
    for p in v["mean"]["points"]:
        gain = "none" if p["acc_gain"] is None else f"{100 * p['acc_gain']:+.1f} pp"
        ratio = "none" if p["ebops_ratio"] is None else f"{p['ebops_ratio']:.2f}×"
        worst.append(f"{p['acc']:.3f} @ {p['ebops'] / 1e3:.1f}k: {gain}, {ratio}{'' if p['beaten'] else ' ✗'}")
    word = "**dominates**" if v["mean"]["dominates"] else "does not dominate"
    return (f"- {ours} {word} {theirs} (mean fronts; single seeds: {v['seeds_dominated']}/{v['seeds']}). "
            "At each of their front points, our accuracy gain at ≤ their EBOPs and our EBOPs ratio at ≥ their "
            "accuracy: " + "; ".join(worst))


def markdown(results, plots):
    m = results["meta"]
    lines = [f"# hgq_rewrite vs HGQ2 benchmark ({m['mode']} run)", ""]
    lines += [f"- date: {m['date']}", f"- machine: {m['machine']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
              f"- command: `{m['command']}`", f"- total wall time: {results.get('total_s', 0) / 60:.1f} min",
              f"- settings: {m['settings_summary']}", ""]
    lines += ["EBOPs are computed the same way for both libraries from the hls4ml model each one exports "
              "(see `benchmarks/ebops.py`): Σ over multiplies of activation bits (k+i+f as hls4ml's bit-exact "
              "pass derives them) × significant bits of the weight constant; convolutions fully parallel. "
              "Accuracy is that of the exported model (hls4ml C simulation when compiled, else our proxy / the "
              "HGQ2 model), on the test set. Every point is one training run; cells are mean ± sd over seeds.", ""]
    lines += ["## Quality: accuracy-vs-EBOPs fronts", "", "Rows:", ""]
    lines += [f"- `{row}`: {label}" for row, label in ROWS.items()]
    lines += ["", f"Our front dominates theirs when at each of their front points we have ≥ +{100 * ACC_MARGIN:.1f} pp "
              f"accuracy at ≤ their EBOPs, or ≤ {EBOPS_RATIO}× their EBOPs at ≥ their accuracy.", ""]
    for task, tr in results["tasks"].items():
        floats = [s["float"]["test_accuracy"] for s in tr["seeds"].values()]
        lines += [f"### {task}  (float model: accuracy {statistics.fmean(floats):.4f} mean over {len(floats)} "
                  f"seed(s); {tr['data']['n_train']} train / {tr['data']['n_test']} test samples; "
                  f"N = {tr['config']['epochs']} epochs)", "", f"![{task}]({plots[task]})", ""]
        betas = sorted({float(k.split("@")[1]) for s in tr["seeds"].values() for k in s["runs"]})
        lines += ["| row | " + " | ".join(f"β={b:g}" for b in betas) + " |", "|---|" + "---|" * len(betas)]
        for row in ROWS:
            pts = run_points(tr, row)
            if pts:
                lines.append(f"| {row} | " + " | ".join(_cell(pts.get(b, [])) for b in betas) + " |")
        lines.append("")
        for ours, vs in front_verdicts(tr).items():
            for theirs, v in vs.items():
                lines.append(_verdict_line(ours, theirs, v))
        for row in TARGET_ROWS:
            errs = target_errors(tr, row)
            if not errs:
                continue
            last_ok = sum(0.9 <= last <= 1.1 for *_, last, _ in errs)
            chosen_ok = sum(0.9 <= chosen <= 1.1 for *_, chosen in errs)
            lines += [f"- `target_ebops` of {row} (EBOPs / target): last epoch "
                      + ", ".join(f"{last:.2f}" for *_, last, _ in errs) + f" ({last_ok}/{len(errs)} within ±10%); "
                      "chosen member " + ", ".join(f"{chosen:.2f}" for *_, chosen in errs)
                      + f" ({chosen_ok}/{len(errs)} within ±10%; at or under the target in every run that reached it)"]
        lines.append("")

    lines += ["## Speed: median epoch time (same process, same data and batch size)", "",
              "| task | float s | ours s | HGQ2 s | ours / float | HGQ2 / float | ours / HGQ2 |",
              "|---|---|---|---|---|---|---|"]
    for task, s in results.get("speed", {}).items():
        if "float_s" not in s:  # run with --no-speed
            continue
        lines.append(f"| {task} | {_f(s.get('float_s'), '.3f')} | {_f(s.get('ours_s'), '.3f')} | "
                     f"{_f(s.get('hgq2_s'), '.3f')} | {_f(s.get('ours_over_float'), '.2f')} | "
                     f"{_f(s.get('hgq2_over_float'), '.2f')} | {_f(s.get('ours_over_hgq2'), '.2f')} |")
    st = m.get("settings", {})
    lines += ["", "Interleaved measurement: the float model, our HGQ model (`quantize`, beta "
              f"{st.get('speed_beta')}, `FreeBOPs` + `ResetMinMax`) and the HGQ2 model (`FreeEBOPs`) each fit one "
              f"epoch in turn, {st.get('speed_rounds')} rounds after a warm-up epoch; medians. The same ratios from the beta sweep's "
              "fits (`ours` and `hgq2_float`, every seed) and the first-epoch (graph tracing) times are in the JSON.",
              ""]
    sweep_rows = [(t, s["sweep"]) for t, s in results.get("speed", {}).items() if "sweep" in s]
    if sweep_rows:
        lines += ["| task (beta sweep fits) | float s | ours s | HGQ2 s | ours / float | HGQ2 / float | ours / HGQ2 |",
                  "|---|---|---|---|---|---|---|"]
        for task, s in sweep_rows:
            lines.append(f"| {task} | {_f(s.get('float_s'), '.3f')} | {_f(s.get('ours_s'), '.3f')} | "
                         f"{_f(s.get('hgq2_s'), '.3f')} | {_f(s.get('ours_over_float'), '.2f')} | "
                         f"{_f(s.get('hgq2_over_float'), '.2f')} | {_f(s.get('ours_over_hgq2'), '.2f')} |")
        lines.append("")

    lines += ["## Export: bit-exactness against hls4ml's C simulation (test set)", "",
              "| task | beta | row | mismatching samples | convert s | compile s | firmware acc |",
              "|---|---|---|---|---|---|---|"]
    for task, tr in results["tasks"].items():
        for seed, sr in tr["seeds"].items():
            for key, r in sr["runs"].items():
                row, beta = key.split("@")
                exp = r.get("export", {})
                if "error" in exp:
                    lines.append(f"| {task} | {beta} | {row} (seed {seed}) | export failed: {exp['error'][:120]} "
                                 "| | | |")
                elif "mismatching_samples" in exp:
                    lines.append(f"| {task} | {beta} | {row} (seed {seed}) | {exp['mismatching_samples']}/"
                                 f"{exp['n_samples']} | {_f(exp.get('convert_s'), '.1f')} | "
                                 f"{_f(exp.get('compile_s'), '.1f')} | {_f(exp.get('hls_test_accuracy'), '.4f')} |")
    lines.append("")

    if results.get("scaling"):
        lines += ["## Scaling (chain models: Dense → BatchNorm → ReLU repeated)", "",
                  "One run per step; the recursion limit is raised to n + 1000 (Keras itself needs it to build "
                  "models of 1,000+ layers).", "",
                  "| float layers | explain s | quantize s | trace_minmax s | to_proxy_model s | hls4ml convert s | "
                  "hls4ml compile s |", "|---|---|---|---|---|---|---|"]
        for row in results["scaling"]:
            cells = [row.get(k) for k in ("explain_s", "quantize_s", "trace_minmax_s", "to_proxy_model_s",
                                          "hls4ml_convert_s", "hls4ml_compile_s")]
            extra = f" (error: {row['error'][:100]})" if "error" in row else ""
            lines.append(f"| {row['layers']}{extra} | " + " | ".join(_f(c, ".3f") for c in cells) + " |")
        lines.append("")
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)

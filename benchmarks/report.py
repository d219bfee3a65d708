"""Turn the results JSON into the markdown table and the Pareto plot."""

import math


def pareto_front(points):
    """The (ebops, acc) points no other point beats on both (fewer EBOPs, higher accuracy)."""
    pts = sorted((p for p in points if p[0] is not None and p[1] is not None), key=lambda p: (p[0], -p[1]))
    front, best = [], -math.inf
    for e, a in pts:
        if a > best:
            front.append((e, a))
            best = a
    return front


def deployed_accuracy(lib_result):
    """Accuracy of what is exported: firmware if compiled, else the proxy (ours) / the model (HGQ2)."""
    exp = lib_result.get("export", {})
    for key in ("hls_test_accuracy", "proxy_test_accuracy"):
        if key in exp:
            return exp[key]
    return lib_result.get("train", {}).get("test_accuracy")


def unified_ebops(lib_result):
    return lib_result.get("export", {}).get("ebops")


def lib_points(task_result, lib):
    out = []
    for p in task_result["points"]:
        r = p.get(lib, {})
        e, a = unified_ebops(r), deployed_accuracy(r)
        if e is not None and a is not None:
            out.append((e, a))
    return out


def dominated_count(points, front):
    """How many of ``points`` some point of ``front`` strictly beats (<= EBOPs and >= accuracy, one strict)."""
    n = 0
    for e, a in points:
        if any(fe <= e and fa >= a and (fe < e or fa > a) for fe, fa in front):
            n += 1
    return n


def plot_pareto(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        tr = results["tasks"][task]
        for lib, label, style, color in (("ours", "hgq_rewrite", "o-", "C0"), ("hgq2", "HGQ2", "s--", "C1")):
            pts = lib_points(tr, lib)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, style[0], color=color, alpha=0.35, label=f"{label} (all points)")
            front = pareto_front(pts)
            fx, fy = zip(*front)
            ax.plot(fx, fy, style, color=color, label=f"{label} Pareto front")
        fa = tr.get("float", {}).get("test_accuracy")
        if fa is not None:
            ax.axhline(fa, color="grey", ls=":", label="float model")
        ax.set_xscale("log")
        ax.set_xlabel("EBOPs (from the hls4ml model, same rule for both)")
        ax.set_ylabel("test accuracy of the exported model")
        ax.set_title(task)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v, fmt):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return format(v, fmt)


def _lib_cells(r):
    if "error" in r.get("train", {}):
        return ["error", "error", "–"]
    exp = r.get("export", {})
    e = exp.get("ebops")
    own = r.get("train", {}).get("own_ebops")
    return [_f(deployed_accuracy(r), ".4f"), _f(e, ",.0f") if e is not None else ("n/a" if "error" in exp else "–"),
            _f(own, ",.0f")]


def markdown(results, plot_name):
    m = results["meta"]
    lines = [f"# hgq_rewrite vs HGQ2 benchmark ({m['mode']} run)", ""]
    lines += [f"- date: {m['date']}", f"- machine: {m['machine']}",
              f"- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
              f"- command: `{m['command']}`", f"- total wall time: {results.get('total_s', 0) / 60:.1f} min",
              f"- settings: {m['settings_summary']}", ""]
    lines += ["EBOPs are computed the same way for both libraries from the hls4ml model each one exports "
              "(see `benchmarks/ebops.py`): Σ over multiplies of activation bits (k+i+f as hls4ml's bit-exact "
              "pass derives them) × significant bits of the weight constant; convolutions fully parallel. "
              "*own* is what each library itself reports after `trace_minmax` (not comparable across libraries). "
              "Accuracy is that of the exported model (hls4ml C simulation when compiled).", ""]

    lines += ["## Quality: test accuracy vs EBOPs", "", f"![Pareto plot]({plot_name})", ""]
    for task, tr in results["tasks"].items():
        fl = tr.get("float", {})
        lines += [f"### {task}  (float model: accuracy {_f(fl.get('test_accuracy'), '.4f')}, "
                  f"{tr['data']['n_train']} train / {tr['data']['n_test']} test samples)", ""]
        lines += ["| beta | ours acc | ours EBOPs | ours own EBOPs | HGQ2 acc | HGQ2 EBOPs | HGQ2 own EBOPs |",
                  "|---|---|---|---|---|---|---|"]
        for p in tr["points"]:
            lines.append("| " + " | ".join([f"{p['beta']:.0e}", *_lib_cells(p.get("ours", {})),
                                               *_lib_cells(p.get("hgq2", {}))]) + " |")
        ours, hgq2 = lib_points(tr, "ours"), lib_points(tr, "hgq2")
        if ours and hgq2:
            lines += ["", f"Pareto: {dominated_count(ours, pareto_front(hgq2))}/{len(ours)} of our points are "
                          f"beaten by HGQ2's front; {dominated_count(hgq2, pareto_front(ours))}/{len(hgq2)} of "
                          "HGQ2's points are beaten by ours."]
        lines.append("")

    lines += ["## Speed: median epoch time (same process, same data and batch size)", "",
              "| task | float s | ours s | HGQ2 s | ours / float | HGQ2 / float | ours / HGQ2 |",
              "|---|---|---|---|---|---|---|"]
    for task, s in results.get("speed", {}).items():
        lines.append(f"| {task} | {_f(s.get('float_s'), '.3f')} | {_f(s.get('ours_s'), '.3f')} | "
                     f"{_f(s.get('hgq2_s'), '.3f')} | {_f(s.get('ours_over_float'), '.2f')} | "
                     f"{_f(s.get('hgq2_over_float'), '.2f')} | {_f(s.get('ours_over_hgq2'), '.2f')} |")
    st = m.get("settings", {})
    lines += ["", "Interleaved measurement: the float model, our HGQ model (`quantize`, beta "
              f"{st.get('speed_beta')}, `FreeBOPs` + `ResetMinMax`) and the HGQ2 model (`FreeEBOPs`) each fit one "
              f"epoch in turn, {st.get('speed_rounds')} rounds after a warm-up epoch; medians. The same ratios from the beta sweep's "
              "fine-tuning fits (ours through `finetune`) and the first-epoch (graph tracing) times are in the JSON.",
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
              "| task | beta | library | mismatching samples | convert s | compile s | firmware acc |",
              "|---|---|---|---|---|---|---|"]
    for task, tr in results["tasks"].items():
        for p in tr["points"]:
            for lib, label in (("ours", "hgq_rewrite"), ("hgq2", "HGQ2")):
                exp = p.get(lib, {}).get("export", {})
                if "error" in exp:
                    lines.append(f"| {task} | {p['beta']:.0e} | {label} | export failed: {exp['error'][:120]} | | | |")
                elif "mismatching_samples" in exp:
                    lines.append(f"| {task} | {p['beta']:.0e} | {label} | {exp['mismatching_samples']}/"
                                 f"{exp['n_samples']} | {_f(exp.get('convert_s'), '.1f')} | "
                                 f"{_f(exp.get('compile_s'), '.1f')} | {_f(exp.get('hls_test_accuracy'), '.4f')} |")
    lines.append("")

    lines += ["## Scaling (chain models: Dense → BatchNorm → ReLU repeated)", "",
              "One run per step; the recursion limit is raised to n + 1000 (Keras itself needs it to build "
              "models of 1,000+ layers).", "",
              "| float layers | explain s | quantize s | trace_minmax s | to_proxy_model s | hls4ml convert s | "
              "hls4ml compile s |", "|---|---|---|---|---|---|---|"]
    for row in results.get("scaling", []):
        cells = [row.get(k) for k in ("explain_s", "quantize_s", "trace_minmax_s", "to_proxy_model_s",
                                      "hls4ml_convert_s", "hls4ml_compile_s")]
        extra = f" (error: {row['error'][:100]})" if "error" in row else ""
        lines.append(f"| {row['layers']}{extra} | " + " | ".join(_f(c, ".3f") for c in cells) + " |")
    lines.append("")
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)

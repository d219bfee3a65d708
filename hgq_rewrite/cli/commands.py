"""The subcommands of ``hgq-rewrite`` (each ``cmd_<name>(args) -> exit code``)."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

from ..files import save_model
from ..inputs import model_inputs, pack
from .io import CLIError, load_hgq, load_keras, load_npz, load_training_data, same_file, save_keras
from ..sweep.cli import cmd_sweep  # noqa: F401  (hgq-rewrite sweep)


def cmd_quantize(args):
    import hgq_rewrite as hr

    if same_file(args.model, args.output):
        raise CLIError(f"output {args.output!r} is the input model {args.model!r}; write the HGQ model to another "
                       "file (the float model would be lost).")
    if args.config and os.path.exists(args.config) and same_file(args.config, args.output):
        raise CLIError(f"output {args.output!r} is the config file {args.config!r}; write the HGQ model elsewhere.")
    model = load_keras(args.model, "float model")
    config = args.config  # a YAML/JSON path: the rewrite policy reads and checks it
    plan = hr.explain(model, config, beta=args.beta)
    qmodel = hr.quantize(model, config, beta=args.beta, strict=False if args.lenient else None)
    save_keras(qmodel, args.output)
    counts = {d: len(plan.by_decision(d)) for d in ("convert", "fold", "fuse", "insert", "float")}
    print(f"quantized {model.name!r}: {counts['convert']} layers converted, {counts['fold'] + counts['fuse']} "
          f"folded/fused, {counts['insert']} quantizers inserted, {counts['float']} kept float")
    print(f"wrote {args.output}")
    return 0


def cmd_explain(args):
    import hgq_rewrite as hr

    model = load_keras(args.model, "float model")
    plan = hr.explain(model, args.config, beta=args.beta)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1, default=str))
    else:
        print(plan, end="")
    return 0


def cmd_finetune(args):
    from ..backend_advice import print_backend_advice
    from ..finetune import finetune
    from ..report import format_front

    qmodel = load_hgq(args.model)
    xs, y, val = load_training_data(qmodel, args.data, args.val)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CLIError(f"output {args.output!r} is a file; finetune writes a folder.")
    inputs = ((args.model, "the HGQ model"), (args.data, "the training data"), (args.val, "the validation data"))
    for path, what in inputs:
        if path and _inside(path, args.output):
            raise CLIError(f"output folder {args.output!r} holds {what} {path!r}; choose another folder.")
    target = getattr(args, "target_ebops", None)
    beta_max = getattr(args, "beta_max", None)
    if target is not None and args.beta is not None:
        raise CLIError("give either --beta or --target-ebops (beta is then controlled), not both.")
    if beta_max is not None and target is None:
        raise CLIError("--beta-max only applies with --target-ebops.")
    print_backend_advice()  # names a backend measured faster than this one, if any
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the not-reached message is printed below instead
        warnings.filterwarnings("ignore", message="finetune: target .* not reached")
        history, front = finetune(
            qmodel, pack(xs), y, validation_data=val, epochs=args.epochs, beta=args.beta,
            batch_size=args.batch_size, pareto_dir=args.output, metric=args.metric, learning_rate=args.lr, verbose=1,
            lr_decay=None if args.lr_decay == "none" else args.lr_decay, overwrite=args.overwrite, target_ebops=target,
            shrink=None if args.shrink == "none" else args.shrink,
            beta_control=None if beta_max is None else {"beta_max": beta_max},
            jit_compile={"auto": "auto", "on": True, "off": False}[args.xla],
            steps_per_execution=args.steps_per_execution,
        )
    last = os.path.join(args.output, "last.keras")
    save_model(qmodel, last)
    metric = _front_metric(args.output)
    print(format_front(front, metric), end="")
    print(f"{len(front)} front member(s) in {args.output} ({time.perf_counter() - t0:.0f} s); last epoch in {last}")
    if target is not None:
        if front.reached:  # finetune printed the chosen member's line already
            print(f"chosen (best {metric} at or under {target:,.0f} EBOPs): {front.chosen.path}")
        else:
            print(f"warning: {front.message}")
    return 0


def _inside(path, folder):
    """True if ``path`` is in ``folder`` (resolved paths)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _front_metric(directory):
    from ..finetune import load_front

    summary, _ = load_front(directory)
    return summary.get("metric") or "metric"


def cmd_export(args):
    from ..export.project import export_project

    qmodel = load_hgq(args.model)
    xs, _ = load_npz(args.calib, what="calibration data")
    xs = model_inputs(qmodel, xs, "calibration data", args.calib)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out!r} is a file; export writes a folder.")
    if same_file(args.model, os.path.join(args.out, "proxy.keras")):
        raise CLIError(f"model {args.model!r} is --out's proxy.keras, which export replaces; give another --out.")
    xs = [np.asarray(a, dtype=np.float32) for a in xs]
    figures = export_project(qmodel, xs, args.out, backend=args.backend, part=args.part, cover_factor=args.cover_factor,
                     check_samples=args.check_samples, compile=not args.no_compile,
                     strategy=getattr(args, "strategy", "latency"), fmt=getattr(args, "format", "hls4ml"))
    if figures.get("mismatches"):
        print(f"hgq-rewrite: bit-exactness check FAILED: {figures['mismatches']}/{figures['samples']} samples differ")
        return 1
    return 0


def cmd_report(args):
    import hgq_rewrite as hr

    from ..report import (da4ml_estimate, format_front, format_table, is_traced, layer_stats, plot_bit_histograms,
                          plot_pareto)

    pareto = args.pareto
    target = args.model
    if os.path.isdir(target):
        summary, entries = _read_front(target)
        if not entries:
            raise CLIError(f"finetune folder {target!r} has no front member.")
        mode = summary.get("mode", "max")
        best = max(entries, key=lambda e: (e.metric if mode == "max" else -e.metric, -e.ebops))
        print(f"{target}: best front member is epoch {best.epoch + 1} ({summary.get('metric')} {best.metric:.4f}, "
              f"{best.ebops:,.0f} EBOPs)")
        if not best.path:
            raise CLIError(f"finetune folder {target!r}: its best front member has no saved file.")
        target = os.path.join(target, os.path.basename(best.path))
        pareto = pareto or args.model
    qmodel = load_hgq(target)
    if args.calib:
        xs, _ = load_npz(args.calib, what="calibration data")
        xs = model_inputs(qmodel, xs, "calibration data", args.calib)
        ebops = hr.trace_minmax(qmodel, pack(xs))
        from ..formats import warn_wide_formats

        warn_wide_formats(qmodel, what=f"calibration data {args.calib!r}")
        source = f"exact, traced on {len(xs[0])} samples of {args.calib}"
    elif is_traced(qmodel):
        ebops = sum(s.ebops for s in layer_stats(qmodel))
        source = "from the ranges stored in the model (pass --calib to trace on data)"
    else:
        ebops = None
        source = None
    stats = layer_stats(qmodel)
    luts, luts_note = da4ml_estimate(qmodel, stats) if ebops is not None else (None, None)
    print(format_table(stats, title=f"{qmodel.name}: per-layer bitwidths", luts=luts), end="")
    if ebops is None:
        print("activation bits: not traced (pass --calib DATA.npz); EBOPs: estimate of the last training step")
    else:
        print(f"EBOPs: {ebops:,.0f} ({source})")
    if luts is not None:
        print(f"LUTs: {luts.total:,.0f} (da4ml's cost model, distributed arithmetic; latency {luts.latency:g}; "
              "per layer: the layer with its activation and output quantizer)")
    elif luts_note:
        print(luts_note)
    print("weight bits: significant bits of each quantized weight, as counted by EBOPs (0 = pruned)")
    if pareto:
        summary, entries = _read_front(pareto)
        print(format_front(entries, summary.get("metric", "metric")), end="")
    if args.no_plots:
        return 0
    plots = args.plots or os.path.splitext(os.path.abspath(target))[0] + "_report"
    hist = plot_bit_histograms(stats, os.path.join(plots, "bit_histograms.png"), title=qmodel.name)
    print(f"wrote {hist}")
    if pareto:
        path = plot_pareto(summary, os.path.join(plots, "pareto_front.png"))
        print(f"wrote {path}")
    return 0


def _read_front(directory):
    from ..finetune import load_front

    try:
        return load_front(directory)
    except FileNotFoundError as e:
        raise CLIError(str(e)) from e
    except (ValueError, TypeError, KeyError) as e:
        raise CLIError(f"cannot read the front of {directory!r}: {e}") from e


def cmd_demo(args):
    from .demo import run_demo

    result = run_demo(quick=args.quick, hls=not args.no_hls, out=args.out, seed=args.seed)
    return 1 if result.get("mismatches") else 0

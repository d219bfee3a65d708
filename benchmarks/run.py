"""hgq_rewrite vs HGQ2: quality (accuracy vs EBOPs), speed, scaling and export, in one run.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/run.py [--quick] [--out DIR] [--tasks ...]

Writes ``results/bench[_quick].json``, ``results/bench[_quick].md`` and
``results/pareto[_quick].png`` (see ``benchmarks/README.md``). Needs the ``bench``
extra (``pip install -e .[bench]``: hgq2, scikit-learn) and g++ for hls4ml's C simulation.
"""

import argparse
import datetime
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import harness as H  # noqa: E402
from data import LOADERS  # noqa: E402
from report import markdown, plot_pareto  # noqa: E402
from scaling import run_scaling  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)

# Per task: float epochs, fine-tuning epochs, batch size; learning rates are shared.
FULL = {
    "tasks": {
        "digits28": {"float_epochs": 80, "ft_epochs": 40, "batch_size": 32},
        "mnist1d": {"float_epochs": 60, "ft_epochs": 30, "batch_size": 64},
        "jets": {"float_epochs": 30, "ft_epochs": 20, "batch_size": 128},
    },
    "betas": [1e-6, 1e-5, 3e-5, 1e-4, 5e-4],
    "float_lr": 3e-3,
    "ft_lr": 1e-3,
    "compile_tasks": ["digits28", "mnist1d", "jets"],
    "compile_betas": "ends",  # bit-exact check (g++ compile) at the smallest and largest beta; "all" for every one
    "speed_rounds": 7,
    "speed_beta": 1e-5,
    "max_train": None,
    "max_test": None,
    "scaling_sizes": [10, 100, 1000, 5000],
    "scaling_max_export": 5000,
    "scaling_max_hls": 100,
}
QUICK = {
    "tasks": {
        "digits28": {"float_epochs": 4, "ft_epochs": 2, "batch_size": 32},
        "mnist1d": {"float_epochs": 3, "ft_epochs": 2, "batch_size": 64},
        "jets": {"float_epochs": 2, "ft_epochs": 2, "batch_size": 128},
    },
    "betas": [1e-5],
    "float_lr": 3e-3,
    "ft_lr": 1e-3,
    "compile_tasks": ["mnist1d"],
    "compile_betas": "all",
    "speed_rounds": 2,
    "speed_beta": 1e-5,
    "max_train": 3000,
    "max_test": 500,
    "scaling_sizes": [10, 100],
    "scaling_max_export": 100,
    "scaling_max_hls": 10,
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _version(module):
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def meta(mode, settings):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        gxx = "g++ not found"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip()
    except Exception:
        commit = "?"
    versions = {name: _version(dist) for name, dist in (
        ("hgq_rewrite", "hgq_rewrite"), ("hgq2", "hgq2"), ("hls4ml", "hls4ml"), ("keras", "keras"),
        ("tensorflow", "tensorflow-cpu"), ("numpy", "numpy"), ("quantizers", "quantizers"))}
    versions["hgq_rewrite"] += f" (git {commit})"
    versions["python"] = platform.python_version()
    versions["g++"] = gxx
    tasks = settings["tasks"]
    summary = "; ".join(f"{t}: float {c['float_epochs']} ep, fine-tune {c['ft_epochs']} ep, batch {c['batch_size']}"
                        for t, c in tasks.items())
    summary += (f"; betas {settings['betas']}; Adam lr {settings['float_lr']} (float) / {settings['ft_lr']} "
                f"(fine-tune); HGQ2 gets the trained float weights")
    return {"mode": mode, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.node()}: {cpu}, {os.cpu_count()} cores{mem}, {platform.platform()}",
            "versions": versions, "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "settings": settings, "settings_summary": summary}


def load(task, settings, seed=0):
    x, y, xt, yt = LOADERS[task](seed=seed)
    if settings["max_train"]:
        x, y = x[: settings["max_train"]], y[: settings["max_train"]]
    if settings["max_test"]:
        xt, yt = xt[: settings["max_test"]], yt[: settings["max_test"]]
    return x, y, xt, yt


def run_task(task, settings, scratch, seed=0):
    cfg = settings["tasks"][task]
    data = load(task, settings, seed)
    result = {"data": {"n_train": len(data[0]), "n_test": len(data[2]), "input_shape": list(data[0].shape[1:])},
              "config": cfg, "points": []}
    log(f"{task}: training the float model ({cfg['float_epochs']} epochs)")
    float_m, result["float"] = H.train_float(task, data, cfg["float_epochs"], cfg["batch_size"],
                                             settings["float_lr"], seed)
    log(f"{task}: float test accuracy {result['float']['test_accuracy']:.4f}")
    betas = settings["betas"]
    for beta in betas:
        compile_hls = task in settings["compile_tasks"] and (
            settings["compile_betas"] == "all" or beta in (min(betas), max(betas)))
        point = {"beta": beta}
        for lib, train, export in (("ours", H.train_ours, H.export_ours), ("hgq2", H.train_hgq2, H.export_hgq2)):
            r = point[lib] = {}
            try:
                model, r["train"] = train(task, float_m, data, beta, cfg["ft_epochs"], cfg["batch_size"],
                                          settings["ft_lr"], seed)
            except Exception as exc:
                r["train"] = H.error_record(exc)
                log(f"{task} beta={beta:g} {lib}: training FAILED: {r['train']['error']}")
                continue
            try:
                r["export"] = export(model, data[2], data[3], compile_hls,
                                     os.path.join(scratch, f"{task}_{beta:g}"))
            except Exception as exc:
                r["export"] = H.error_record(exc)
            exp = r["export"]
            log(f"{task} beta={beta:g} {lib}: acc {r['train']['test_accuracy']:.4f}, own EBOPs "
                f"{r['train']['own_ebops']:,.0f}, EBOPs {exp.get('ebops', float('nan')):,.0f}, median epoch "
                f"{r['train']['median_epoch_s']:.3f}s"
                + (f", mismatches {exp['mismatching_samples']}/{exp['n_samples']}" if "n_samples" in exp else "")
                + (f", export FAILED: {exp['error']}" if "error" in exp else ""))
            del model
            gc.collect()
        result["points"].append(point)
        keras.backend.clear_session()
    log(f"{task}: speed, {settings['speed_rounds']} interleaved rounds of one epoch per model")
    try:
        result["speed"] = H.measure_speed(task, float_m, data, settings["speed_beta"], cfg["batch_size"],
                                          settings["speed_rounds"], settings["ft_lr"], seed)
        s = result["speed"]
        log(f"{task}: median epoch float {s['float_s']:.3f}s, ours {s['ours_s']:.3f}s, HGQ2 {s['hgq2_s']:.3f}s")
    except Exception as exc:
        result["speed"] = H.error_record(exc)
        log(f"{task}: speed FAILED: {result['speed']['error']}")
    keras.backend.clear_session()
    return result


def speed_summary(task_result):
    """Interleaved speed measurement (``measure_speed``) plus the medians over the beta sweep's fits."""
    out = {k: v for k, v in task_result.get("speed", {}).items() if k != "epoch_times"}

    def med(lib):
        times = []
        for p in task_result["points"]:
            t = p.get(lib, {}).get("train", {}).get("epoch_times")
            if t:
                times += t[1:] if len(t) > 1 else t
        return float(np.median(times)) if times else None

    f = task_result["float"]["median_epoch_s"]
    ours, hgq2 = med("ours"), med("hgq2")
    ratio = lambda a, b: (a / b) if a and b else None  # noqa: E731
    out["sweep"] = {"float_s": f, "ours_s": ours, "hgq2_s": hgq2, "ours_over_float": ratio(ours, f),
                    "hgq2_over_float": ratio(hgq2, f), "ours_over_hgq2": ratio(ours, hgq2)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny epochs and sizes: a smoke run of a few minutes")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results folder")
    parser.add_argument("--tasks", nargs="*", choices=list(LOADERS), help="only these tasks")
    parser.add_argument("--betas", nargs="+", type=float, help="override the beta sweep")
    parser.add_argument("--no-compile", action="store_true", help="convert only (EBOPs), no bit-exact check")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling section")
    parser.add_argument("--keep-projects", metavar="DIR", help="keep the hls4ml projects in DIR")
    args = parser.parse_args(argv)

    settings = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.tasks:
        settings["tasks"] = {t: c for t, c in settings["tasks"].items() if t in args.tasks}
    if args.betas:
        settings["betas"] = args.betas
    if args.no_compile:
        settings["compile_tasks"] = []
    mode = "quick" if args.quick else "full"
    suffix = "_quick" if args.quick else ""
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    results = {"meta": meta(mode, settings), "tasks": {}, "speed": {}, "scaling": [], "notes": []}
    finetune, to_proxy = H.ours_available()
    if finetune is None:
        results["notes"].append("hgq_rewrite.finetune missing: our side trained with plain fit + callbacks")
    if to_proxy is None:
        results["notes"].append("hgq_rewrite to_proxy_model missing: no export or unified EBOPs for our side")
    log(f"{mode} run; results to {args.out}")

    with H.workdir(args.keep_projects) as scratch:
        for task in settings["tasks"]:
            results["tasks"][task] = run_task(task, settings, scratch)
            results["speed"][task] = speed_summary(results["tasks"][task])
            _write(results, args.out, suffix, t_start)  # partial results survive a crash later on
        if not args.no_scaling:
            log(f"scaling: chain models of {settings['scaling_sizes']} layers")
            results["scaling"] = run_scaling(settings["scaling_sizes"], settings["scaling_max_export"],
                                             settings["scaling_max_hls"], scratch, log=log)
    _write(results, args.out, suffix, t_start)
    log(f"done in {(time.perf_counter() - t_start) / 60:.1f} min: {os.path.join(args.out, f'bench{suffix}.md')}")


def _write(results, out, suffix, t_start):
    results["total_s"] = time.perf_counter() - t_start
    with open(os.path.join(out, f"bench{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=_json_default)
    plot = f"pareto{suffix}.png"
    plot_pareto(results, os.path.join(out, plot))
    with open(os.path.join(out, f"bench{suffix}.md"), "w") as f:
        f.write(markdown(results, plot))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()

"""hgq_rewrite vs HGQ2: quality (accuracy vs EBOPs), speed, scaling and export, in one run.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/run.py [--quick] [--out DIR] [--tasks ...]

Writes ``results/bench[_quick].json``, ``results/bench[_quick].md`` and
``results/pareto[_quick].png`` (see ``benchmarks/README.md``). Needs the ``bench``
extra (``pip install -e .[bench]``: hgq2, scikit-learn) and g++ for hls4ml's C simulation.
"""

import argparse
import concurrent.futures
import datetime
import gc
import json
import logging
import multiprocessing
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
from report import OURS, ROWS, TARGET_ROWS, deployed_accuracy, markdown, plot_task  # noqa: E402
from scaling import run_scaling  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)

# Per task: float epochs, N (the fine-tuning / HGQ2 epochs), batch size. HGQ2 from scratch also gets 4N.
FULL = {
    "tasks": {
        "digits28": {"float_epochs": 80, "epochs": 30, "batch_size": 32},
        "mnist1d": {"float_epochs": 60, "epochs": 20, "batch_size": 64},
        "jets": {"float_epochs": 30, "epochs": 15, "batch_size": 128},
        "mnist1d_pkg": {"float_epochs": 60, "epochs": 40, "batch_size": 64},
        "digits8": {"float_epochs": 60, "epochs": 40, "batch_size": 64},
    },
    "seeds": [0, 1, 2],
    "betas": [1e-6, 1e-5, 1e-4],
    "rows": list(ROWS),
    "lr": 3e-3,
    "compile_rows": ["ours", "hgq2"],
    "compile_betas": "ends",  # g++ bit-exact check at the smallest and largest beta, first seed; "all" for every one
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
        "digits28": {"float_epochs": 4, "epochs": 2, "batch_size": 32},
        "mnist1d": {"float_epochs": 3, "epochs": 2, "batch_size": 64},
        "jets": {"float_epochs": 2, "epochs": 2, "batch_size": 128},
        "mnist1d_pkg": {"float_epochs": 3, "epochs": 2, "batch_size": 64},
        "digits8": {"float_epochs": 3, "epochs": 2, "batch_size": 64},
    },
    "seeds": [0],
    "betas": [1e-5],
    "rows": list(ROWS),
    "lr": 3e-3,
    "compile_rows": ["ours"],
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
    summary = "; ".join(f"{t}: float {c['float_epochs']} ep, N = {c['epochs']} ep, batch {c['batch_size']}"
                        for t, c in tasks.items())
    summary += (f"; seeds {settings['seeds']}; betas {settings['betas']}; Adam lr {settings['lr']} for every "
                f"training (float, fine-tuning, HGQ2)")
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


def _compiles(settings, row, beta, seed):
    betas = settings["betas"]
    return (row in settings["compile_rows"] and seed == settings.get("first_seed", settings["seeds"][0])
            and (settings["compile_betas"] == "all" or beta in (min(betas), max(betas))))


def run_row(row, task, float_m, data, beta, cfg, settings, seed, scratch, target=None):
    """Train one row's model at one beta and seed, then export it (unified EBOPs, optional g++ check)."""
    n, bs, lr = cfg["epochs"], cfg["batch_size"], settings["lr"]
    r = {}
    try:
        if row in OURS:
            model, r["train"] = H.train_ours(task, float_m, data, beta, n, bs, lr, seed, target=target)
        else:
            epochs = 4 * n if row == "hgq2_4x" else n
            start = float_m if row == "hgq2_float" else None
            model, r["train"] = H.train_hgq2(task, start, data, beta, epochs, bs, lr, seed)
    except Exception as exc:
        r["train"] = H.error_record(exc)
        log(f"{task} seed {seed} beta={beta:g} {row}: training FAILED: {r['train']['error']}")
        return r
    export = H.export_ours if row.startswith("ours") else H.export_hgq2
    try:
        r["export"] = export(model, data[2], data[3], _compiles(settings, row, beta, seed),
                             os.path.join(scratch, f"{task}_{seed}_{beta:g}_{row}"))
    except Exception as exc:
        r["export"] = H.error_record(exc)
    exp = r["export"]
    log(f"{task} seed {seed} beta={beta:g} {row}: acc {deployed_accuracy(r):.4f}, EBOPs "
        f"{exp.get('ebops', float('nan')):,.0f}" + (f" (target {target:,.0f})" if target else "")
        + f", median epoch {r['train']['median_epoch_s']:.3f}s"
        + (f", mismatches {exp['mismatching_samples']}/{exp['n_samples']}" if "n_samples" in exp else "")
        + (f", export FAILED: {exp['error']}" if "error" in exp else ""))
    del model
    gc.collect()
    return r


def run_task(task, settings, scratch, speed=True):
    """Every row at every beta and seed of one task, then (``speed``) the interleaved speed measurement
    on the first seed."""
    cfg = settings["tasks"][task]
    result = {"config": cfg, "seeds": {}}
    rows = [r for r in ROWS if r in settings["rows"]]
    for seed in settings["seeds"]:
        data = load(task, settings, seed)
        result["data"] = {"n_train": len(data[0]), "n_test": len(data[2]), "input_shape": list(data[0].shape[1:])}
        log(f"{task} seed {seed}: training the float model ({cfg['float_epochs']} epochs)")
        float_m, float_rec = H.train_float(task, data, cfg["float_epochs"], cfg["batch_size"], settings["lr"], seed)
        log(f"{task} seed {seed}: float test accuracy {float_rec['test_accuracy']:.4f}")
        runs = {}
        result["seeds"][str(seed)] = {"float": float_rec, "runs": runs}
        reused = settings.get("reused_runs", {}).get(task, {}).get(str(seed), {})
        for beta in settings["betas"]:
            for row in rows:
                if f"{row}@{beta:g}" in reused:  # an HGQ2 row of an earlier run (--reuse): not trained again
                    runs[f"{row}@{beta:g}"] = reused[f"{row}@{beta:g}"]
                    continue
                target = None
                if row in TARGET_ROWS:
                    hgq2_ebops = runs.get(f"hgq2@{beta:g}", {}).get("export", {}).get("ebops")
                    if not hgq2_ebops:
                        continue  # no HGQ2 budget to aim at
                    target = TARGET_ROWS[row] * hgq2_ebops
                runs[f"{row}@{beta:g}"] = run_row(row, task, float_m, data, beta, cfg, settings, seed, scratch,
                                                  target)
            keras.backend.clear_session()
        if speed and settings["speed_rounds"] and seed == settings["seeds"][0]:
            log(f"{task}: speed, {settings['speed_rounds']} interleaved rounds of one epoch per model")
            try:
                result["speed"] = H.measure_speed(task, float_m, data, settings["speed_beta"], cfg["batch_size"],
                                                  settings["speed_rounds"], settings["lr"], seed)
                s = result["speed"]
                log(f"{task}: median epoch float {s['float_s']:.3f}s, ours {s['ours_s']:.3f}s, "
                    f"HGQ2 {s['hgq2_s']:.3f}s")
            except Exception as exc:
                result["speed"] = H.error_record(exc)
                log(f"{task}: speed FAILED: {result['speed']['error']}")
        del float_m
        keras.backend.clear_session()
        gc.collect()
    return result


REUSABLE_ROWS = ("hgq2", "hgq2_4x", "hgq2_float")  # rows whose runs do not depend on hgq_rewrite's code
SAME_SETTINGS = ("lr", "max_train", "max_test")


def reused_runs(path, settings):
    """``{task: {seed: {"row@beta": run}}}``: the HGQ2 rows of an earlier results JSON for this run's
    tasks, seeds and betas. Its settings must be this run's (same epochs, batch, lr and data sizes)."""
    with open(path) as f:
        old = json.load(f)
    old_settings = old["meta"]["settings"]
    for key in SAME_SETTINGS:
        if old_settings.get(key) != settings.get(key):
            raise SystemExit(f"--reuse {path}: its setting {key!r} is {old_settings.get(key)!r}, this run's is "
                             f"{settings.get(key)!r}; rerun the HGQ2 rows instead (no --reuse).")
    out = {}
    for task, cfg in settings["tasks"].items():
        old_cfg = old["tasks"].get(task, {}).get("config")  # per task: a merged file holds several runs' tasks
        if old_cfg != cfg:
            raise SystemExit(f"--reuse {path}: task {task!r} ran with {old_cfg}, this run uses {cfg}; rerun its "
                             "HGQ2 rows instead.")
        for seed in settings["seeds"]:
            runs = old["tasks"][task]["seeds"].get(str(seed), {}).get("runs", {})
            keys = [f"{row}@{beta:g}" for row in REUSABLE_ROWS if row in settings["rows"] for beta in settings["betas"]]
            out.setdefault(task, {})[str(seed)] = {
                k: runs[k] for k in keys if k in runs and "error" not in runs[k].get("train", {})}
    return out


def _seed_job(args):
    """One (task, seed) in a worker process (``--jobs``); the speed measurement goes with the first seed."""
    task, seed, settings, scratch = args
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    one = dict(settings, seeds=[seed], first_seed=settings["seeds"][0])
    return task, seed, run_task(task, one, scratch, speed=seed == settings["seeds"][0])


def speed_summary(task_result):
    """Interleaved speed measurement (``measure_speed``) plus the medians over the sweep's fits."""
    out = {k: v for k, v in task_result.get("speed", {}).items() if k != "epoch_times"}

    def med(values):
        return float(np.median(values)) if values else None

    times = {"float": [], "ours": [], "hgq2_float": []}
    for seed in task_result["seeds"].values():
        times["float"] += seed["float"]["epoch_times"][1:]
        for key, r in seed["runs"].items():
            row = key.split("@")[0]
            t = r.get("train", {}).get("epoch_times")
            if row in times and t:
                times[row] += t[1:] if len(t) > 1 else t
    f, ours, hgq2 = med(times["float"]), med(times["ours"]), med(times["hgq2_float"])
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
    parser.add_argument("--seeds", nargs="+", type=int, help="override the seeds")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="only these rows (the target rows need hgq2)")
    parser.add_argument("--jobs", type=int, default=1, help="tasks run in this many worker processes")
    parser.add_argument("--no-compile", action="store_true", help="convert only (EBOPs), no bit-exact check")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling section")
    parser.add_argument("--keep-projects", metavar="DIR", help="keep the hls4ml projects in DIR")
    parser.add_argument("--report", metavar="JSON", help="only rewrite the markdown and plots of a results JSON")
    parser.add_argument("--reuse", metavar="JSON",
                        help="take the HGQ2 rows (hgq2, hgq2_4x, hgq2_float) of an earlier results JSON with the "
                             "same settings instead of training them again; our rows are trained")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="merge several results JSONs (runs split by --tasks, or by --rows) into --out")
    parser.add_argument("--no-speed", action="store_true", help="skip the interleaved speed measurement")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_results(args.merge)
        os.makedirs(args.out, exist_ok=True)
        _write(merged, args.out, "", time.perf_counter() - merged["total_s"])
        return
    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        out = os.path.dirname(os.path.abspath(args.report))
        suffix = os.path.basename(args.report)[len("bench"):-len(".json")]
        _write(results, out, suffix, time.perf_counter() - results.get("total_s", 0))
        return

    settings = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.tasks:
        settings["tasks"] = {t: c for t, c in settings["tasks"].items() if t in args.tasks}
    if args.betas:
        settings["betas"] = args.betas
    if args.seeds:
        settings["seeds"] = args.seeds
    if args.rows:
        settings["rows"] = args.rows
    if args.no_compile:
        settings["compile_rows"] = []
    if args.no_speed:
        settings["speed_rounds"] = 0
    notes = []
    if args.reuse:
        settings["reused_runs"] = reused_runs(args.reuse, settings)
        with open(args.reuse) as f:
            old_meta = json.load(f)["meta"]
        rows = ", ".join(r for r in REUSABLE_ROWS if r in settings["rows"])
        notes.append(f"The HGQ2 rows ({rows}) are those of {os.path.basename(args.reuse)} ({old_meta['date']}, "
                     f"hgq2 {old_meta['versions']['hgq2']}, same settings, seeds and data); the other rows were "
                     "trained in this run.")
    mode = "quick" if args.quick else "full"
    suffix = "_quick" if args.quick else ""
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    results = {"meta": meta(mode, {k: v for k, v in settings.items() if k != "reused_runs"}), "tasks": {},
               "speed": {}, "scaling": [], "notes": notes}
    log(f"{mode} run; results to {args.out}")

    with H.workdir(args.keep_projects) as scratch:
        tasks = list(settings["tasks"])
        if args.jobs > 1:  # one job per (task, seed), results stored as they come
            ctx = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
                jobs = [pool.submit(_seed_job, (t, seed, settings, scratch)) for t in tasks for seed in settings["seeds"]]
                for job in concurrent.futures.as_completed(jobs):
                    task, seed, part = job.result()
                    _store(results, task, _merge_seed(results["tasks"].get(task), part, settings), args.out, suffix,
                           t_start)
        else:
            for task in tasks:
                _store(results, task, run_task(task, settings, scratch), args.out, suffix, t_start)
        if not args.no_scaling:
            log(f"scaling: chain models of {settings['scaling_sizes']} layers")
            results["scaling"] = run_scaling(settings["scaling_sizes"], settings["scaling_max_export"],
                                             settings["scaling_max_hls"], scratch, log=log)
    _write(results, args.out, suffix, t_start)
    log(f"done in {(time.perf_counter() - t_start) / 60:.1f} min: {os.path.join(args.out, f'bench{suffix}.md')}")


def merge_results(paths):
    """One results dict from several runs: their tasks, speeds and commands together. A task in more
    than one run takes the rows of each (a run key both hold must be the same run: a reused HGQ2 row);
    its float records and speed are those of the first run that has it."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    merged = json.loads(json.dumps(runs[0]))
    merged["meta"]["command"] = " ; ".join(r["meta"]["command"] for r in runs)
    merged["meta"]["versions"]["hgq_rewrite"] = ", ".join(r["meta"]["versions"]["hgq_rewrite"] for r in runs)
    merged["meta"]["settings_summary"] = " | ".join(r["meta"]["settings_summary"] for r in runs)
    for path, r in zip(paths[1:], runs[1:]):
        for task, task_result in r["tasks"].items():
            if task in merged["tasks"]:
                _merge_rows(merged, task, task_result, path, r["meta"]["date"])
            else:
                merged["tasks"][task] = task_result
                merged["speed"][task] = r["speed"][task]
        merged["notes"] += r.get("notes", [])
    merged["total_s"] = sum(r.get("total_s", 0) for r in runs)
    return merged


def _merge_rows(merged, task, task_result, path, date):
    """Add the runs of ``task_result`` (from results file ``path``) to ``merged``'s result of the same task;
    a run key both hold must be the same run (a reused HGQ2 row)."""
    added = set()
    for seed, part in task_result["seeds"].items():
        runs_so_far = merged["tasks"][task]["seeds"].setdefault(seed, dict(part, runs={}))["runs"]
        for key, run in part["runs"].items():
            if key in runs_so_far and runs_so_far[key] != run:
                raise ValueError(f"--merge: {path} has another run {key!r} of task {task!r}, seed {seed}; "
                                 "merge runs of different tasks or rows")
            added |= set() if key in runs_so_far else {key.split("@")[0]}
            runs_so_far[key] = run
    if added:
        floats = [s["float"]["test_accuracy"] for s in task_result["seeds"].values()]
        merged["notes"].append(
            f"{task}: rows {', '.join(sorted(added))} come from {os.path.basename(path)} ({date}), fine-tuned from "
            f"float models trained again with the same recipe and seeds (test accuracy "
            f"{', '.join(f'{a:.4f}' for a in floats)}).")


def _merge_seed(task_result, part, settings):
    """``part`` (one seed's result) added to ``task_result``, seeds kept in the settings' order."""
    merged = dict(part) if task_result is None else dict(task_result, data=part["data"])
    seeds = dict(merged.get("seeds", {}), **part["seeds"]) if task_result is not None else dict(part["seeds"])
    merged["seeds"] = {str(s): seeds[str(s)] for s in settings["seeds"] if str(s) in seeds}
    if "speed" in part:
        merged["speed"] = part["speed"]
    return merged


def _store(results, task, task_result, out, suffix, t_start):
    """Add one task's result and write everything so far (partial results survive a crash later on)."""
    results["tasks"][task] = task_result
    results["speed"][task] = speed_summary(task_result)
    _write(results, out, suffix, t_start)


def _write(results, out, suffix, t_start):
    results["total_s"] = time.perf_counter() - t_start
    with open(os.path.join(out, f"bench{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=_json_default)
    plots = {task: f"pareto_{task}{suffix}.png" for task in results["tasks"]}
    for task, name in plots.items():
        plot_task(results, task, os.path.join(out, name))
    with open(os.path.join(out, f"bench{suffix}.md"), "w") as f:
        f.write(markdown(results, plots))


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

"""Epoch-time ratios (ours / float, `epoch_cost.py`) of several checkouts of the library, in one run.

Each repeat runs `epoch_cost.py` once per checkout (a subprocess with that checkout first on
``PYTHONPATH``), the order alternating between repeats, so load on the machine falls on all
versions alike; the result is, per version and task, the median over the repeats of the ratio of
median epoch times (and of CPU times). Check out a version with ``git worktree add DIR COMMIT``::

    git worktree add /tmp/issue_filed 430a775
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/epoch_cost_versions.py \\
        issue_filed=/tmp/issue_filed now=. --repeats 3 --label jax_issue11

Each checkout's step is compiled with XLA (``epoch_cost.py --jit-compile on``, as `finetune` compiles
long runs) but for the versions named by ``--without-xla`` (checkouts from before finetune used XLA on
TensorFlow), with the steps per call its finetune picks. Results go to ``results/epoch_cost_versions.json``
under ``--label`` (other labels are kept).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_versions(items):
    versions = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not os.path.isdir(os.path.join(path, "hgq_rewrite")):
            raise SystemExit(f"version {item!r}: give NAME=DIR, DIR a checkout holding hgq_rewrite/.")
        versions[name] = os.path.abspath(path)
    return versions


def one_run(path, tasks, rounds, out, extra=()):
    """`epoch_cost.py` (with the arguments ``extra``) on checkout ``path``; returns its run record."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cmd = [sys.executable, os.path.join(HERE, "epoch_cost.py"), "--rounds", str(rounds), "--label", "run",
           "--out", out, "--tasks", *tasks, *extra]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)["runs"]["run"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="+", help="NAME=DIR: a checkout of the library to time")
    ap.add_argument("--tasks", nargs="+", default=["digits28", "mnist1d", "jets"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=9, help="epoch_cost.py --rounds")
    ap.add_argument("--without-xla", nargs="+", default=[], metavar="NAME",
                    help="versions whose step runs without XLA (as finetune compiled it before it used XLA)")
    ap.add_argument("--float-xla", action="store_true", help="epoch_cost.py --float-xla: also over the float "
                    "model compiled with XLA")
    ap.add_argument("--float-matched", action="store_true", help="epoch_cost.py --float-matched: also over the "
                    "float model compiled as each version compiles ours")
    ap.add_argument("--label", required=True, help="key of this run in the JSON file")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "epoch_cost_versions.json"))
    args = ap.parse_args()
    versions = parse_versions(args.versions)
    unknown = set(args.without_xla) - set(versions)
    if unknown:
        raise SystemExit(f"--without-xla names {sorted(unknown)}, which are not among the versions.")
    runs = {name: [] for name in versions}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in (list(versions) if r % 2 == 0 else list(versions)[::-1]):
                out = os.path.join(tmp, f"{name}_{r}.json")
                extra = ["--jit-compile", "off" if name in args.without_xla else "on"]
                extra += ["--float-xla"] if args.float_xla else []
                extra += ["--float-matched"] if args.float_matched else []
                runs[name].append(one_run(versions[name], args.tasks, args.rounds, out, extra))
                ratios = ", ".join(f"{t} {v['ratio']:.2f}" for t, v in runs[name][-1]["tasks"].items())
                print(f"repeat {r + 1} {name}: {ratios}", flush=True)
    summary = {}
    for name, recs in runs.items():
        summary[name] = {"commit": recs[0]["commit"], "tasks": {}}
        for task in args.tasks:
            ratios = [rec["tasks"][task]["ratio"] for rec in recs]
            cpu = [rec["tasks"][task]["cpu_ratio"] for rec in recs]
            summary[name]["tasks"][task] = {"ratio": statistics.median(ratios), "ratios": ratios,
                                            "cpu_ratio": statistics.median(cpu), "cpu_ratios": cpu}
            for column, asked in (("float_xla", args.float_xla), ("float_matched", args.float_matched)):
                if asked:
                    to = [rec["tasks"][task][f"ratio_to_{column}"] for rec in recs]
                    summary[name]["tasks"][task].update({f"ratio_to_{column}": statistics.median(to),
                                                         f"ratios_to_{column}": to})
        print(name, {t: round(v["ratio"], 2) for t, v in summary[name]["tasks"].items()}, flush=True)
    doc = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            doc = json.load(f)
    doc.setdefault("what", "epoch time over the float model's (epoch_cost.py), several library versions interleaved")
    doc.setdefault("runs", {})[args.label] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "backend": runs[next(iter(runs))][0]["backend"],
        "date": runs[next(iter(runs))][0]["date"], "repeats": args.repeats, "rounds": args.rounds,
        "without_xla": args.without_xla,
        "versions": summary, "runs": runs}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()

"""Sweep on Ray: wall time with 1 vs 2 parallel trials, and a resume after a kill.

A small jets-like task (``data.jets``: 16 features, 5 classes; 4,000 training samples), the
float MLP 16-32-16-5 trained briefly, then ``hr.sweep`` over 4 betas (1 seed, 6 epochs each):

1. ``max_parallel=1`` and ``max_parallel=2`` on a local Ray with 2 CPUs (1 CPU per trial); the
   wall time of each call includes starting and stopping Ray;
2. ``hgq-rewrite sweep`` in a subprocess, killed (SIGKILL to it and every process it started)
   once 2 trials have finished, then run again on the same folder: the finished trials are
   skipped and the merged front is complete.

Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/sweep_scaling.py   # writes results/sweep_scaling.json
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from data import jets  # noqa: E402

GRID = {"beta": [1e-6, 1e-5, 1e-4, 3e-4], "seed": [0]}
EPOCHS = 6


def task(work):
    x, y, xv, yv = jets(seed=0, n_train=4000, n_test=1000)
    x, xv = x.astype("float32"), xv.astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((x.shape[1],), name="x")
    h = keras.layers.Dense(32, activation="relu")(inp)
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(5)(h), name="jets_mlp")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    model.save(os.path.join(work, "float.keras"))
    np.savez(os.path.join(work, "train.npz"), x=x, y=y)
    np.savez(os.path.join(work, "val.npz"), x=xv, y=yv)
    return model, (x, y), (xv, yv)


def descendants(pid):
    """Pids of every process started (transitively) by ``pid``, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_and_resume(work):
    out_dir = os.path.join(work, "killed")
    cmd = [os.path.join(os.path.dirname(sys.executable), "hgq-rewrite"), "sweep", os.path.join(work, "float.keras"),
           "--data", os.path.join(work, "train.npz"), "--val", os.path.join(work, "val.npz"), "--epochs", str(EPOCHS),
           "-o", out_dir, "--beta", *map(str, GRID["beta"]), "--seed", "0", "--num-cpus", "2", "--max-parallel", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def finished():
        folder = os.path.join(out_dir, "trials")
        if not os.path.isdir(folder):
            return 0
        return sum(os.path.isfile(os.path.join(folder, t, "trial.json")) for t in os.listdir(folder))

    while finished() < 2 and proc.poll() is None and time.perf_counter() - t0 < 900:
        time.sleep(0.5)
    pids = descendants(proc.pid)
    for pid in [proc.pid] + pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    t_killed = time.perf_counter() - t0
    done_at_kill = finished()
    t1 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    t_resume = time.perf_counter() - t1
    summary = json.load(open(os.path.join(out_dir, "front.json")))
    return {
        "killed_after_s": round(t_killed, 2),
        "trials_finished_at_kill": done_at_kill,
        "processes_killed": 1 + len(pids),
        "resume_exit_code": res.returncode,
        "resume_s": round(t_resume, 2),
        "resume_last_line": [ln for ln in res.stdout.splitlines() if ln.startswith("sweep:")][-1:],
        "trials": summary["trials"],
        "merged_front": [{k: m[k] for k in ("trial", "params", "epoch", "metric", "ebops", "path")}
                         for m in summary["front"]],
    }


def main():
    work = tempfile.mkdtemp(prefix="sweep-bench-")
    model, (x, y), val = task(work)
    rows = []
    for parallel in (1, 2):
        t0 = time.perf_counter()
        res = hr.sweep(model, x, y, grid=GRID, epochs=EPOCHS, validation_data=val, batch_size=32,
                       directory=os.path.join(work, f"p{parallel}"), num_cpus=2, cpus_per_trial=1,
                       max_parallel=parallel, verbose=2)
        wall = time.perf_counter() - t0
        rows.append({"max_parallel": parallel, "wall_s": round(wall, 2),
                     "trial_s": [round(t["seconds"], 2) for t in res.trials],
                     "front_size": len(res.front), "failed": res.failed})
        print(f"max_parallel={parallel}: {wall:.1f} s wall, trials {[r for r in rows[-1]['trial_s']]}", flush=True)
    resume = kill_and_resume(work)
    print(f"killed after {resume['killed_after_s']} s with {resume['trials_finished_at_kill']} trial(s) finished; "
          f"resume {resume['resume_s']} s: {resume['resume_last_line']}", flush=True)
    out = {
        "what": "hr.sweep: 4 trials (beta 1e-6..3e-4, 1 seed), 6 epochs each, jets-like MLP 16-32-16-5, "
                "4,000 training samples, batch 32; local Ray, 2 CPUs, 1 CPU per trial",
        "machine": f"{os.cpu_count()} cores (shared)",
        "backend": keras.config.backend(),
        "parallel": rows,
        "speedup_2_vs_1": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2),
        "kill_and_resume": resume,
    }
    path = os.path.join(HERE, "results", "sweep_scaling.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

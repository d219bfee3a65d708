"""Epoch time of our HGQ model over the float model's, interleaved, on each benchmark task.

The float model is compiled with Adam (Keras' defaults: no XLA on TensorFlow's CPU, one step per call of
the train function; ``--float-xla`` adds it compiled with XLA, ``--float-matched`` compiled as ours is,
each as one more model); our model (``quantize`` of the same float model) the way ``finetune`` compiles a
run of ``XLA_MIN_STEPS`` steps or more (`BitwidthAdam`, the step compiled with XLA, ``--jit-compile off``:
without; finetune's steps per call, ``--steps-per-execution N``: N) and fitted with ``finetune``'s callbacks
(`StopOnNonFiniteLoss`, `FreeBOPs`, `ParetoFront`, `ResetMinMax`; ``--progress`` adds its progress
bar). ``first_epoch_s`` is each model's first epoch (tracing and compiling). After that warm-up
epoch, ``--rounds`` times each model fits one epoch, the order reversing each round, so background
load on the machine hits all alike. An epoch is timed (wall and process CPU time) from the first
callback's ``on_epoch_begin`` to the last callback's ``on_epoch_end``; the ratio is of the median wall
times (``cpu_ratio``: of the median CPU times, less sensitive to other jobs). Run on the current Keras backend::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/epoch_cost.py --label after
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/epoch_cost.py --label after

Results go to ``results/epoch_cost_<backend>.json`` under ``--label`` (other labels are kept).
To measure another version of the library, put its checkout first on ``PYTHONPATH``
(the file records which ``hgq_rewrite`` was imported and its git commit).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from data import LOADERS  # noqa: E402
try:
    from hgq_rewrite.callbacks import StopOnNonFiniteLoss  # noqa: E402
except ImportError:  # a checkout from before it (timing an older version): finetune had no such callback
    StopOnNonFiniteLoss = None
from hgq_rewrite.finetune import ParetoFront, default_compile  # noqa: E402
try:
    from hgq_rewrite.finetune.execution import execution_setting  # noqa: E402
except ImportError:  # a checkout from before it: finetune ran one training step per call of the train function
    def execution_setting(steps_per_execution, steps_per_epoch):
        return 1 if steps_per_execution == "auto" else steps_per_execution
from models import float_model, hgq_rewrite_config  # noqa: E402

BATCH_SIZE = {"digits28": 32, "mnist1d": 64, "jets": 128}  # as benchmarks/run.py


class EpochStart(keras.callbacks.Callback):
    """First in the callback list: notes when an epoch begins."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()


class EpochEnd(keras.callbacks.Callback):
    """Last in the callback list: the epoch's wall and CPU time (every callback included)."""

    def __init__(self, start):
        super().__init__()
        self.start = start

    def on_epoch_end(self, epoch, logs=None):
        self.wall = time.perf_counter() - self.start.t0
        self.cpu = time.process_time() - self.start.cpu0


def one_epoch(model, x, y, batch_size, callbacks):
    start = EpochStart()
    end = EpochEnd(start)
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, callbacks=[start, *callbacks, end])
    return end.wall, end.cpu


def freeze_input_bits(model):
    """Make the bitwidths of the input quantizers (`HQuantize` layers) non-trainable: their gradient needs the
    backward pass down to the input, which the float model never computes (a diagnostic, not a recommendation)."""
    from hgq_rewrite.layers import HQuantize
    for layer in model._flatten_layers():
        if isinstance(layer, HQuantize):
            layer.paq.fbw.trainable = False


def compile_float(model, lr, jit_compile="auto", steps_per_execution=1):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile, steps_per_execution=steps_per_execution)


def measure(task, rounds, beta, lr, seed, frozen_input_bits=False, progress=False, jit_compile=True, float_xla=False,
            steps_per_execution="auto", float_matched=False):
    x, y, _, _ = LOADERS[task](seed)
    batch = BATCH_SIZE[task]
    keras.utils.set_random_seed(seed)
    fm = float_model(task)
    compile_float(fm, lr)
    ours = hr.quantize(fm, beta=beta, config=hgq_rewrite_config(task))
    if frozen_input_bits:
        freeze_input_bits(ours)
    default_compile(ours, y, lr)
    # set after compiling, not default_compile's arguments: older checkouts (epoch_cost_versions) lack them
    ours.jit_compile = jit_compile
    ours.steps_per_execution = execution_setting(steps_per_execution, -(-len(x) // batch))
    cbs = [StopOnNonFiniteLoss()] if StopOnNonFiniteLoss else []
    cbs += [hr.FreeBOPs(), ParetoFront("accuracy"), hr.ResetMinMax()]
    if progress:  # finetune(verbose=1)'s progress bar, drawn to nowhere
        import io

        from rich.console import Console

        from hgq_rewrite.finetune.progress import RichProgress
        cbs.insert(-1, RichProgress(console=Console(file=io.StringIO())))
    models = {"float": (fm, []), "ours": (ours, cbs)}
    if float_xla:  # the float model compiled with XLA too (Keras' "auto" leaves it off on TensorFlow's CPU)
        fx = float_model(task)
        fx.set_weights(fm.get_weights())
        compile_float(fx, lr, jit_compile=True)
        models["float_xla"] = (fx, [])
    if float_matched:  # the float model compiled as ours is: XLA and steps per call alike
        fs = float_model(task)
        fs.set_weights(fm.get_weights())
        compile_float(fs, lr, jit_compile=jit_compile, steps_per_execution=ours.steps_per_execution)
        models["float_matched"] = (fs, [])
    first = {name: one_epoch(m, x, y, batch, c)[0] for name, (m, c) in models.items()}
    times = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for name in order:
            model, c = models[name]
            wall, used = one_epoch(model, x, y, batch, c)
            times[name].append(wall)
            cpu[name].append(used)
    med = {name: statistics.median(t) for name, t in times.items()}
    paired = [o / f for o, f in zip(times["ours"], times["float"])]
    extra = {}
    for name in ("float_xla", "float_matched"):
        if name in med:
            extra.update({f"{name}_median_s": med[name], f"ratio_to_{name}": med["ours"] / med[name]})
    return {**extra, "jit_compile": jit_compile, "steps_per_execution": ours.steps_per_execution,
            "batch_size": batch, "steps_per_epoch": -(-len(x) // batch),
            "rounds": rounds, "beta": beta,
            "first_epoch_s": first, "epoch_times": times, "epoch_cpu_times": cpu, "float_median_s": med["float"],
            "ours_median_s": med["ours"], "ratio": med["ours"] / med["float"],
            "median_paired_ratio": statistics.median(paired),
            "cpu_ratio": statistics.median(cpu["ours"]) / statistics.median(cpu["float"])}


def git_commit(path):
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_header():
    """What a results run records about itself: command, environment, library checkout, versions, machine."""
    lib_dir = os.path.dirname(os.path.dirname(os.path.abspath(hr.__file__)))
    return {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "env": {k: os.environ[k] for k in ("KERAS_BACKEND", "JAX_PLATFORMS", "PYTHONPATH") if k in os.environ},
            "hgq_rewrite": os.path.abspath(hr.__file__), "commit": git_commit(lib_dir),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "backend": keras.config.backend(), "keras": keras.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "tasks": {}}


def save_run(out, what, label, run):
    """Add ``run`` under ``label`` to the results file ``out`` (its other runs are kept)."""
    doc = {}
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    doc.setdefault("what", what)
    doc.setdefault("runs", {})[label] = run
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(BATCH_SIZE), choices=list(BATCH_SIZE))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--beta", type=float, default=1e-5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--freeze-input-bits", action="store_true",
                    help="diagnostic: the input quantizers' bitwidths not trained (no backward pass to the input)")
    ap.add_argument("--progress", action="store_true", help="also finetune's progress bar (its verbose=1)")
    ap.add_argument("--jit-compile", choices=["on", "off"], default="on",
                    help="our model's step with XLA (on: as finetune compiles a run of XLA_MIN_STEPS steps or more)")
    ap.add_argument("--steps-per-execution", default="auto", metavar="auto|N",
                    type=lambda text: text if text == "auto" else int(text),
                    help="our model's training steps per call of the train function (auto: as finetune picks them)")
    ap.add_argument("--float-xla", action="store_true", help="also the float model compiled with XLA")
    ap.add_argument("--float-matched", action="store_true",
                    help="also the float model compiled as ours (the same --jit-compile and steps per call)")
    ap.add_argument("--label", default="after", help="key of this run in the JSON file (e.g. before / after)")
    ap.add_argument("--out", default=None, help="default: results/epoch_cost_<backend>.json")
    args = ap.parse_args()
    backend = keras.config.backend()
    out = args.out or os.path.join(HERE, "results", f"epoch_cost_{backend}.json")
    run = run_header()
    for task in args.tasks:
        r = measure(task, args.rounds, args.beta, args.lr, args.seed, args.freeze_input_bits, args.progress,
                    args.jit_compile == "on", args.float_xla, args.steps_per_execution, args.float_matched)
        r["frozen_input_bits"], r["progress_bar"] = args.freeze_input_bits, args.progress
        run["tasks"][task] = r
        print(f"{backend} {args.label} {task}: float {r['float_median_s']:.3f} s, ours {r['ours_median_s']:.3f} s, "
              f"ratio {r['ratio']:.2f} (paired median {r['median_paired_ratio']:.2f}, CPU time {r['cpu_ratio']:.2f})"
              + (f"; over the float model with XLA {r['ratio_to_float_xla']:.2f}" if args.float_xla else "")
              + (f"; over the float model compiled alike {r['ratio_to_float_matched']:.2f}" if args.float_matched
                 else ""),
              flush=True)
    save_run(out, "median epoch time of our HGQ model (finetune's compile and callbacks) over the float model's, "
                  "interleaved one-epoch fits, after one warm-up epoch each", args.label, run)

if __name__ == "__main__":
    main()

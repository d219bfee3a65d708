"""`sweep`: many `finetune` trials in parallel on Ray, their fronts merged into one.

Layout of the sweep folder::

    OUT/sweep.json          what was asked (grid, trials, settings, model and data fingerprints)
    OUT/trials/t000/        one finished trial: its finetune files (front.json, history.json,
                            epochNNNN.keras) and, written last, trial.json (params, status, time)
    OUT/members/            the merged front's models, t000-epoch0004.keras, ...
    OUT/front.json          the merged front, each member with its trial, params, epoch and file
    OUT/front.png           every trial's epochs and the merged front

A trial is finished when its ``trial.json`` says ``done``; running ``sweep`` again on the
same folder with the same model, data, grid and settings skips the finished trials and runs
the others (a killed sweep resumes). The driver is the only writer of the folder: a worker
trains in a temporary folder of its own machine and sends the files back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from ..files import atomic_path, is_temporary, write_json
from ..inputs import as_arrays
from .grid import GRID_KEYS, expand_grid, normalize_grid
from .merge import MEMBERS_DIR, PLOT_FILE, SweepMember, merge_fronts, place_members, plot_front, read_trial_front
from .merge import write_front

SWEEP_FILE = "sweep.json"
TRIALS_DIR = "trials"
TRIAL_FILE = "trial.json"
INSTALL_HINT = "install with pip install 'hgq_rewrite[sweep]'"
_OWN_NAMES = {SWEEP_FILE, TRIALS_DIR, MEMBERS_DIR, "front.json", PLOT_FILE}


def import_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"sweep needs Ray, which is not installed: {INSTALL_HINT}.") from None
    return ray


@dataclass
class SweepResult:
    """What `sweep` returns.

    Attributes:
        directory: the sweep folder.
        front: the merged front (`SweepMember`, fewest EBOPs first); ``front[i].load()``.
        trials: per trial ``{"id", "params", "status", "seconds", "front_size", "error"?}``.
        ran / skipped / failed: trial ids run now, finished before (resumed), failed now.
        metric / mode: the front's metric and whether it is maximised or minimised.
        seconds: wall time of this call.
    """

    directory: str
    front: list
    trials: list
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    metric: str | None = None
    mode: str = "max"
    seconds: float = 0.0


# --------------------------------------------------------------------------- checks


def _check_number(value, name, low, integer=False, allow_none=False):
    if value is None and allow_none:
        return None
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= low or value != value:
        raise ValueError(f"sweep: {name} must be {'an integer' if integer else 'a number'} >= {low}"
                         f"{' or None' if allow_none else ''}, got {value!r}.")
    return int(value) if integer else float(value)


def _fingerprint(arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _model_bytes(model):
    folder = tempfile.mkdtemp(prefix="hgq-sweep-model-")
    try:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _model_fingerprint(model):
    h = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    h.update(_fingerprint([np.asarray(w) for w in model.get_weights()]).encode())
    return h.hexdigest()[:16]


def _jsonable_config(config):
    if config is None or isinstance(config, (str, os.PathLike)):
        return None if config is None else os.fspath(config)
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError):
        raise TypeError("sweep: config must be a rewrite config dict of plain values, or a YAML/JSON path.") from None


def _check_folder(directory, spec, overwrite):
    """Return True to resume an earlier sweep in ``directory``; refuse foreign or different content."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"sweep: directory {directory!r} is a file; give a folder (new, empty, or an earlier sweep).")
    if not os.path.isdir(directory):
        return False
    names = [n for n in os.listdir(directory) if not is_temporary(n)]
    foreign = sorted(n for n in names if n not in _OWN_NAMES)
    if foreign:
        raise ValueError(f"sweep: directory {directory!r} holds files a sweep does not write "
                         f"({', '.join(foreign[:5])}); choose a new or empty folder.")
    if not names:
        return False
    path = os.path.join(directory, SWEEP_FILE)
    old = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    if old is not None and old == spec:
        return True
    if not overwrite:
        differ = "no sweep.json" if old is None else "different " + ", ".join(
            k for k in sorted(set(spec) | set(old)) if spec.get(k) != old.get(k))
        raise ValueError(f"sweep: directory {directory!r} holds another sweep ({differ}); choose a new folder, "
                         "or pass overwrite=True (command line: --overwrite) to delete it first.")
    for name in names:
        full = os.path.join(directory, name)
        shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    return False


def _trial_done(directory, trial_id):
    path = os.path.join(directory, TRIALS_DIR, trial_id, TRIAL_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if record.get("status") == "done" else None


# --------------------------------------------------------------------------- Ray


def _worker_env(cpus):
    threads = str(max(1, int(cpus)))
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
           "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads, "OMP_NUM_THREADS": threads}
    import keras

    env["KERAS_BACKEND"] = keras.config.backend()
    for key in ("JAX_PLATFORMS", "KERAS_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _start_ray(ray, address, num_cpus):
    """Join ``address`` or start a local Ray; return True if this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        kwargs["num_cpus"] = num_cpus
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"sweep: cannot join the Ray cluster at {address!r} ({e}); check the address "
                              "(ray start --head prints it), or leave address unset for a local Ray.") from None
    return True


# --------------------------------------------------------------------------- the sweep


def sweep(
    model,
    x,
    y=None,
    *,
    grid,
    epochs,
    directory,
    validation_data=None,
    batch_size=32,
    metric=None,
    config=None,
    bitwidth_lr_scale=None,
    cpus_per_trial=1,
    gpus_per_trial=0,
    max_parallel=None,
    address=None,
    num_cpus=None,
    overwrite=False,
    verbose=1,
):
    """Run a `finetune` per combination of ``grid`` on Ray and merge their Pareto fronts.

    Args:
        model: a float `keras.Model` (each trial quantizes it with the trial's beta and
            init policy, and ``config``) or an HGQ model (each trial fine-tunes a copy).
        x, y: training inputs (array or list of arrays) and targets.
        grid: ``{"beta": [...], "seed": [...], "init": [...], "learning_rate": [...], "target_ebops": [...]}``;
            every combination is a trial (see `hgq_rewrite.sweep.grid`).
        epochs: epochs of every trial.
        directory: the sweep folder (new, empty, or an earlier sweep to resume).
        validation_data: ``(x_val, y_val)``; the fronts then use validation metrics.
        batch_size, metric, bitwidth_lr_scale: passed to `finetune` (None: its default).
        config: rewrite config for a float model (dict or YAML/JSON path).
        cpus_per_trial / gpus_per_trial: Ray resources each trial declares (fractions allowed);
            each trial runs in a fresh worker process of its own.
        max_parallel: at most this many trials at once (None: as many as the resources allow).
        address: None starts a local Ray (``ray.init()``) and stops it at the end; an address
            (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) joins an existing cluster. An
            already initialised Ray is used as it is.
        num_cpus: CPUs of the local Ray (None: all of the machine's).
        overwrite: ``directory`` holds a different sweep: delete it first (else refused).
        verbose: 0 silent, 1 a rich progress display, 2 one line per finished trial.

    Returns:
        A `SweepResult` (the merged front with provenance, the trials, what ran / was skipped).

    Raises:
        ImportError: Ray is not installed (the message says how to install it).
        TypeError / ValueError: a wrong argument, before anything runs.
    """
    import keras

    from ..bitwidth_step import DEFAULT_BITWIDTH_LR_SCALE
    from ..trace import h_layers

    t_start = time.perf_counter()
    if not isinstance(model, keras.Model):
        raise TypeError(f"sweep: model must be a keras.Model (float or HGQ), got {type(model).__name__}.")
    if directory is None:
        raise ValueError("sweep: directory is missing; give a folder for the trials and the merged front.")
    directory = os.fspath(directory)
    trials = expand_grid(grid)
    epochs = _check_number(epochs, "epochs", 1, integer=True)
    batch_size = _check_number(batch_size, "batch_size", 1, integer=True)
    cpus_per_trial = _check_number(cpus_per_trial, "cpus_per_trial", 0)
    gpus_per_trial = _check_number(gpus_per_trial, "gpus_per_trial", 0)
    max_parallel = _check_number(max_parallel, "max_parallel", 1, integer=True, allow_none=True)
    num_cpus = _check_number(num_cpus, "num_cpus", 1, integer=True, allow_none=True)
    if cpus_per_trial == 0 and gpus_per_trial == 0:
        raise ValueError("sweep: cpus_per_trial and gpus_per_trial are both 0; a trial needs some resource.")
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"sweep: verbose must be 0, 1 or 2, got {verbose!r}.")
    if address is not None and not isinstance(address, str):
        raise TypeError(f"sweep: address must be a text such as 'auto' or 'ray://host:10001', got {address!r}.")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ValueError(f"sweep: metric must be the name of a logged metric, got {metric!r}.")
    if y is None:
        raise ValueError("sweep: y (the targets) is missing.")
    xs = as_arrays(x, "x", "sweep")
    (ys,) = as_arrays([y], "y", "sweep")
    if ys.shape[0] != xs[0].shape[0]:
        raise ValueError(f"sweep: x has {xs[0].shape[0]} samples but y has {ys.shape[0]}.")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
            raise ValueError("sweep: validation_data must be a pair (x_val, y_val).")
        xv = as_arrays(validation_data[0], "validation_data x", "sweep")
        (yv,) = as_arrays([validation_data[1]], "validation_data y", "sweep")
        val = ((xv if len(xv) > 1 else xv[0]), yv)
    kind = "hgq" if h_layers(model) else "float"
    if kind == "hgq" and any(isinstance(t.params["init"], str) for t in trials):
        raise ValueError("sweep: init 'bw:N' sets init_bw when quantizing, but model is already an HGQ model; "
                         "pass the float model, or use init None / a tolerance.")
    if kind == "hgq" and config is not None:
        raise ValueError("sweep: config is a rewrite config, but model is already an HGQ model; pass the float "
                         "model, or drop config.")
    scale = DEFAULT_BITWIDTH_LR_SCALE if bitwidth_lr_scale is None else bitwidth_lr_scale
    settings = {"epochs": epochs, "batch_size": batch_size, "metric": metric, "config": config,
                "bitwidth_lr_scale": scale}
    spec = {
        "version": 1,
        "kind": kind,
        "model": _model_fingerprint(model),
        "data": _fingerprint(xs + [ys] + ([] if val is None else as_arrays(val[0], "x_val", "sweep") + [val[1]])),
        "grid": normalize_grid(grid),
        "trials": [{"id": t.id, "params": t.params} for t in trials],
        "epochs": epochs,
        "batch_size": batch_size,
        "metric": metric,
        "config": _jsonable_config(config),
        "bitwidth_lr_scale": scale,
    }
    spec = json.loads(json.dumps(spec))
    ray = import_ray()  # before anything is written
    _check_folder(directory, spec, overwrite)
    os.makedirs(os.path.join(directory, TRIALS_DIR), exist_ok=True)
    write_json(os.path.join(directory, SWEEP_FILE), spec)

    records = {t.id: _trial_done(directory, t.id) for t in trials}
    skipped = [t.id for t in trials if records[t.id] is not None]
    pending = [t for t in trials if records[t.id] is None]
    ran, failed = [], []
    show = _Display(len(trials), len(skipped), verbose)
    if skipped:
        show.line(f"resuming {directory}: {len(skipped)} of {len(trials)} trial(s) finished earlier, skipped")
    if pending:
        started = _start_ray(ray, address, num_cpus)
        try:
            model_ref = ray.put(_model_bytes(model))
            data_ref = ray.put((xs, ys, val))
            from .trial import train_trial

            remote = ray.remote(max_calls=1)(train_trial).options(  # a fresh worker process per trial
                num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0,
                runtime_env={"env_vars": _worker_env(cpus_per_trial)},
            )
            show.start()
            running, queue = {}, list(pending)
            limit = max_parallel or len(queue)
            while queue or running:
                while queue and len(running) < limit:
                    t = queue.pop(0)
                    running[remote.remote(t.params, model_ref, kind, data_ref, settings)] = (t, time.perf_counter())
                show.running([t.id for t, _ in running.values()])
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    t, t0 = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # the worker died (out of memory, killed node, ...)
                        out = {"status": "failed", "seconds": time.perf_counter() - t0, "files": {},
                               "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
                    records[t.id] = _store_trial(directory, t, out)
                    (ran if out["status"] == "done" else failed).append(t.id)
                    _merge(directory, trials, records)
                    show.finished(t, records[t.id])
        except BaseException:
            for ref in list(locals().get("running", {})):
                ray.cancel(ref, force=True)
            raise
        finally:
            show.stop()
            if started:
                ray.shutdown()
    members, metric_name, mode, trial_rows = _merge(directory, trials, records)
    result = SweepResult(directory, members, trial_rows, ran, skipped, failed, metric_name, mode,
                         time.perf_counter() - t_start)
    show.summary(result)
    return result


def _store_trial(directory, trial, out):
    """Write a trial's returned files, then its ``trial.json`` (last: it marks the trial finished)."""
    folder = os.path.join(directory, TRIALS_DIR, trial.id)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for name, blob in out.get("files", {}).items():
        with atomic_path(os.path.join(folder, os.path.basename(name))) as tmp:
            with open(tmp, "wb") as f:
                f.write(blob)
    record = {"id": trial.id, "params": trial.params, "status": out["status"], "seconds": out.get("seconds"),
              "front_size": out.get("front_size", 0)}
    if out["status"] != "done":
        record["error"] = out.get("error", "unknown error")
        record["traceback"] = out.get("traceback", "")
    write_json(os.path.join(folder, TRIAL_FILE), record)
    return record


def _merge(directory, trials, records):
    """Merge the fronts of the finished trials; write members/, front.json and front.png."""
    from ..finetune import metric_mode

    fronts, points, metric, mode = [], [], None, None
    for t in trials:
        rec = records.get(t.id)
        if rec is None or rec.get("status") != "done":
            continue
        folder = os.path.join(directory, TRIALS_DIR, t.id)
        summary = read_trial_front(folder)
        if metric is None:
            metric, mode = summary.get("metric"), summary.get("mode") or metric_mode(summary.get("metric") or "")
        fronts.append((t.id, t.params, folder, summary))
        points += [{"trial": t.id, **p} for p in summary.get("points", [])]
    members = merge_fronts(fronts, mode or "max")
    place_members(members, directory)
    rows = []
    for t in trials:
        rec = records.get(t.id)
        row = {"id": t.id, "params": t.params, "status": "pending" if rec is None else rec["status"]}
        if rec is not None:
            row.update({k: rec[k] for k in ("seconds", "front_size", "error") if k in rec})
        rows.append(row)
    write_front(directory, members, metric, mode or "max", rows, points)
    if points:
        plot_front(directory, members, points, metric, {t.id: t.label() for t in trials})
    return members, metric, mode or "max", rows


# --------------------------------------------------------------------------- progress


class _Display:
    """A rich progress bar of trials (``verbose=1``) or plain lines (``verbose=2``)."""

    def __init__(self, total, done, verbose):
        self.total, self.done, self.verbose = total, done, int(verbose)
        self.progress = None

    def start(self):
        if self.verbose != 1:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("trials", total=self.total, completed=self.done, info="")

    def running(self, ids):
        if self.progress is not None:
            self.progress.update(self.task, info=f"running {' '.join(ids)}" if ids else "")

    def line(self, text):
        if self.progress is not None:
            self.progress.console.print(text, soft_wrap=True, highlight=False)
        elif self.verbose:
            print(text, flush=True)

    def finished(self, trial, record):
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done)
        secs = record.get("seconds") or 0.0
        if record["status"] == "done":
            text = f"{trial.id} done in {secs:.0f} s  {trial.label()}  front {record.get('front_size', 0)} point(s)"
        else:
            text = f"{trial.id} FAILED after {secs:.0f} s  {trial.label()}  {record.get('error')}"
        self.line(text)

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self, result):
        if not self.verbose:
            return
        best = ""
        if result.front:
            top = max(result.front, key=lambda m: m.metric if result.mode == "max" else -m.metric)
            best = f"; best {result.metric} {top.metric:.4f} at {top.ebops:,.0f} EBOPs ({top.trial})"
        print(f"sweep: {len(result.ran)} trial(s) run, {len(result.skipped)} skipped, {len(result.failed)} failed; "
              f"merged front {len(result.front)} member(s) in {result.directory}{best} ({result.seconds:.0f} s)",
              flush=True)


def load_sweep(directory):
    """Read a sweep folder's merged ``front.json``: ``(summary dict, [SweepMember, ...])``."""
    path = os.path.join(os.fspath(directory), "front.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} is not a sweep folder: it has no front.json.")
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    members = []
    for e in summary.get("front", []):
        m = SweepMember(**e)
        for key in ("path", "source"):
            value = getattr(m, key)
            if value is not None and not os.path.isabs(value):
                setattr(m, key, os.path.join(os.fspath(directory), value))
        members.append(m)
    return summary, members


__all__ = ["sweep", "SweepResult", "load_sweep", "import_ray", "GRID_KEYS"]

"""finetune: train an HGQ model against its EBOPs penalty and keep the accuracy-vs-EBOPs Pareto front.

`finetune` compiles the model if needed, wires `FreeBOPs` / `ResetMinMax`
(and a `BetaScheduler` for the beta schedule), shows a `rich` progress bar and
returns ``(history, front)``. The front is kept by the `ParetoFront` callback:
after every epoch the (metric, EBOPs) point is compared with the points kept so
far; a point no other point beats on both is kept (saved as ``.keras`` in the
folder the user names), and the points it beats are dropped (their files
deleted). ``front.json`` and ``history.json`` in that folder describe the run
(`hgq-rewrite report --pareto DIR` plots them). Every file is written to a
temporary file in the folder and renamed into place once complete.

`finetune` checks every argument before it touches the model, refuses a folder
holding an earlier run unless ``overwrite=True``, stops with `NonFiniteLossError`
when the loss turns NaN or inf, and on any failure puts the model's weights and
compile state back as they were.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real

import keras
import numpy as np

from .beta_control import BetaController, check_target
from .bitwidth_step import DEFAULT_BITWIDTH_LR_SCALE, BitwidthAdam, check_scale
from .callbacks import CalibratedBOPs, FreeBOPs, NonFiniteLossError, ResetMinMax, StopOnNonFiniteLoss
from .files import is_temporary, save_model, write_json
from .layers.links import link_model
from .quantizers.replicas import distributed
from .schedules import BetaScheduler, as_schedule
from .trace import h_layers

FRONT_FILE = "front.json"
HISTORY_FILE = "history.json"
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge")


def metric_mode(metric):
    """``"min"`` if lower values of ``metric`` are better (losses, errors), else ``"max"``."""
    name = metric.lower()
    return "min" if any(word in name for word in _LOWER_IS_BETTER) else "max"


@dataclass
class FrontEntry:
    """One epoch on the Pareto front.

    Attributes:
        epoch: 0-based epoch of the fit (file names and printed tables count from 1).
        metric: value of the front's metric at that epoch.
        ebops: EBOPs at that epoch (``bops`` in the logs).
        path: the saved ``.keras`` file, or None without a folder.
        logs: every logged value of that epoch.
        weights: the model weights of that epoch (only without a folder).
    """

    epoch: int
    metric: float
    ebops: float
    path: str | None = None
    logs: dict = field(default_factory=dict)
    weights: list | None = field(default=None, repr=False)

    def load(self):
        """Load the saved model of this epoch (safe mode)."""
        if self.path is None:
            raise ValueError("This front entry was not saved to a file (finetune ran without pareto_dir).")
        return keras.saving.load_model(self.path, safe_mode=True)

    def restore(self, model):
        """Put this epoch's weights back into ``model`` (the model that was trained)."""
        if self.weights is not None:
            model.set_weights(self.weights)
        else:
            model.set_weights(self.load().get_weights())
        return model

    def to_dict(self):
        out = asdict(self)
        out.pop("weights")
        return out


class Front(list):
    """The front `finetune` returns: a list of `FrontEntry`, fewest EBOPs first.

    With ``target_ebops`` it also tells which member meets the budget:

    Attributes:
        target_ebops: the EBOPs budget, or None.
        chosen: the member with the best metric among those with EBOPs <= ``target_ebops``;
            None without a target or when no epoch reached it.
        reached: True if some member is at or under the target (None without a target).
        message: one line saying which member was chosen, or that the target was not reached.
    """

    target_ebops = None
    chosen = None
    reached = None
    message = ""


def choose_member(entries, target, mode):
    """The entry with the best metric among ``entries`` whose EBOPs are <= ``target`` (None if none)."""
    under = [e for e in entries if e.ebops <= target]
    if not under:
        return None
    sign = 1 if mode == "max" else -1
    return max(under, key=lambda e: (sign * e.metric, -e.ebops, -e.epoch))


def _target_result(entries, target, mode, metric, points):
    front = Front(entries)
    front.target_ebops = target
    front.chosen = choose_member(entries, target, mode)
    front.reached = front.chosen is not None
    if front.reached:
        c = front.chosen
        where = f" ({c.path})" if c.path else ""
        front.message = (f"target {target:,.0f} EBOPs reached: epoch {c.epoch + 1}, {metric} {c.metric:.4f}, "
                         f"{c.ebops:,.0f} EBOPs{where}")
    else:
        seen = [b for _, _, b in points if math.isfinite(b)]
        lowest = f"{min(seen):,.0f}" if seen else "none"
        front.message = (f"target {target:,.0f} EBOPs not reached: the lowest EBOPs of an epoch was {lowest}; "
                         "train more epochs or allow a larger beta_max")
    return front


def dominates(a, b, mode):
    """True if point ``a`` = (metric, ebops) is at least as good as ``b`` in both and better in one."""
    (ma, ea), (mb, eb) = a, b
    better_metric = ma >= mb if mode == "max" else ma <= mb
    strictly = (ma > mb if mode == "max" else ma < mb) or ea < eb
    return better_metric and ea <= eb and strictly


class ParetoFront(keras.callbacks.Callback):
    """Keep the epochs no other epoch beats on both ``metric`` and EBOPs.

    Args:
        metric: name of the logged metric (``"val_accuracy"``, ``"val_loss"``, ...);
            None picks one from the first epoch's logs (`auto_metric`).
        directory: folder for the ``.keras`` files of the front members (created
            if needed); None keeps the weights in memory instead.
        mode: ``"max"``, ``"min"`` or ``"auto"`` (from the metric's name).
        ebops_key: name of the logged EBOPs (``FreeBOPs`` / ``CalibratedBOPs`` log ``bops``).

    Put it after the callback that logs ``bops`` and before `ResetMinMax`, so the
    saved models keep the activation ranges of their epoch. A point equal to a
    kept one in both values is not kept (the earlier epoch stays).
    """

    def __init__(self, metric, directory=None, mode="auto", ebops_key="bops"):
        super().__init__()
        if mode not in ("auto", "max", "min"):
            raise ValueError(f"ParetoFront: mode must be 'auto', 'max' or 'min', got {mode!r}.")
        self.metric = metric
        self._mode = mode
        self.ebops_key = ebops_key
        self.directory = None if directory is None else os.fspath(directory)
        self.entries = []
        self.points = []  # every epoch: (epoch, metric, ebops)
        self._epoch_offset = 0
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)

    @property
    def mode(self):
        if self._mode != "auto":
            return self._mode
        return metric_mode(self.metric) if self.metric else "max"

    @property
    def front(self):
        """Front members sorted by EBOPs (fewest first)."""
        return sorted(self.entries, key=lambda e: (e.ebops, e.epoch))

    def on_train_begin(self, logs=None):
        # several fits with the same callback continue the epoch count
        self._epoch_offset = 1 + max((p[0] for p in self.points), default=-1)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.metric is None:
            self.metric = auto_metric(logs)
        for key in (self.metric, self.ebops_key):
            if key not in logs:
                raise KeyError(
                    f"ParetoFront: {key!r} is not in the epoch logs (logged: {', '.join(sorted(logs)) or 'nothing'}). "
                    + ("Add FreeBOPs() or CalibratedBOPs(...) before ParetoFront."
                       if key == self.ebops_key else "Pick a logged metric (metric=...).")
                )
        value, ebops = float(logs[self.metric]), float(logs[self.ebops_key])
        epoch = epoch + self._epoch_offset
        self.points.append((epoch, value, ebops))
        if not (math.isfinite(value) and math.isfinite(ebops)):
            return
        self.add(epoch, value, ebops, logs)

    def add(self, epoch, value, ebops, logs=None):
        """Offer a point; return True if it joined the front."""
        point = (value, ebops)
        for entry in self.entries:
            kept = (entry.metric, entry.ebops)
            if kept == point or dominates(kept, point, self.mode):
                return False
        beaten = [e for e in self.entries if dominates(point, (e.metric, e.ebops), self.mode)]
        for entry in beaten:
            self.entries.remove(entry)
            if entry.path and os.path.exists(entry.path):
                os.remove(entry.path)
        entry = FrontEntry(epoch, value, ebops, logs={k: _plain(v) for k, v in (logs or {}).items()})
        if self.model is not None:
            if self.directory is not None:
                entry.path = os.path.join(self.directory, f"epoch{epoch + 1:04d}.keras")
                save_model(self.model, entry.path)
            else:
                entry.weights = [np.array(w) for w in self.model.get_weights()]
        self.entries.append(entry)
        self.write_summary()
        return True

    def write_summary(self, history=None):
        """Write ``front.json`` (and ``history.json`` if given) into the folder."""
        if self.directory is None:
            return
        summary = {
            "metric": self.metric,
            "mode": self.mode,
            "ebops_key": self.ebops_key,
            "front": [e.to_dict() for e in self.front],
            "points": [{"epoch": e, "metric": m, "ebops": b} for e, m, b in self.points],
        }
        _write_json(os.path.join(self.directory, FRONT_FILE), summary)
        if history is not None:
            plain = {k: [_plain(x) for x in v] for k, v in history.items()}
            _write_json(os.path.join(self.directory, HISTORY_FILE), plain)


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _write_json(path, data):
    write_json(path, data)


_RUN_FILE = re.compile(r"^(epoch\d{4,}\.keras|last\.keras|front\.json|history\.json)$")


def _is_run_file(name):
    """True for the names of the files a finetune run writes into its folder."""
    return bool(_RUN_FILE.match(name)) or is_temporary(name)


def check_run_dir(directory, overwrite=False, what="pareto_dir"):
    """Check a finetune folder before training; return the files ``overwrite`` will delete.

    Raises:
        ValueError: the path is a file; or the folder is not empty and ``overwrite`` is False;
            or it holds files that a finetune run does not write (never deleted).
    """
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"finetune: {what} {directory!r} is a file; give a folder (new or empty) for the front.")
    if not os.path.isdir(directory):
        return []
    names = sorted(os.listdir(directory))
    if not names:
        return []
    foreign = [n for n in names if not (_is_run_file(n) and os.path.isfile(os.path.join(directory, n)))]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"finetune: {what} {directory!r} holds files not written by finetune ({shown}); "
            "choose a new or empty folder (overwrite only deletes an earlier run's files)."
        )
    if not overwrite:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(
            f"finetune: {what} {directory!r} holds an earlier run ({shown}); choose a new folder, or pass "
            "overwrite=True (command line: --overwrite) to delete that run first."
        )
    return [os.path.join(directory, n) for n in names]


def load_front(directory):
    """Read ``front.json`` of a finetune folder: ``(summary dict, [FrontEntry, ...])``."""
    path = os.path.join(os.fspath(directory), FRONT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} is not a finetune folder: it has no {FRONT_FILE}.")
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    entries = [FrontEntry(**{k: v for k, v in e.items() if k != "weights"}) for e in summary.get("front", [])]
    return summary, entries


# --------------------------------------------------------------------------- progress


class RichProgress(keras.callbacks.Callback):
    """A `rich` progress bar over all training steps, and one line per epoch (``verbose=1``)."""

    def __init__(self, front=None, console=None):
        super().__init__()
        self.front = front
        self.console = console
        self.progress = None

    def on_train_begin(self, logs=None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        params = self.params or {}
        self.epochs = params.get("epochs") or 1
        self.steps = params.get("steps") or 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console or Console(),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("finetune", total=self.epochs * self.steps or self.epochs, info="")
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.progress.update(self.task, description=f"epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        if self.steps:
            self.progress.update(self.task, completed=self.epoch * self.steps + batch + 1,
                                 info=_format_logs(logs, ("loss",)))

    def on_epoch_end(self, epoch, logs=None):
        if self.steps:
            self.progress.update(self.task, completed=(epoch + 1) * self.steps)
        else:
            self.progress.update(self.task, completed=epoch + 1)
        mark = ""
        if self.front is not None and any(e.epoch == epoch + self.front._epoch_offset for e in self.front.entries):
            mark = "  [green]+front[/green]"
        self.progress.console.print(f"epoch {epoch + 1:>3}/{self.epochs}  {_format_logs(logs)}{mark}", soft_wrap=True)

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()


class _EpochLines(keras.callbacks.Callback):
    """One plain line per epoch (``verbose=2``)."""

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}/{(self.params or {}).get('epochs')}  {_format_logs(logs)}", flush=True)


def _format_logs(logs, keys=None):
    logs = logs or {}
    out = []
    for k, v in logs.items():
        if keys is not None and k not in keys:
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if k in ("bops", "val_bops"):
            out.append(f"{k} {v:,.0f}")
        elif k == "beta" or (v != 0 and abs(v) < 1e-3):
            out.append(f"{k} {v:.2e}")
        else:
            out.append(f"{k} {v:.4f}")
    return "  ".join(out)


# --------------------------------------------------------------------------- input checks


def _streaming_kind(data):
    """'a Dataset', 'a generator', ... for data that finetune cannot take as arrays, else None."""
    kind = type(data).__name__
    module = type(data).__module__ or ""
    if "Dataset" in kind or "DataLoader" in kind:
        return "a Dataset"
    if isinstance(data, keras.utils.PyDataset):
        return "a PyDataset"
    if module.startswith(("tensorflow.python.data", "torch.utils.data")):
        return f"a {kind}"
    if hasattr(data, "__next__") or inspect.isgenerator(data):
        return "a generator" if inspect.isgenerator(data) else "an iterator"
    return None


def _arrays(data, what):
    """A list of numeric, finite numpy arrays with the same number of samples (no copy when possible)."""
    kind = _streaming_kind(data)
    if kind is not None:
        raise TypeError(
            f"finetune: {what} is {kind}; finetune takes numpy arrays (or lists of them). Convert it "
            "(np.concatenate over its batches), or call model.fit with the callbacks FreeBOPs() and ResetMinMax()."
        )
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise ValueError(f"finetune: {what} is empty.")
    out = []
    for idx, item in enumerate(items):
        name = what if len(items) == 1 else f"{what}[{idx}]"
        if item is None:
            raise ValueError(f"finetune: {name} is None.")
        kind = _streaming_kind(item)
        if kind is not None:
            raise TypeError(f"finetune: {name} is {kind}; finetune takes numpy arrays (or lists of them).")
        try:
            a = np.asarray(item)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"finetune: {name} cannot be read as an array ({e}).") from None
        if a.ndim == 0 or a.shape[0] == 0:
            raise ValueError(f"finetune: {name} has no samples (shape {a.shape}).")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"finetune: {name} is not numeric (dtype {a.dtype}).")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"finetune: {name} contains NaN or inf values.")
        out.append(a)
    if len({a.shape[0] for a in out}) > 1:
        counts = [a.shape[0] for a in out]
        raise ValueError(f"finetune: the arrays of {what} have different numbers of samples: {counts}.")
    return out


def _check_inputs(model, xs, what):
    if len(xs) != len(model.inputs):
        raise ValueError(f"finetune: the model has {len(model.inputs)} input(s) but {what} has {len(xs)} array(s).")
    for a, t in zip(xs, model.inputs):
        want = tuple(t.shape[1:])
        got = tuple(a.shape[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(f"finetune: input {t.name!r} expects samples of shape {want}, but {what} has {got}.")


def _pack(xs):
    return xs[0] if len(xs) == 1 else xs


def _output_units(model):
    shape = model.outputs[0].shape
    return shape[-1] if len(shape) > 1 else 1


def _outputs_probabilities(model):
    """True if the model's last layer already applies softmax/sigmoid (then losses take probabilities)."""
    last = model.outputs[0]._keras_history[0]
    name = getattr(last, "activation_name", None)
    if name is None:
        act = getattr(last, "activation", None)
        name = act if isinstance(act, str) else getattr(act, "__name__", None)
    return name in ("softmax", "sigmoid")


def default_compile(model, y, learning_rate=1e-3, bitwidth_lr_scale=DEFAULT_BITWIDTH_LR_SCALE):
    """Compile with Adam (`BitwidthAdam`: bitwidths step ``bitwidth_lr_scale`` times faster) and a loss
    guessed from the targets ``y``; return the loss name.

    Integer targets are class labels: SparseCategoricalCrossentropy (BinaryCrossentropy
    for a single output unit) with accuracy. Float targets: mean squared error.
    """
    y = np.asarray(y)
    units = _output_units(model)
    logits = not _outputs_probabilities(model)
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        if y.size and y.min() < 0:
            raise ValueError(f"finetune: y holds integer labels, but some are negative (min {y.min()}).")
        if units == 1:
            if y.size and y.max() > 1:
                raise ValueError(f"finetune: the model has one output unit but y has labels up to {y.max()} "
                                 "(binary labels 0/1 expected).")
            loss, metrics = keras.losses.BinaryCrossentropy(from_logits=logits), ["binary_accuracy"]
        else:
            if y.size and y.max() >= units:
                raise ValueError(f"finetune: y has label {y.max()} but the model has only {units} outputs.")
            loss, metrics = keras.losses.SparseCategoricalCrossentropy(from_logits=logits), ["accuracy"]
    else:
        loss, metrics = keras.losses.MeanSquaredError(), ["mae"]
    optimizer = BitwidthAdam(learning_rate=learning_rate, bitwidth_lr_scale=bitwidth_lr_scale)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return type(loss).__name__


def check_targets(model, y):
    """Check ``y`` against the model's output before `default_compile` picks a loss from it.

    Raises:
        ValueError: naming ``y``'s shape and the model's output, and what to pass instead.
    """
    y = np.asarray(y)
    if len(model.outputs) != 1 or not np.issubdtype(y.dtype, np.floating):
        return  # integer labels are checked by default_compile; several outputs by Keras
    out = tuple(model.outputs[0].shape[1:])
    got = tuple(y.shape[1:])
    if got == out or (got == () and out == (1,)):
        return
    units = out[-1] if out else 1
    if y.ndim == 1 and units and units > 1 and np.all(np.mod(y, 1) == 0):
        raise ValueError(
            f"finetune: y has shape {y.shape} and whole-number float values (class ids?) but the model has "
            f"{units} outputs; pass integer class labels (y.astype('int64')) for classification, or targets of "
            f"shape (N, {', '.join(map(str, out))}) for regression."
        )
    raise ValueError(
        f"finetune: y holds float targets of sample shape {got}, but the model outputs samples of shape {out}; "
        "pass targets of the output's shape (mean squared error), or integer class labels."
    )


_AUTO_METRICS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy", "loss")


def auto_metric(logs):
    """The metric the front uses by default: validation accuracy if logged, else training accuracy, else a loss."""
    for prefix in ("val_", ""):
        for name in _AUTO_METRICS:
            if prefix + name in logs:
                return prefix + name
    return None


# --------------------------------------------------------------------------- finetune


def finetune(
    qmodel,
    x,
    y=None,
    *,
    validation_data=None,
    epochs,
    beta=None,
    batch_size=32,
    pareto_dir=None,
    metric=None,
    learning_rate=1e-3,
    bitwidth_lr_scale=DEFAULT_BITWIDTH_LR_SCALE,
    calibration_data=None,
    callbacks=None,
    verbose=1,
    distribution=None,
    overwrite=False,
    target_ebops=None,
    beta_control=None,
):
    """Fine-tune an HGQ model against its EBOPs penalty; keep the accuracy-vs-EBOPs Pareto front.

    Args:
        qmodel: the HGQ `keras.Model` (from `quantize` or built by hand). If it is not
            compiled it is compiled with Adam(``learning_rate``) and a loss guessed from
            ``y``: integer labels → SparseCategoricalCrossentropy (from logits unless the
            last layer is a softmax) + accuracy; float targets → mean squared error.
        x: input array, or list of arrays (one per model input).
        y: targets (array).
        validation_data: ``(x_val, y_val)``; the front then uses validation metrics.
        epochs: number of epochs (int >= 1).
        beta: None keeps every layer's own beta; a number sets it on every H-layer
            (nested ones too); a schedule (`Linear`, `Log`, text such as
            ``"log:1e-7:1e-4"``, or a function ``epoch -> beta``) is applied by a
            `BetaScheduler` at the start of each epoch.
        batch_size: training batch size.
        pareto_dir: folder receiving one ``.keras`` file per front member (dominated
            ones are deleted) and ``front.json`` / ``history.json``. None keeps the
            front's weights in memory.
        metric: logged metric of the front. Default: ``val_accuracy`` (``accuracy``
            without validation data) when the model tracks accuracy, else
            ``val_loss`` / ``loss``. Losses and errors are minimised, others maximised.
        learning_rate: Adam's learning rate when `finetune` compiles the model.
        bitwidth_lr_scale: when `finetune` compiles the model, the bitwidth variables step
            this many times faster than the weights (`BitwidthAdam`); 1.0 is plain Adam.
        calibration_data: if given, EBOPs are computed exactly on it after each epoch
            (`CalibratedBOPs`) instead of the free estimate of the last training step.
        callbacks: extra Keras callbacks (run before `ResetMinMax`).
        verbose: 0 silent, 1 rich progress bar and one line per epoch, 2 one line per epoch.
        distribution: train data-parallel: a ``tf.distribute`` strategy (TensorFlow backend,
            e.g. ``tf.distribute.MirroredStrategy()``) or a ``keras.distribution.Distribution``
            (JAX backend, e.g. ``keras.distribution.DataParallel()``). A model built outside
            its scope is trained as a copy made inside it, and the trained weights are put back
            into ``qmodel``. None: the current scope/distribution, if any.
        target_ebops: an EBOPs budget (> 0): a `BetaController` sets beta each epoch from
            log(EBOPs / target) after a short warm-up (see `hgq_rewrite.beta_control`).
            Not with ``beta``. The returned front's ``chosen`` is the member with the best
            metric at or under the budget; if no epoch reached it, a warning says so.
        beta_control: options of the `BetaController` (``beta_init``, ``beta_min``, ``beta_max``,
            ``gain``, ``kp``, ``warmup``) as a dict; only with ``target_ebops``.
        overwrite: ``pareto_dir`` may hold an earlier run (``front.json``, ``history.json``,
            ``last.keras``, ``epochNNNN.keras``): delete those files before training. Without
            it such a folder is refused. A folder holding other files is always refused.

    Returns:
        ``(history, front)``: the Keras ``History`` and the `Front` (a list of `FrontEntry`,
        fewest EBOPs first; with ``target_ebops`` also ``front.chosen`` / ``front.reached`` /
        ``front.message``). ``front[i].load()`` loads a saved member,
        ``front[i].restore(qmodel)`` puts its weights back.

    Raises:
        TypeError / ValueError: naming the argument that is wrong, before anything
            is trained. The arrays passed in are never modified.
        NonFiniteLossError: the loss turned NaN or inf (a ``FloatingPointError``).

    Whatever fails, ``qmodel`` is left as it was: its weights (beta, ranges and
    bitwidths included) and compile state are put back. Front members already
    saved in ``pareto_dir`` stay there.
    """
    if not isinstance(qmodel, keras.Model):
        raise TypeError(f"finetune: qmodel must be a keras.Model, got {type(qmodel).__name__}.")
    link_model(qmodel)
    if not h_layers(qmodel):
        raise ValueError(
            f"finetune: qmodel {qmodel.name!r} has no HGQ layers; quantize it first (hgq_rewrite.quantize(model))."
        )
    if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 1:
        raise ValueError(f"finetune: epochs must be an integer >= 1, got {epochs!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"finetune: batch_size must be an integer >= 1, got {batch_size!r}.")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, Real) or not learning_rate > 0:
        raise ValueError(f"finetune: learning_rate must be a number > 0, got {learning_rate!r}.")
    learning_rate = float(learning_rate)
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"finetune: overwrite must be True or False, got {overwrite!r}.")
    bitwidth_lr_scale = check_scale(bitwidth_lr_scale, "finetune: bitwidth_lr_scale")
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"finetune: verbose must be 0, 1 or 2, got {verbose!r}.")
    if y is None:
        raise ValueError("finetune: y (the targets) is missing.")
    xs = _arrays(x, "x")
    _check_inputs(qmodel, xs, "x")
    (ys,) = _arrays([y], "y")
    if ys.shape[0] != xs[0].shape[0]:
        raise ValueError(f"finetune: x has {xs[0].shape[0]} samples but y has {ys.shape[0]}.")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
            raise ValueError("finetune: validation_data must be a pair (x_val, y_val).")
        xv = _arrays(validation_data[0], "validation_data x")
        _check_inputs(qmodel, xv, "validation_data x")
        (yv,) = _arrays([validation_data[1]], "validation_data y")
        if yv.shape[0] != xv[0].shape[0]:
            raise ValueError(f"finetune: validation_data has {xv[0].shape[0]} inputs but {yv.shape[0]} targets.")
        val = (_pack(xv), yv)
    scheduler = None
    if target_ebops is not None and beta is not None:
        raise ValueError("finetune: give either beta (a schedule) or target_ebops (beta is then controlled), not both.")
    if beta_control is not None and target_ebops is None:
        raise ValueError("finetune: beta_control only applies with target_ebops.")
    if target_ebops is not None:
        target_ebops = check_target(target_ebops, "finetune: target_ebops")
        if beta_control is not None and not isinstance(beta_control, dict):
            raise TypeError(f"finetune: beta_control must be a dict of BetaController options, got "
                            f"{type(beta_control).__name__}.")
        try:
            scheduler = BetaController(target_ebops, **(beta_control or {}))
        except TypeError as e:
            raise TypeError(f"finetune: beta_control: {e}") from None
        except ValueError as e:
            raise ValueError(f"finetune: beta_control: {e}") from None
    elif beta is not None:
        try:
            scheduler = BetaScheduler(as_schedule(beta))
        except (TypeError, ValueError) as e:
            raise type(e)(f"finetune: beta: {e}") from None
    if callbacks is not None and not all(isinstance(c, keras.callbacks.Callback) for c in callbacks):
        raise TypeError("finetune: callbacks must be a list of keras.callbacks.Callback.")
    if calibration_data is not None:
        calib = _arrays(calibration_data, "calibration_data")
        _check_inputs(qmodel, calib, "calibration_data")
        bops = CalibratedBOPs(calib if len(calib) > 1 else calib[0])
    else:
        bops = FreeBOPs()

    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ValueError(f"finetune: metric must be the name of a logged metric, got {metric!r}.")
    if metric is not None and metric.startswith("val_") and val is None:
        raise ValueError(f"finetune: metric {metric!r} needs validation_data.")
    old_run = [] if pareto_dir is None else check_run_dir(pareto_dir, overwrite)
    if not qmodel.compiled:
        check_targets(qmodel, ys)

    front = ParetoFront(metric, pareto_dir)
    if isinstance(scheduler, BetaController):  # it reads the epoch's EBOPs, so it runs after bops
        cbs = [bops, scheduler, front]
    else:
        cbs = [c for c in [scheduler, bops, front] if c is not None]
    if verbose == 1:
        cbs.append(RichProgress(front))
    elif verbose == 2:
        cbs.append(_EpochLines())
    cbs += list(callbacks or [])
    cbs.append(ResetMinMax())
    cbs.insert(0, StopOnNonFiniteLoss())
    saved = _ModelState(qmodel)
    try:
        with distributed(qmodel, distribution) as model:
            if not model.compiled:
                default_compile(model, ys, learning_rate, bitwidth_lr_scale)
            if metric is not None and not callbacks:
                _check_metric_is_logged(model, metric, xs, ys, val, scheduler)
            for path in old_run:  # overwrite=True: the earlier run goes once everything is checked
                os.remove(path)
            history = model.fit(
                _pack(xs), ys, validation_data=val, epochs=int(epochs), batch_size=int(batch_size), callbacks=cbs,
                verbose=0,
            )
        front.write_summary(history.history)
    except NonFiniteLossError as e:
        _stop_progress(cbs)
        saved.restore(qmodel)
        raise NonFiniteLossError(
            f"finetune: {e}; the model is restored to its state before finetune. Lower the learning rate or beta, "
            "or check x and y for extreme values."
        ) from None
    except BaseException:
        _stop_progress(cbs)
        saved.restore(qmodel)
        raise
    if target_ebops is None:
        return history, Front(front.front)
    result = _target_result(front.front, target_ebops, front.mode, front.metric, front.points)
    if result.reached:
        if verbose:
            print(result.message, flush=True)
    else:
        warnings.warn(f"finetune: {result.message}.", UserWarning, stacklevel=2)
    return history, result


def _stop_progress(cbs):
    """Close a progress bar that an interrupted fit left running (Keras skips on_train_end)."""
    for cb in cbs:
        if isinstance(cb, RichProgress) and cb.progress is not None:
            cb.progress.stop()


class _ModelState:
    """The weights, compile state and optimizer state of a model, to put back after a failed finetune."""

    _COMPILE_ATTRS = (
        "compiled", "optimizer", "loss", "_compile_loss", "_compile_metrics", "_loss_tracker", "_compile_config",
        "_compiled_trainable_state", "_jit_compile", "_run_eagerly", "steps_per_execution", "stop_training",
        "train_function", "test_function", "predict_function", "history",
    )

    def __init__(self, model):
        self.weights = [np.array(w) for w in model.get_weights()]
        self.attrs = {k: model.__dict__[k] for k in self._COMPILE_ATTRS if k in model.__dict__}
        self.optimizer = model.__dict__.get("optimizer")
        self.opt_values = None
        if self.optimizer is not None and getattr(self.optimizer, "built", False):
            self.opt_values = [np.array(v) for v in self.optimizer.variables]

    def restore(self, model):
        model.set_weights(self.weights)
        for key in self._COMPILE_ATTRS:
            if key in self.attrs:
                object.__setattr__(model, key, self.attrs[key])
            elif key in model.__dict__:
                object.__delattr__(model, key)
        if self.opt_values is not None:
            for var, value in zip(self.optimizer.variables, self.opt_values):
                var.assign(value)


def _check_metric_is_logged(model, metric, xs, ys, val, scheduler):
    """Evaluate one small batch to learn the logged names, and refuse a ``metric`` that is not among them."""
    n = min(len(ys), 32)
    names = set(model.evaluate(_pack([a[:n] for a in xs]), ys[:n], batch_size=n, verbose=0, return_dict=True))
    logged = set(names) | {"bops"} | ({"beta"} if scheduler is not None else set())
    if val is not None:
        logged |= {f"val_{k}" for k in names}
    if metric not in logged:
        close = difflib.get_close_matches(metric, sorted(logged), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(
            f"finetune: metric {metric!r} will not be logged{hint}; the epochs log {', '.join(sorted(logged))}."
        )

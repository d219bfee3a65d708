"""`finetune`: check every argument, wire the callbacks, train, and restore the model on any failure."""

from __future__ import annotations

import difflib
import os
import warnings
from numbers import Integral, Real

import keras
import numpy as np

from ..beta_control import BetaController, check_target
from ..bitwidth_step import DEFAULT_BITWIDTH_LR_SCALE, check_scale, relative_weight_steps, shrink_weights
from ..callbacks import CalibratedBOPs, FreeBOPs, NonFiniteLossError, ResetMinMax, StopOnNonFiniteLoss
from ..compat.keras_private import compile_state, restore_compile_state
from ..inputs import as_arrays, model_inputs, pack
from ..layers.conv import has_convolution
from ..layers.links import link_model
from ..quantizers.replicas import distributed
from ..schedules import BetaScheduler, as_schedule
from ..trace import h_layers
from .front import Front, target_result
from .execution import check_jit_compile, check_steps_per_execution, execution_setting, xla_setting
from .loss import LR_DECAYS, check_targets, default_compile, learning_rate_schedule
from .pareto import ParetoFront
from .progress import EpochLines, RichProgress, stop_progress
from .store import check_run_dir


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
    relative_weight_step=True,
    lr_decay="cosine",
    shrink="auto",
    calibration_data=None,
    callbacks=None,
    verbose=1,
    distribution=None,
    overwrite=False,
    target_ebops=None,
    beta_control=None,
    jit_compile="auto",
    steps_per_execution="auto",
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
        relative_weight_step: when `finetune` compiles the model, each kernel grown past its
            Glorot initialisation size (and its bias) steps that many times faster, so it moves as
            far relative to its size as a fresh one (`relative_weight_steps`); False: every weight
            steps at ``learning_rate``.
        lr_decay: when `finetune` compiles the model, ``"cosine"`` decays the learning rate (weights and
            bitwidths) over the run to a tenth of ``learning_rate``, so the last epochs settle the
            weights at the bits they were given; None keeps it constant. The decay is the optimizer's:
            a later finetune of the same (now compiled) model goes on at its end value.
        shrink: a factor in (0, 1): the trainable kernels and biases of the H-layers are multiplied by it before
            training (a shrink warm start: the trained model's function is softened, and the run re-fits
            it at the bits the budget allows; worth it for runs of tens of epochs); None: start from the
            weights as they are; ``"auto"`` (default): `AUTO_SHRINK` on the first fine-tune of a trained
            MLP (`auto_shrink`), else None.
        calibration_data: if given, EBOPs are computed exactly on it after each epoch
            (`CalibratedBOPs`) instead of the free estimate of the last training step.
            With ``target_ebops`` and no ``calibration_data``, ``x`` is used: the budget
            is on the EBOPs the traced model exports.
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
        beta_control: options of the `BetaController` (``beta_init``, ``init_fraction``, ``beta_min``,
            ``beta_max``, ``gain``, ``kp``, ``band``, ``warmup``, ``lead``) as a dict; only with ``target_ebops``.
        jit_compile: when `finetune` compiles the model, Keras' ``jit_compile``: True compiles the train step
            with XLA, False does not; ``"auto"`` (default) asks for XLA on runs of at least 5,000 steps
            (``execution.XLA_MIN_STEPS``: on TensorFlow's CPU the compilation takes seconds and pays back there),
            else leaves it to Keras (XLA on JAX and on GPUs).
        steps_per_execution: when `finetune` compiles the model, Keras' ``steps_per_execution``: training steps
            per call of the train function (the same steps, so the same weights; batch-level callbacks see every
            n-th batch). ``"auto"`` (default): 16 (``execution.STEPS_PER_EXECUTION``), at most an epoch's steps,
            which saves Keras' per-call loop on small models; 1 under a ``tf.distribute`` strategy.
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
    if not isinstance(relative_weight_step, (bool, np.bool_)):
        raise TypeError(f"finetune: relative_weight_step must be True or False, got {relative_weight_step!r}.")
    if shrink != "auto" and shrink is not None and (
            isinstance(shrink, bool) or not isinstance(shrink, Real) or not 0 < shrink < 1):
        raise ValueError(f"finetune: shrink must be a number between 0 and 1 (exclusive), 'auto' or None, "
                         f"got {shrink!r}.")
    jit_compile = check_jit_compile(jit_compile)
    steps_per_execution = check_steps_per_execution(steps_per_execution)
    if lr_decay not in LR_DECAYS:
        raise ValueError(f"finetune: lr_decay must be 'cosine' or None (constant), got {lr_decay!r}.")
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"finetune: verbose must be 0, 1 or 2, got {verbose!r}.")
    if y is None:
        raise ValueError("finetune: y (the targets) is missing.")
    xs = model_inputs(qmodel, x, "x", "finetune")
    (ys,) = as_arrays([y], "y", "finetune")
    if ys.shape[0] != xs[0].shape[0]:
        raise ValueError(f"finetune: x has {xs[0].shape[0]} samples but y has {ys.shape[0]}.")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
            raise ValueError("finetune: validation_data must be a pair (x_val, y_val).")
        xv = model_inputs(qmodel, validation_data[0], "validation_data x", "finetune")
        (yv,) = as_arrays([validation_data[1]], "validation_data y", "finetune")
        if yv.shape[0] != xv[0].shape[0]:
            raise ValueError(f"finetune: validation_data has {xv[0].shape[0]} inputs but {yv.shape[0]} targets.")
        val = (pack(xv), yv)
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
    if calibration_data is None and target_ebops is not None:
        calibration_data = pack(xs)  # a budget is on the exported model's EBOPs: exact, on the training inputs
    if calibration_data is not None:
        calib = model_inputs(qmodel, calibration_data, "calibration_data", "finetune")
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
        cbs.append(EpochLines())
    cbs += list(callbacks or [])
    cbs.append(ResetMinMax())
    cbs.insert(0, StopOnNonFiniteLoss())
    saved = _ModelState(qmodel)
    try:
        with distributed(qmodel, distribution) as model:
            factor = auto_shrink(model, epochs) if shrink == "auto" else shrink
            if factor is not None:
                shrink_weights(model, float(factor))
            if not model.compiled:
                scales = relative_weight_steps(model) if relative_weight_step else None
                epoch_steps = -(-len(ys) // int(batch_size))
                steps = int(epochs) * epoch_steps
                rate = learning_rate_schedule(learning_rate, lr_decay, steps)
                default_compile(model, ys, rate, bitwidth_lr_scale, scales, xla_setting(jit_compile, steps),
                                execution_setting(steps_per_execution, epoch_steps))
            if metric is not None and not callbacks:
                _check_metric_is_logged(model, metric, xs, ys, val, scheduler)
            for path in old_run:  # overwrite=True: the earlier run goes once everything is checked
                os.remove(path)
            history = model.fit(
                pack(xs), ys, validation_data=val, epochs=int(epochs), batch_size=int(batch_size), callbacks=cbs,
                verbose=0,
            )
        front.write_summary(history.history)
    except NonFiniteLossError as e:
        stop_progress(cbs)
        saved.restore(qmodel)
        raise NonFiniteLossError(
            f"finetune: {e}; the model is restored to its state before finetune. Lower the learning rate or beta, "
            "or check x and y for extreme values."
        ) from None
    except BaseException:
        stop_progress(cbs)
        saved.restore(qmodel)
        raise
    if target_ebops is None:
        if _pruned_to_nothing(history):
            warnings.warn(
                "finetune: the model ended at 0 EBOPs: every multiply is pruned, so its output no longer depends on "
                "its input; beta is too large for it. Lower beta, or give a budget with target_ebops (the returned "
                "front keeps every earlier epoch it does not dominate).", UserWarning, stacklevel=2)
        return history, Front(front.front)
    result = target_result(front.front, target_ebops, front.mode, front.metric, front.points)
    if result.reached:
        if verbose:
            print(result.message, flush=True)
    else:
        warnings.warn(f"finetune: {result.message}.", UserWarning, stacklevel=2)
    return history, result


AUTO_SHRINK = 0.5
AUTO_SHRINK_MIN_EPOCHS = 15  # the shortest fine-tuning of the runs that measured it (docs/training_engine.md)
AUTO_SHRINK_MIN_GROWTH = 1.5  # trained benchmark models: 2.1-4.2x; a fresh kernel's sampled size is about 1x


def auto_shrink(model, epochs):
    """``shrink="auto"``: `AUTO_SHRINK` when this is the model's first fine-tune (``finetune`` compiles it), the run
    has at least `AUTO_SHRINK_MIN_EPOCHS` epochs, the model has no convolution (the shrink cost the conv nets
    measured accuracy, and helped every MLP) and some trainable kernel has grown past `AUTO_SHRINK_MIN_GROWTH`
    times its Glorot size (a trained model, not a fresh initialisation); else None."""
    if model.compiled or int(epochs) < AUTO_SHRINK_MIN_EPOCHS:
        return None
    if has_convolution(model):
        return None
    growth = max(relative_weight_steps(model).values(), default=1.0)
    return AUTO_SHRINK if growth > AUTO_SHRINK_MIN_GROWTH else None


def _pruned_to_nothing(history):
    """True when the run ended at 0 EBOPs after an epoch with more."""
    ebops = history.history.get("ebops") or []
    return bool(ebops) and ebops[-1] == 0 and max(ebops) > 0


class _ModelState:
    """The weights, compile state and optimizer state of a model, to put back after a failed finetune."""

    def __init__(self, model):
        self.weights = [np.array(w) for w in model.get_weights()]
        self.compiled = compile_state(model)
        self.optimizer = model.__dict__.get("optimizer")
        self.opt_values = None
        if self.optimizer is not None and getattr(self.optimizer, "built", False):
            self.opt_values = [np.array(v) for v in self.optimizer.variables]

    def restore(self, model):
        model.set_weights(self.weights)
        restore_compile_state(model, self.compiled)
        if self.opt_values is not None:
            for var, value in zip(self.optimizer.variables, self.opt_values):
                var.assign(value)


def _check_metric_is_logged(model, metric, xs, ys, val, scheduler):
    """Evaluate one small batch to learn the logged names, and refuse a ``metric`` that is not among them."""
    n = min(len(ys), 32)
    names = set(model.evaluate(pack([a[:n] for a in xs]), ys[:n], batch_size=n, verbose=0, return_dict=True))
    logged = set(names) | {"ebops", "bops"} | ({"beta"} if scheduler is not None else set())
    if val is not None:
        logged |= {f"val_{k}" for k in names}
    if metric not in logged:
        close = difflib.get_close_matches(metric, sorted(logged), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(
            f"finetune: metric {metric!r} will not be logged{hint}; the epochs log {', '.join(sorted(logged))}."
        )

"""What finetune compiles a model with: the loss guessed from the targets, the learning-rate decay, and
the check of the targets (how the step runs: `execution`)."""

from __future__ import annotations

import keras
import numpy as np

from ..bitwidth_step import DEFAULT_BITWIDTH_LR_SCALE, BitwidthAdam
from ..compat.keras_private import keras_history


LR_DECAYS = ("cosine", None)
FINAL_LR_FRACTION = 0.1  # a cosine decay ends at this fraction of the initial learning rate


def learning_rate_schedule(learning_rate, lr_decay, steps):
    """``learning_rate`` as the optimizer gets it: a cosine decay over ``steps`` training steps to
    `FINAL_LR_FRACTION` of it (``lr_decay="cosine"``), or constant (``None``)."""
    if lr_decay is None:
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, max(int(steps), 1), alpha=FINAL_LR_FRACTION)


def _output_units(model):
    shape = model.outputs[0].shape
    return shape[-1] if len(shape) > 1 else 1


def _outputs_probabilities(model):
    """True if the model's last layer already applies softmax/sigmoid (then losses take probabilities)."""
    last = keras_history(model.outputs[0])[0]
    name = getattr(last, "activation_name", None)
    if name is None:
        act = getattr(last, "activation", None)
        name = act if isinstance(act, str) else getattr(act, "__name__", None)
    return name in ("softmax", "sigmoid")


def default_compile(model, y, learning_rate=1e-3, bitwidth_lr_scale=DEFAULT_BITWIDTH_LR_SCALE, weight_lr_scales=None,
                    jit_compile="auto", steps_per_execution=1):
    """Compile with Adam (`BitwidthAdam`: bitwidths step ``bitwidth_lr_scale`` times faster, the variables
    of ``weight_lr_scales`` their own factor faster) and a loss guessed from the targets ``y``; return the loss name.

    Integer targets are class labels: SparseCategoricalCrossentropy (BinaryCrossentropy
    for a single output unit) with accuracy. Float targets: mean squared error. ``jit_compile`` and
    ``steps_per_execution`` as ``keras.Model.compile``'s.
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
    optimizer = BitwidthAdam(learning_rate=learning_rate, bitwidth_lr_scale=bitwidth_lr_scale,
                             weight_lr_scales=weight_lr_scales)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
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

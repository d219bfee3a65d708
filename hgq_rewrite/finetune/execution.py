"""How finetune runs the train step it compiles: with XLA or not, and how many steps per call.

Both are Keras' own compile options (``jit_compile``, ``steps_per_execution``); finetune's ``"auto"``
picks them from the run's length. Neither changes what a step computes: the same weights come out.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..quantizers.replicas import in_strategy_scope

# a run of this many training steps or more compiles its step with XLA: on TensorFlow's CPU compiling the
# benchmark models' steps costs 1.4-4.2 s more than tracing them, and saves 1.7 ms (digits28 CNN) to about
# 0.2-0.4 ms (the MLPs) per step, paid back after about 2,000 to 10,000 steps (benchmarks/epoch_cost_versions.py,
# results/epoch_cost_versions.json run "tensorflow_session17_xla")
XLA_MIN_STEPS = 5000

# steps_per_execution="auto": training steps per call of Keras' train function. Keras' loop around each call
# (data iterator, state hand-over, callback dispatch) costs 0.2-0.3 ms, as much as a small model's step; at 16
# per call the mnist1d MLP's epoch took 0.089 s against 0.174 s on TensorFlow (XLA) and 0.028 s against 0.052 s
# on JAX (results/epoch_cost_versions.json runs "tensorflow_session18", "jax_session18"), while batch-level
# callbacks still see every 16th batch
STEPS_PER_EXECUTION = 16


def check_jit_compile(jit_compile):
    """finetune's ``jit_compile`` when it is ``"auto"``, True or False; otherwise a one-line ValueError."""
    if isinstance(jit_compile, (bool, np.bool_)):
        return bool(jit_compile)
    if isinstance(jit_compile, str) and jit_compile == "auto":
        return jit_compile
    raise ValueError(f"finetune: jit_compile must be 'auto', True or False, got {jit_compile!r}.")


def xla_setting(jit_compile, steps):
    """Keras' ``jit_compile`` for a model finetune compiles for ``steps`` training steps. ``"auto"``: XLA for runs
    of at least `XLA_MIN_STEPS` steps (TensorFlow's executor dispatches each of the hundreds of small
    operations of an HGQ step on its own, XLA fuses them), else Keras' own choice (XLA on JAX and on
    TensorFlow with a GPU); never XLA under a ``tf.distribute`` strategy on TensorFlow (Keras' rule)."""
    if jit_compile != "auto":
        return jit_compile
    return True if steps >= XLA_MIN_STEPS and not in_strategy_scope() else "auto"


def check_steps_per_execution(steps_per_execution):
    """finetune's ``steps_per_execution`` when it is ``"auto"`` or an integer >= 1; otherwise a one-line ValueError."""
    if isinstance(steps_per_execution, str) and steps_per_execution == "auto":
        return steps_per_execution
    if isinstance(steps_per_execution, Integral) and not isinstance(steps_per_execution, (bool, np.bool_)) \
            and steps_per_execution >= 1:
        return int(steps_per_execution)
    raise ValueError(f"finetune: steps_per_execution must be 'auto' or an integer >= 1, got {steps_per_execution!r}.")


def execution_setting(steps_per_execution, steps_per_epoch):
    """Keras' ``steps_per_execution`` for a model finetune compiles. ``"auto"``: `STEPS_PER_EXECUTION`, at most
    an epoch's ``steps_per_epoch``; 1 under a ``tf.distribute`` strategy (where finetune keeps Keras' defaults)."""
    if steps_per_execution != "auto":
        return steps_per_execution
    if in_strategy_scope():
        return 1
    return max(1, min(STEPS_PER_EXECUTION, int(steps_per_epoch)))

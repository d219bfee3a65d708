"""Which Keras backend fine-tunes HGQ models fastest, from measurement.

``MEASURED_EPOCH_S`` holds the median epoch time (seconds) of the benchmark models fine-tuned the way
`finetune` does a long run (the step compiled with XLA on both backends, 16 steps per call), per backend
and task: ``benchmarks/epoch_cost.py``, raw data in ``benchmarks/results/epoch_cost_versions.json`` (runs
``"tensorflow_session18"`` and ``"jax_session18"``, version ``"now"``: medians of 3 runs of 9 rounds
on 2 CPU cores, the two backends measured one after the other, not interleaved). See ``docs/backends.md``.
"""

import keras

MEASURED_EPOCH_S = {
    "tensorflow": {"digits28": 0.069, "mnist1d": 0.089, "jets": 0.150},
    "jax": {"digits28": 0.036, "mnist1d": 0.028, "jets": 0.060},
}
INSTALL = {"jax": "pip install 'hgq_rewrite[jax]'", "tensorflow": "pip install tensorflow"}


def speedups(backend, other, measured=None):
    """Per task: ``backend``'s epoch time over ``other``'s (> 1: ``other`` is faster)."""
    measured = MEASURED_EPOCH_S if measured is None else measured
    mine, theirs = measured[backend], measured[other]
    return {task: mine[task] / theirs[task] for task in mine if task in theirs}


def backend_advice(backend=None, measured=None):
    """One line naming a backend measured faster than ``backend`` (default: the current one) on every
    benchmark task, with the measured factors; None when no backend was."""
    backend = backend or keras.config.backend()
    measured = MEASURED_EPOCH_S if measured is None else measured
    if backend not in measured:
        return None
    for other in measured:
        ratios = speedups(backend, other, measured) if other != backend else {}
        if ratios and min(ratios.values()) > 1.0:
            lo, hi = min(ratios.values()), max(ratios.values())
            return (f"backend {backend}: {other} measured {lo:.1f}-{hi:.1f}x faster per epoch on the benchmark "
                    f"models ({', '.join(sorted(ratios))}); set KERAS_BACKEND={other} ({INSTALL[other]})")
    return None


def print_backend_advice():
    """Print `backend_advice` for the current backend, if there is any (the CLI's finetune)."""
    line = backend_advice()
    if line:
        print(line, flush=True)

"""How big one training step is, float model against ours: where the epoch-time overhead comes from.

A small model's step costs what its ops cost to dispatch, not their arithmetic (one op: about 1 us on
TensorFlow's executor, whatever it computes). So this counts, for each benchmark task, the train step
of the float model and of ours (``quantize`` of it, compiled as ``finetune`` does):

- TensorFlow: the ops of the step's graph after grappler (TF's graph optimizer, as ``fit`` runs it),
  split into the quantizers, the rest of the H-layers (bias grid, EBOPs estimate, loss term),
  the optimizer, and everything else;
- JAX: the XLA fusions of the compiled step (each one kernel launch) and the state arrays passed
  in and out of every step; and (``--rounds``) the time per step of the compiled step alone against
  the time per step in ``fit``, interleaved, which splits the epoch into the step's own cost and
  Keras' Python loop around it; ``--bare`` adds the rewrite with the range record and the EBOPs term
  patched out (a diagnostic: what the rest of the quantizers' work costs), ``--pow`` the rewrite with ``pow``
  and ``log2`` where XLA's step builds powers of two and integer bits from float32's bits, and ``--floor`` (mnist1d)
  `min_step.py`'s smallest HGQ step.

Run on the current Keras backend::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/step_ops.py --label after
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python benchmarks/step_ops.py --label after

Results go to ``results/step_ops_<backend>.json`` under ``--label``; put another checkout first on
``PYTHONPATH`` to count another version (the file records which ``hgq_rewrite`` was imported).
"""

import argparse
import collections
import contextlib
import os
import re
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keras  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from data import LOADERS  # noqa: E402
from epoch_cost import BATCH_SIZE, run_header, save_run  # noqa: E402
from hgq_rewrite.finetune import default_compile  # noqa: E402
from models import float_model, hgq_rewrite_config  # noqa: E402

NOT_RUN = ("Const", "Placeholder", "_Arg", "_Retval", "NoOp")


def part_of(node_name):
    """Which part of the step a TF graph node belongs to, from its name scope."""
    prefix = "gradient of " if node_name.startswith("gradient_tape/") else ""
    if re.search(r"(^|/)(bitwidth_)?adam(_\d+)?/", node_name):
        return "optimizer"
    if "_paq" in node_name or "_kq" in node_name:
        return prefix + "quantizers"
    if re.search(r"/(h_|dense|conv|input|q_|.*_quantizer)", node_name):
        return prefix + "layers"
    return prefix + "other"


def tf_step_ops(model, x, y, batch):
    """Ops of the train step after grappler, by part."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer

    step = tf.function(model.train_step).get_concrete_function(
        (tf.TensorSpec((batch, *x.shape[1:]), tf.float32), tf.TensorSpec((batch,), tf.as_dtype(y.dtype))))
    graph = step.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetch = meta.collection_def["train_op"].node_list.value
    fetch.extend(t.name.split(":")[0] for t in graph.outputs)
    fetch.extend(op.name for op in graph.get_operations() if op.type.startswith("Assign"))
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta)
    parts = collections.Counter(part_of(n.name) for n in optimized.node if n.op not in NOT_RUN)
    return {"ops": sum(parts.values()), "by_part": dict(sorted(parts.items()))}


def jax_step_ops(model, x, y, batch):
    """XLA fusions of the compiled train step and the state arrays it takes."""
    import jax

    state = tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables, model.metrics_variables))
    hlo = jax.jit(model.train_step).lower(state, (x[:batch], y[:batch])).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    return {"fusions": len(re.findall(r"= \S+ fusion\(", entry)), "state_arrays": sum(len(s) for s in state)}


def compiled_step(model, first_batch):
    """``(jitted train step, its state)`` of ``model``, compiled on ``first_batch``. The state is a copy: ``fit``
    donates the variables' own buffers to its step."""
    import jax

    state = tuple([jax.numpy.array(v.value, copy=True) for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables, model.metrics_variables))
    step = jax.jit(model.train_step)
    return step, jax.block_until_ready(step(state, tuple(jax.numpy.asarray(a) for a in first_batch)))[1]


def jax_step_times(models, compiled, x, y, batch, rounds):
    """Per model, the median time per step (ms) of one epoch of batches (a) through its `compiled_step`
    alone, the state threaded from step to step, and (b) through ``fit`` (the step plus Keras' Python loop:
    the data iterator, the state handed in and out, callbacks), rounds interleaved."""
    import jax

    steps = len(x) // batch
    batches = [(jax.numpy.asarray(x[i * batch:(i + 1) * batch]), jax.numpy.asarray(y[i * batch:(i + 1) * batch]))
               for i in range(steps)]
    compiled = dict(compiled)
    times = {name: {"compiled_step_ms": [], "fit_step_ms": []} for name in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            step, state = compiled[name]
            t0 = time.perf_counter()
            for data in batches:
                _, state = step(state, data)
            jax.block_until_ready(state)
            compiled[name] = (step, state)
            times[name]["compiled_step_ms"].append(1e3 * (time.perf_counter() - t0) / steps)
            t0 = time.perf_counter()
            models[name].fit(x[:steps * batch], y[:steps * batch], epochs=1, batch_size=batch, verbose=0)
            times[name]["fit_step_ms"].append(1e3 * (time.perf_counter() - t0) / steps)
    return {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}


@contextlib.contextmanager
def without_bit_forms():
    """Diagnostic: inside it, `fixed_point.exp2` and `floor_log2` take ``pow`` and ``log2`` under XLA too (the forms
    before they were built from float32's bits), so a step traced there measures what the bit forms save."""
    from hgq_rewrite.quantizers import fixed_point

    original = fixed_point.compiled_by_xla
    fixed_point.compiled_by_xla = lambda: False
    try:
        yield
    finally:
        fixed_point.compiled_by_xla = original


@contextlib.contextmanager
def without_ranges_and_ebops():
    """Diagnostic, not a mode of the library: inside it, H-layers' training calls record no activation ranges
    and add no EBOPs term, so a step traced there measures what the step costs without those two."""
    from hgq_rewrite.layers.base import HLayerBase
    from hgq_rewrite.quantizers.hquantizer import HQuantizer

    names = [(HQuantizer, "_record"), (HLayerBase, "_train_ebops")]
    originals = [getattr(cls, name) for cls, name in names]
    for cls, name in names:
        setattr(cls, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for (cls, name), original in zip(names, originals):
            setattr(cls, name, original)


def measure(task, seed, rounds, bare, floor=False, pow_forms=False):
    x, y, _, _ = LOADERS[task](seed)
    batch = BATCH_SIZE[task]
    fm = float_model(task)
    fm.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])

    def rewrite():
        model = hr.quantize(fm, beta=1e-5, config=hgq_rewrite_config(task))
        default_compile(model, y, 1e-3)
        return model

    count = tf_step_ops if keras.config.backend() == "tensorflow" else jax_step_ops
    timed = keras.config.backend() == "jax" and rounds > 0
    models, out, compiled = {}, {}, {}

    def add(name, model):  # every trace of the model's steps (fit's, the count's, the timed one) happens here
        models[name] = model
        model.fit(x[:batch], y[:batch], epochs=1, batch_size=batch, verbose=0)  # builds the optimizer and metrics
        out[name] = count(model, x, y, batch)
        if timed:
            compiled[name] = compiled_step(model, (x[:batch], y[:batch]))

    add("float", fm)
    add("ours", rewrite())
    if bare:
        with without_ranges_and_ebops():
            add("ours_bare", rewrite())
    if pow_forms:
        with without_bit_forms():
            add("ours_pow", rewrite())
    if floor:
        from min_step import Floor

        model = Floor("hgq")
        model.compile(keras.optimizers.Adam(1e-3))
        add("floor_hgq", model)
    if timed:
        for name, t in jax_step_times(models, compiled, x, y, batch, rounds).items():
            out[name].update(t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(BATCH_SIZE), choices=list(BATCH_SIZE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=9,
                    help="JAX: interleaved rounds timing the compiled step alone and fit (0: count only)")
    ap.add_argument("--bare", action="store_true",
                    help="diagnostic: also ours without recording ranges and without the EBOPs term (row ours_bare)")
    ap.add_argument("--pow", action="store_true",
                    help="diagnostic: also ours with pow and log2 where XLA's step takes float32's bits (row ours_pow)")
    ap.add_argument("--floor", action="store_true",
                    help="mnist1d: also min_step.py's smallest HGQ step (row floor_hgq)")
    ap.add_argument("--label", default="after", help="key of this run in the JSON file (e.g. before / after)")
    ap.add_argument("--out", default=None, help="default: results/step_ops_<backend>.json")
    args = ap.parse_args()
    backend = keras.config.backend()
    if backend not in ("tensorflow", "jax"):
        raise SystemExit(f"step_ops.py counts TensorFlow graph ops or JAX fusions; the backend is {backend!r}.")
    out = args.out or os.path.join(HERE, "results", f"step_ops_{backend}.json")
    run = run_header()
    for task in args.tasks:
        run["tasks"][task] = r = measure(task, args.seed, args.rounds, args.bare, args.floor and task == "mnist1d",
                                         args.pow)
        key = "ops" if backend == "tensorflow" else "fusions"
        print(f"{backend} {args.label} {task}: float {r['float'][key]} {key}, ours {r['ours'][key]} "
              f"({r['ours'][key] / r['float'][key]:.2f}x) {r['ours'].get('by_part', r['ours'].get('state_arrays'))}",
              flush=True)
        for name in r:
            if "compiled_step_ms" in r[name]:
                print(f"  {name}: {r[name][key]} {key}, ms per step: compiled step alone "
                      f"{r[name]['compiled_step_ms']:.3f}, in fit {r[name]['fit_step_ms']:.3f}", flush=True)
    save_run(out, "size of one training step, float model vs ours: TF graph ops after grappler (by part), or "
                  "JAX XLA fusions and state arrays (and ms per step: the compiled step alone, and in fit)", args.label, run)


if __name__ == "__main__":
    main()

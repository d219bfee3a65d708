"""Where TensorFlow spends a train step, op by op: the float model's and ours, from TensorFlow's profiler.

`step_ops.py` counts a step's ops; this times them. Each model's ``train_step`` (a ``tf.function``,
as ``fit`` runs it) runs ``--steps`` times on one batch under ``tf.profiler``; the trace (an XSpace)
gives every op's time on TensorFlow's executor threads. Per op: its time per step summed over the
threads (ops on the two threads of a 2-core machine overlap, so the sum exceeds the step's length),
and the step's wall time. ``--top`` ops are kept::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/tf_op_profile.py --tasks digits28 --label after

Results go to ``results/tf_op_profile.json`` under ``--label`` (other labels kept).
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
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


def op_times(step, batch, steps):
    """``(wall ms per step, {op name: us per step summed over executor threads})`` of ``steps`` calls."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for _ in range(10):
        step(batch)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = step(batch)
        float(logs["loss"])
        wall = (time.perf_counter() - t0) / steps
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[-1], "rb") as f:
            space.ParseFromString(f.read())
    per_op = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # the executor's threads; the Python thread's events are the calls around them
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if ":" in name:  # "node name:op type"
                    per_op[name] += event.duration_ps / 1e6 / steps
    return 1e3 * wall, per_op


def measure(task, steps, top):
    import tensorflow as tf

    x, y, _, _ = LOADERS[task](0)
    b = BATCH_SIZE[task]
    fm = float_model(task)
    fm.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])
    ours = hr.quantize(fm, beta=1e-5, config=hgq_rewrite_config(task))
    default_compile(ours, y, 1e-3)
    batch = (tf.constant(x[:b]), tf.constant(y[:b]))
    out = {}
    for name, model in (("float", fm), ("ours", ours)):
        model.fit(x[:b], y[:b], epochs=1, batch_size=b, verbose=0)  # builds optimizer and metrics
        wall, per_op = op_times(tf.function(model.train_step), batch, steps)
        out[name] = {"step_ms": wall, "op_us_per_step": sum(per_op.values()),
                     "top_ops_us": {k: round(v, 1) for k, v in per_op.most_common(top)}}
        print(f"{task} {name}: step {wall:.2f} ms, ops {sum(per_op.values()) / 1e3:.2f} ms summed over threads",
              flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(BATCH_SIZE), choices=list(BATCH_SIZE))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "tf_op_profile.json"))
    args = ap.parse_args()
    if keras.config.backend() != "tensorflow":
        raise SystemExit("tf_op_profile.py profiles TensorFlow's executor: run it with KERAS_BACKEND=tensorflow.")
    run = run_header()
    for task in args.tasks:
        run["tasks"][task] = measure(task, args.steps, args.top)
    save_run(args.out, "TensorFlow train step: wall time and each op's time on the executor threads (profiler)",
             args.label, run)


if __name__ == "__main__":
    main()

"""A branched functional model with per-layer overrides: every level of the rewrite config at work.

Two branches (a deep one and a skip connection) meet in an Add, a Concatenate
joins a side input, and a float softmax closes the model. The config sets
defaults, per-class, per-pattern and per-name settings, and keeps the softmax
float; `explain` prints which rule set each value. The firmware is the model up
to the logits (the softmax runs after it, in software).

    python examples/branched_overrides.py            # full run, hls4ml export and bit-exactness check
    python examples/branched_overrides.py --quick    # a few epochs on a subset, no hls4ml
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from hgq_rewrite.finetune import finetune  # noqa: E402

CONFIG = {
    # 1. every layer: 6 fractional bits to start the activations with
    "defaults": {"output": {"init_bw": 6}},
    # 2. every Dense: a small EBOPs penalty
    "types": {"Dense": {"beta": 2e-6}},
    # 3. layers whose path matches the regex (first matching pattern wins): cheaper skip path
    "patterns": {r"^skip": {"beta": 1e-5, "kernel": {"init_bw": 3}}},
    # 4. exact names beat everything: more bits for the logits, and the softmax stays float
    "names": {"logits": {"kernel": {"init_bw": 8}, "parallel_factor": 1}, "probs": None},
}


def float_model():
    L = keras.layers
    main_in = keras.Input((12,), name="features")
    side_in = keras.Input((4,), name="side")
    deep = L.Dense(16, activation="relu", name="deep1")(main_in)
    deep = L.Dense(16, name="deep2")(deep)
    deep = L.BatchNormalization(name="deep2_bn")(deep)
    skip = L.Dense(16, name="skip_proj")(main_in)
    merged = L.Add(name="add")([deep, skip])
    merged = L.Activation("relu", name="add_relu")(merged)
    joined = L.Concatenate(name="concat")([merged, side_in])
    logits = L.Dense(3, name="logits")(joined)
    probs = L.Activation("softmax", name="probs")(logits)
    return keras.Model([main_in, side_in], probs, name="branched")


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    xm = rng.normal(size=(n, 12)).astype("float32")
    xs = rng.uniform(-1, 1, size=(n, 4)).astype("float32")
    score = np.stack([xm[:, :4].sum(1), np.abs(xm[:, 4:8]).sum(1) - 3.2, xs.sum(1) * 2], axis=1)
    return [xm, xs], np.argmax(score, axis=1).astype("int64")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs on a subset, skip hls4ml")
    parser.add_argument("--hls", action="store_true", help="export to hls4ml even with --quick")
    parser.add_argument("--out", help="folder for the Pareto front and the hls4ml project (default: temporary)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="branched_")

    keras.utils.set_random_seed(0)
    n = 1500 if args.quick else 8000
    x, y = make_data(n)
    xv, yv = make_data(n // 4, seed=1)

    model = float_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2 if args.quick else 20, batch_size=64, verbose=0)
    float_acc = model.evaluate(xv, yv, verbose=0)[1]
    print(f"float validation accuracy {float_acc:.4f}")

    print(hr.explain(model, CONFIG))  # which rule set which value, per layer
    qmodel = hr.quantize(model, CONFIG)
    assert type(qmodel.get_layer("probs")) is keras.layers.Activation  # kept float by names: {probs: null}

    # the last layer is a (float) softmax, so finetune compiles with from_logits=False
    _, front = finetune(qmodel, x, y, validation_data=(xv, yv), epochs=3 if args.quick else 30,
                        batch_size=64, pareto_dir=os.path.join(out, "pareto"), verbose=2 if args.quick else 1)
    best = max(e.metric for e in front)
    min((e for e in front if e.metric >= best - 0.01), key=lambda e: e.ebops).restore(qmodel)

    # the firmware stops at the logits; the float softmax runs after it
    firmware = keras.Model(qmodel.inputs, qmodel.get_layer("logits").output, name="branched_firmware")
    ebops = hr.trace_minmax(firmware, x)
    acc = float(np.mean(np.argmax(firmware.predict(xv, verbose=0), axis=1) == yv))
    print(f"HGQ validation accuracy {acc:.4f} at {ebops:,.0f} EBOPs")
    result = {"float_accuracy": float_acc, "accuracy": acc, "ebops": ebops, "front": len(front),
              "skip_beta": qmodel.get_layer("skip_proj").beta, "deep_beta": qmodel.get_layer("deep1").beta}

    if args.hls or not args.quick:
        from hgq_rewrite.proxy import check_bit_exact

        proxy = hr.to_proxy_model(firmware, aggressive=True)
        report = check_bit_exact(proxy, [a[:1000] for a in xv], backend="Vitis",
                                 output_dir=os.path.join(out, "hls4ml_prj"))
        print(f"hls4ml: {report.n_samples} samples compared, {report.n_mismatching} mismatches")
        result.update(samples=report.n_samples, mismatches=report.n_mismatching)
    return result


if __name__ == "__main__":
    main()

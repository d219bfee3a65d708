"""Conv1D model on MNIST-1D-like data (generated here): quantize, finetune, export.

Each class is a short template signal (a "digit" drawn in one dimension) that is
padded, stretched, shifted, flipped in sign, and buried in correlated noise,
following the idea of the MNIST-1D benchmark; the data is made offline here.

    python examples/conv1d_mnist1d.py            # full run, hls4ml export and bit-exactness check
    python examples/conv1d_mnist1d.py --quick    # a few epochs on a subset, no hls4ml
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from hgq_rewrite.finetune import finetune  # noqa: E402

LENGTH = 40


def templates(seed=0):
    """Ten piecewise-linear templates of 12 points each."""
    rng = np.random.default_rng(seed)
    knots = rng.uniform(-1, 1, size=(10, 5))
    t = np.linspace(0, 4, 12)
    return np.stack([np.interp(t, np.arange(5), k) for k in knots])


def mnist1d_like(n=6000, seed=0):
    rng = np.random.default_rng(seed + 1)
    base = templates(seed)
    y = rng.integers(0, 10, size=n)
    x = np.zeros((n, LENGTH), "float32")
    grid = np.arange(LENGTH)
    for i in range(n):
        stretch = rng.uniform(1.2, 2.2)
        shift = rng.uniform(0, LENGTH - 12 * stretch)
        pos = (grid - shift) / stretch  # template coordinate of each output sample
        signal = np.interp(pos, np.arange(12), base[y[i]], left=0.0, right=0.0)
        noise = np.convolve(rng.normal(scale=0.25, size=LENGTH + 4), np.ones(5) / 5, mode="valid")
        x[i] = signal * rng.uniform(0.8, 1.2) + noise + 0.02 * (grid - LENGTH / 2) * rng.normal(scale=0.1)
    return x[..., None], y.astype("int64")


def float_model():
    layers = keras.layers
    return keras.Sequential([
        keras.Input((LENGTH, 1), name="signal"),
        layers.Conv1D(8, 5, activation="relu", name="conv1"),
        layers.MaxPooling1D(2, name="pool1"),
        layers.Conv1D(8, 3, activation="relu", name="conv2"),
        layers.MaxPooling1D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(32, activation="relu", name="dense"),
        layers.Dense(10, name="logits"),
    ], name="conv1d_mnist1d")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs on a subset, skip hls4ml")
    parser.add_argument("--hls", action="store_true", help="export to hls4ml even with --quick")
    parser.add_argument("--out", help="folder for the Pareto front and the hls4ml project (default: temporary)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="conv1d_")

    keras.utils.set_random_seed(0)
    x, y = mnist1d_like(1000 if args.quick else 6000)
    a, b = int(0.7 * len(x)), int(0.85 * len(x))
    (xtr, ytr), (xv, yv), (xt, yt) = (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])

    model = float_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=2 if args.quick else 30, batch_size=64, verbose=0)
    float_acc = model.evaluate(xt, yt, verbose=0)[1]
    print(f"float test accuracy {float_acc:.4f}")

    # convolutions reuse their multipliers across output positions: parallel_factor says how many
    # positions run at once in hardware (EBOPs scale with it); here the first conv is fully parallel
    config = {"names": {"conv1": {"parallel_factor": LENGTH - 4}, "conv2": {"parallel_factor": 4}}}
    qmodel = hr.quantize(model, config, beta=1e-6)

    _, front = finetune(qmodel, xtr, ytr, validation_data=(xv, yv), epochs=3 if args.quick else 40,
                        beta="log:1e-6:3e-5", batch_size=64, pareto_dir=os.path.join(out, "pareto"),
                        verbose=2 if args.quick else 1)
    best = max(e.metric for e in front)
    chosen = min((e for e in front if e.metric >= best - 0.02), key=lambda e: e.ebops)
    chosen.restore(qmodel)  # that epoch's weights back into the model (chosen.load() reads the file)
    ebops = hr.trace_minmax(qmodel, xtr)
    acc = qmodel.evaluate(xt, yt, verbose=0)[1]
    print(f"chosen epoch {chosen.epoch + 1}: HGQ test accuracy {acc:.4f} at {ebops:,.0f} EBOPs")
    result = {"float_accuracy": float_acc, "accuracy": acc, "ebops": ebops, "front": len(front)}

    if args.hls or not args.quick:
        from hgq_rewrite.proxy import check_bit_exact

        proxy = hr.to_proxy_model(qmodel, aggressive=True)
        report = check_bit_exact(proxy, xt[:1000], backend="Vitis", output_dir=os.path.join(out, "hls4ml_prj"))
        print(f"hls4ml: {report.n_samples} samples compared, {report.n_mismatching} mismatches")
        result.update(samples=report.n_samples, mismatches=report.n_mismatching)
    return result


if __name__ == "__main__":
    main()

"""Jet tagger: a float MLP (16-64-32-32-5 with BatchNorm) through quantize, finetune and export.

The data is generated here (five classes of 16 "jet substructure" features with
class-dependent means, scales and correlations), so nothing is downloaded.

    python examples/jet_tagger.py            # full run, hls4ml export and bit-exactness check
    python examples/jet_tagger.py --quick    # a few epochs on a subset, no hls4ml
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from hgq_rewrite.finetune import finetune  # noqa: E402


def jet_data(n=20000, seed=0):
    """Five classes of 16 features: each class a Gaussian with its own mean, scales and mixing."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.0, size=(5, 16))
    mixing = [np.eye(16) + 0.3 * rng.normal(size=(16, 16)) for _ in range(5)]
    scales = rng.uniform(0.5, 1.5, size=(5, 16))
    y = rng.integers(0, 5, size=n)
    z = rng.normal(size=(n, 16))
    x = np.stack([z[i] * scales[y[i]] @ mixing[y[i]] + means[y[i]] for i in range(n)])
    x = (x - x.mean(0)) / x.std(0)
    return x.astype("float32"), y.astype("int64")


def float_model():
    layers = keras.layers
    return keras.Sequential([
        keras.Input((16,), name="jets"),
        layers.Dense(64, name="dense1"), layers.BatchNormalization(name="bn1"), layers.Activation("relu", name="relu1"),
        layers.Dense(32, name="dense2"), layers.BatchNormalization(name="bn2"), layers.Activation("relu", name="relu2"),
        layers.Dense(32, name="dense3"), layers.BatchNormalization(name="bn3"), layers.Activation("relu", name="relu3"),
        layers.Dense(5, name="logits"),
    ], name="jet_tagger")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs on a subset, skip hls4ml")
    parser.add_argument("--hls", action="store_true", help="export to hls4ml even with --quick")
    parser.add_argument("--out", help="folder for the Pareto front and the hls4ml project (default: temporary)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="jet_tagger_")

    keras.utils.set_random_seed(0)
    x, y = jet_data(2000 if args.quick else 20000)
    n_train, n_val = int(0.7 * len(x)), int(0.85 * len(x))
    (xtr, ytr), (xv, yv), (xt, yt) = (x[:n_train], y[:n_train]), (x[n_train:n_val], y[n_train:n_val]), \
        (x[n_val:], y[n_val:])

    # 1. an ordinary float model, trained as usual
    model = float_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=2 if args.quick else 20, batch_size=128, verbose=0)
    float_acc = model.evaluate(xt, yt, verbose=0)[1]
    print(f"float test accuracy {float_acc:.4f}")

    # 2. rewrite it: Dense+BatchNorm+relu become one HDenseBatchNorm each, an HQuantize goes after the input
    print(hr.explain(model, beta=1e-6))
    qmodel = hr.quantize(model, beta=1e-6)

    # 3. fine-tune against EBOPs with a rising beta; every Pareto-optimal epoch is saved
    _, front = finetune(qmodel, xtr, ytr, validation_data=(xv, yv), epochs=3 if args.quick else 60,
                        beta="log:1e-6:1e-4", batch_size=128, pareto_dir=os.path.join(out, "pareto"),
                        verbose=2 if args.quick else 1)
    best = max(e.metric for e in front)
    chosen = min((e for e in front if e.metric >= best - 0.01), key=lambda e: e.ebops)
    chosen.restore(qmodel)  # that epoch's weights back into the model (chosen.load() reads the file)
    print(f"chosen epoch {chosen.epoch + 1}: val_accuracy {chosen.metric:.4f}, {chosen.ebops:,.0f} EBOPs")

    # 4. exact formats on calibration data
    ebops = hr.trace_minmax(qmodel, xtr)
    acc = qmodel.evaluate(xt, yt, verbose=0)[1]
    print(f"HGQ test accuracy {acc:.4f} at {ebops:,.0f} EBOPs")
    result = {"float_accuracy": float_acc, "accuracy": acc, "ebops": ebops, "front": len(front)}

    # 5. proxy model -> hls4ml, checked bit for bit
    if args.hls or not args.quick:
        from hgq_rewrite.proxy import check_bit_exact

        proxy = hr.to_proxy_model(qmodel, aggressive=True)
        report = check_bit_exact(proxy, xt[:2000], backend="Vitis", output_dir=os.path.join(out, "hls4ml_prj"))
        print(f"hls4ml: {report.n_samples} samples compared, {report.n_mismatching} mismatches")
        result.update(samples=report.n_samples, mismatches=report.n_mismatching)
    return result


if __name__ == "__main__":
    main()

"""The seed quick start, on scikit-learn's digits: a hand-built HGQ model, trained, traced and exported.

This is the model of the HGQ quick-start guide exactly as written there (only the
imports change), trained on the 8x8 digits blown up to 28x28 (nothing is downloaded).

    python examples/quickstart_digits.py            # 15 epochs + hls4ml export and bit-exactness check
    python examples/quickstart_digits.py --quick    # 1 epoch on a subset, no hls4ml
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgq_rewrite as hr  # noqa: E402
from hgq_rewrite import FreeBOPs, ResetMinMax, trace_minmax  # noqa: E402
from hgq_rewrite.layers import HConv2D, HDense, HQuantize, PFlatten, PMaxPooling2D, PReshape  # noqa: E402


def digits_28x28(seed=0):
    """scikit-learn's digits resized to 28x28 in [0, 1]; ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype("float32")[..., None]
    big = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (28, 28)))[..., 0]
    order = np.random.default_rng(seed).permutation(len(big))
    x, y = big[order], d.target[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def seed_model(beta=3e-5):
    model = keras.models.Sequential([
        HQuantize(beta=beta),
        PReshape((28, 28, 1)),
        PMaxPooling2D((2, 2)),
        HConv2D(2, (3, 3), activation='relu', beta=beta, parallel_factor=144),
        PMaxPooling2D((2, 2)),
        HConv2D(2, (3, 3), activation='relu', beta=beta, parallel_factor=16),
        PMaxPooling2D((2, 2)),
        PFlatten(),
        HDense(10, beta=beta)
    ])
    opt = keras.optimizers.Adam(learning_rate=0.001)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt, loss=loss, metrics=['accuracy'])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on a subset, skip hls4ml")
    parser.add_argument("--hls", action="store_true", help="export to hls4ml even with --quick")
    parser.add_argument("--out", help="hls4ml project folder (default: temporary)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(1)
    x, y, xt, yt = digits_28x28()
    if args.quick:
        x, y = x[:200], y[:200]
    model = seed_model(beta=3e-5)
    callbacks = [ResetMinMax(), FreeBOPs()]
    model.fit(x, y, epochs=1 if args.quick else 15, batch_size=16, callbacks=callbacks, verbose=0)
    accuracy = model.evaluate(xt, yt, verbose=0)[1]

    ebops = trace_minmax(model, x, cover_factor=1.0)
    print(f"HGQ test accuracy {accuracy:.4f}, {ebops:,.0f} EBOPs after trace_minmax")
    result = {"accuracy": accuracy, "ebops": ebops}

    if args.hls or not args.quick:
        from hgq_rewrite.proxy import check_bit_exact

        proxy = hr.to_proxy_model(model, aggressive=True)
        out = args.out or tempfile.mkdtemp(prefix="quickstart_hls_")
        # converts with hls4ml (io_parallel), compiles the C++ model and compares it with the proxy
        report = check_bit_exact(proxy, xt, backend="Vitis", output_dir=out)
        print(f"hls4ml project in {out}: {report.n_samples} test samples, {report.n_mismatching} mismatches")
        result.update(samples=report.n_samples, mismatches=report.n_mismatching)
    return result


if __name__ == "__main__":
    main()

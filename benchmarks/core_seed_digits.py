"""Seed quick-start model on digits: accuracy and exact EBOPs per beta, and HGQ/float epoch-time ratio.

Run: python benchmarks/core_seed_digits.py [--epochs 30]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import keras  # noqa: E402
from data import digits_28x28  # noqa: E402
from test_seed_quickstart import seed_model  # noqa: E402

import hgq_rewrite as hr  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def float_seed_model():
    L = keras.layers
    model = keras.Sequential([
        L.Reshape((28, 28, 1)), L.MaxPooling2D((2, 2)), L.Conv2D(2, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)), L.Conv2D(2, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Flatten(), L.Dense(10),
    ])
    model.compile(keras.optimizers.Adam(0.001), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    x, y, xt, yt = digits_28x28()
    print(f"digits 28x28: {len(x)} train / {len(xt)} test, {args.epochs} epochs, batch {args.batch_size}")
    print(f"{'beta':>8} {'test acc':>9} {'EBOPs':>9} {'median epoch s':>15}")
    hgq_times = []
    for beta in (0.0, 3e-6, 3e-5, 3e-4):
        keras.utils.set_random_seed(1)
        model, timer = seed_model(beta), EpochTimer()
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                  callbacks=[timer, hr.FreeBOPs(), hr.ResetMinMax()])
        ebops = hr.trace_minmax(model, x)
        acc = model.evaluate(xt, yt, verbose=0)[1]
        hgq_times.append(statistics.median(timer.times[1:]))
        print(f"{beta:>8.0e} {acc:>9.3f} {ebops:>9.0f} {hgq_times[-1]:>15.3f}")
    keras.utils.set_random_seed(1)
    model, timer = float_seed_model(), EpochTimer()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[timer])
    float_time = statistics.median(timer.times[1:])
    acc = model.evaluate(xt, yt, verbose=0)[1]
    print(f"{'float':>8} {acc:>9.3f} {'-':>9} {float_time:>15.3f}")
    print(f"median epoch time HGQ / float: {statistics.median(hgq_times) / float_time:.2f}")


if __name__ == "__main__":
    main()

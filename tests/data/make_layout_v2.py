"""Writes tests/data/layout_v2.keras and layout_v2.npz (the values a loaded model must show) with the library
checkout first on PYTHONPATH; the committed files were written by commit 08a9453::

    git worktree add /tmp/v2 08a9453
    PYTHONPATH=/tmp/v2 python tests/data/make_layout_v2.py tests/data/layout_v2
"""

import sys

import keras
import numpy as np
from keras import ops

import hgq_rewrite as hr
from hgq_rewrite.trace import h_layers

STATE = ("fbw", "min", "max", "calibrated", "saturate", "fw_k", "fw_i", "fw_f")


def main(out):
    keras.utils.set_random_seed(7)
    L = keras.layers
    float_model = keras.Sequential([L.Input((6,)), L.Dense(8), L.BatchNormalization(), L.ReLU(), L.Dense(3)])
    rng = np.random.default_rng(7)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = rng.integers(0, 3, 128)
    model = hr.quantize(float_model, beta=1e-5)
    hr.finetune(model, x, y, epochs=2, batch_size=32, verbose=0)
    hr.trace_minmax(model, x, aggressive=False)
    model.save(out + ".keras")
    saved = {"x": x[:16], "y": model.predict(x[:16], verbose=0)}
    for layer in h_layers(model):
        saved[f"{layer.name}/beta"] = layer.beta
        saved[f"{layer.name}/ebops"] = layer.ebops
        for name in STATE:
            saved[f"{layer.name}/{name}"] = ops.convert_to_numpy(getattr(layer.paq, name))
    np.savez(out + ".npz", **saved)


if __name__ == "__main__":
    main(sys.argv[1])

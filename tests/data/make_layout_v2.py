"""Saves tests/data/layout_v2.keras (+ .npz) with the library on PYTHONPATH (commit 08a9453)."""
import sys
import numpy as np, keras
from keras import ops
import hgq_rewrite as hr
from hgq_rewrite.trace import h_layers
out = sys.argv[1]
keras.utils.set_random_seed(7)
L = keras.layers
fm = keras.Sequential([L.Input((6,)), L.Dense(8), L.BatchNormalization(), L.ReLU(), L.Dense(3)])
rng = np.random.default_rng(7)
x = rng.normal(size=(128, 6)).astype("float32")
y = rng.integers(0, 3, 128)
q = hr.quantize(fm, beta=1e-5)
hr.finetune(q, x, y, epochs=2, batch_size=32, verbose=0)
hr.trace_minmax(q, x, aggressive=False)
q.save(out + ".keras")
saved = {"x": x[:16], "y": q.predict(x[:16], verbose=0)}
for layer in h_layers(q):
    saved[f"{layer.name}/beta"] = layer.beta
    saved[f"{layer.name}/ebops"] = layer.ebops
    for name in ("fbw", "min", "max", "calibrated", "saturate", "fw_k", "fw_i", "fw_f"):
        saved[f"{layer.name}/{name}"] = ops.convert_to_numpy(getattr(layer.paq, name))
np.savez(out + ".npz", **saved)
print(sorted(saved))

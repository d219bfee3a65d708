"""FixedPointSoftmax: the proxy of an `HSoftmax`, computing what hls4ml 1.3's ``softmax_stable`` computes.

Over the last axis: ``d = max(x) - x`` cast to ``kif_norm``; ``e`` = the exp table at the code of
``d``; ``s = sum(e)`` cast to ``kif_sum``; ``r`` = the 1/x table at the code of ``s``; ``y = e * r``
(exact). The tables are rebuilt from the formats exactly as hls4ml's C++ rebuilds them (float32
``expf`` and ``1/x``, then a cast with RND and SAT), so nothing trained is stored. hls4ml converts
the layer to its ``Softmax`` node with ``_bit_exact`` set and these types (see
`hgq_rewrite.proxy.hls4ml_handlers`).
"""

import keras
import numpy as np
from keras import ops

from ..layers.softmax import MODES, exp_table, inv_table
from ..quantizers.fixed_point import quantize
from .fixed_point_layer import check_float64
from .registration import register_hls4ml_handlers


def _code(x, f):
    """The table index of on-grid, non-negative values ``x`` with ``f`` fractional bits."""
    return ops.cast(ops.floor(x * (2.0**f) + 0.5), "int32")


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class FixedPointSoftmax(keras.layers.Layer):
    """Softmax over the last axis with hls4ml's table arithmetic.

    Args:
        kif_norm, kif_exp, kif_sum, kif_inv: unsigned (k=0) formats of the normalised input, the
            exp table, the sum and the 1/x table.
        scale: softmax of ``scale * x`` (hls4ml's ``exp_scale``, a float32).
    """

    def __init__(self, kif_norm, kif_exp, kif_sum, kif_inv, scale=1.0, **kwargs):
        kwargs.setdefault("dtype", "float64")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_float64(self.name, self.compute_dtype)
        self.kifs = {}
        for key, kif in (("norm", kif_norm), ("exp", kif_exp), ("sum", kif_sum), ("inv", kif_inv)):
            k, i, f = (int(v) for v in kif)
            if k != 0 or i + f < 1:
                raise ValueError(f"Layer {self.name!r}: kif_{key} must be unsigned with at least one bit, got {kif!r}.")
            self.kifs[key] = (k, i, f)
        self.scale = float(np.float32(scale))
        self.exp_values = exp_table(self.kifs["norm"], self.kifs["exp"], self.scale)
        self.inv_values = inv_table(self.kifs["sum"], self.kifs["inv"])
        register_hls4ml_handlers()

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        d = quantize(ops.max(x, axis=-1, keepdims=True) - x, *self.kifs["norm"], *MODES)
        e = ops.take(ops.convert_to_tensor(self.exp_values, self.compute_dtype), _code(d, self.kifs["norm"][2]))
        s = quantize(ops.sum(e, axis=-1, keepdims=True), *self.kifs["sum"], *MODES)
        r = ops.take(ops.convert_to_tensor(self.inv_values, self.compute_dtype), _code(s, self.kifs["sum"][2]))
        return e * r

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({f"kif_{key}": list(kif) for key, kif in self.kifs.items()})
        config["scale"] = self.scale
        return config

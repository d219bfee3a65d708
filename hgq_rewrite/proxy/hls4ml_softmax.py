"""hls4ml (1.3.x) Keras-3 handler of the proxy's `FixedPointSoftmax`: hls4ml's bit-exact ``Softmax`` node.

Imported by `hls4ml_handlers` only (it imports hls4ml).
"""

from math import prod

from hls4ml.model.types import FixedPrecisionType, RoundingMode, SaturationMode

from ..compat.hls4ml_private import handler_base

FIXED_POINT_SOFTMAX_KEY = "hgq_rewrite.proxy.softmax.FixedPointSoftmax"


def softmax_type(kif):
    """``ap_(u)fixed<k+i+f, k+i, AP_RND, AP_SAT>``: every type of the proxy softmax rounds and saturates."""
    k, i, f = kif
    return FixedPrecisionType(k + i + f, k + i, bool(k), RoundingMode.RND, SaturationMode.SAT)


class FixedPointSoftmaxHandler(handler_base()):
    """Our ``FixedPointSoftmax`` -> hls4ml's ``Softmax`` node (``_bit_exact``, stable implementation, last axis).

    hls4ml's C++ rebuilds both tables from these types (``expf`` and ``1/x`` in float32), as the proxy
    layer does; each table is indexed by all the bits of its input type, so it has 2**width entries.
    """

    def handle(self, layer, in_tensors, out_tensors):
        shape = tuple(in_tensors[0].shape[1:])
        if any(s is None for s in shape):
            raise ValueError(f"{layer.name}: hls4ml needs fixed feature shapes, got {shape}.")
        n_in = prod(shape)
        n_outer = n_in // shape[-1]
        kifs = layer.kifs
        return {
            "class_name": "Softmax",
            "activation": "softmax",
            "axis": -1,
            "n_in": n_in,
            "n_outer": n_outer,
            "n_inner": 1,
            "implementation": "stable",
            "exp_table_t": softmax_type(kifs["exp"]),
            "exp_table_size": 2 ** sum(kifs["norm"]),
            "inv_table_t": softmax_type(kifs["inv"]),
            "inv_table_size": 2 ** sum(kifs["sum"]),
            "inv_inp_t": softmax_type(kifs["sum"]),
            "inp_norm_t": softmax_type(kifs["norm"]),
            "exp_scale": layer.scale,
            "parallelization_factor": n_outer,
            "_bit_exact": True,
        }

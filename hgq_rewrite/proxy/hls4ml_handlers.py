"""hls4ml (1.3.x) Keras-3 handlers for the proxy layers.

hls4ml's Keras-3 parser looks a layer up by ``f"{layer.__module__}.{ClassName}"``
first and by the bare class name second. Registering a handler under our own
class path (rather than relying on hls4ml's Keras-2 fallback, which matches the
bare names ``FixedPointQuantizer`` / ``UnaryLUT``) is better because:

* the fallback is only tried after the DA fallback (which, with da4ml
  installed, tries to trace our layer into combinational logic first) and
  prints "Keras v2 handler used" for every quantizer; it also stops working
  when a user passes ``allow_v2_fallback=False``;
* a bare class name can be claimed by any other package's handler, while the
  module path is ours alone;
* the fallback reads weights by substring match on variable names and trusts
  the config's ``fusible`` flag to drop per-element masks; here we hand over
  exactly the int16 ``(k, B, I)`` masks we store (``B >= 0``, ``k = I = 0``
  where ``B == 0``), leave fusion to hls4ml (``fusible=None``) and pass the
  table type explicitly.

Defining the subclasses registers them (hls4ml's handler metaclass fills its
registry), so importing this module is all that is needed.
"""

from copy import deepcopy

import numpy as np
from hls4ml.converters.keras_v3._base import KerasV3LayerHandler
from hls4ml.model.types import FixedPrecisionType

from hgq_rewrite.proxy.fixed_point_layer import FixedPointQuantizer
from hgq_rewrite.proxy.unary_lut import UnaryLUT


def class_path(cls):
    """The registry key hls4ml builds for a layer of class ``cls``."""
    return f"{cls.__module__}.{cls.__name__}"


class FixedPointQuantizerHandler(KerasV3LayerHandler):
    """Our ``FixedPointQuantizer`` -> hls4ml's internal ``FixedPointQuantizer`` node."""

    handles = (class_path(FixedPointQuantizer),)

    def handle(self, layer, in_tensors, out_tensors):
        feature_shape = tuple(in_tensors[0].shape[1:])
        if any(s is None for s in feature_shape):
            raise ValueError(f"{layer.name}: hls4ml needs fixed feature shapes, got {feature_shape}.")
        # Always hand over full-shape masks, even for a homogeneous quantizer: hls4ml 1.3.0 shrinks a
        # (1,)-shaped mask to its input's range by taking max(k), max(B), max(I) independently over the
        # elements, which drops bits when the input mixes signed and unsigned elements (the fused type
        # then saturates or rounds differently from this layer). Full-shape masks are shrunk element by
        # element, which is exact; uniform results are still fused by hls4ml.
        k, b, i = (np.ascontiguousarray(np.broadcast_to(m, (1, *feature_shape))).astype(np.int16) for m in layer.mask_kbi)
        return {
            "class_name": "FixedPointQuantizer",
            "mask_kbi": (k, b, i),
            "RND": layer.RND,
            "SAT": layer.SAT,
            "fusible": None,
            "overrides": deepcopy(layer.overrides),
        }


class UnaryLUTHandler(KerasV3LayerHandler):
    """Our ``UnaryLUT`` -> hls4ml's internal ``UnaryLUT`` node (table indexed by raw input bits)."""

    handles = (class_path(UnaryLUT),)

    def handle(self, layer, in_tensors, out_tensors):
        k, i, f = layer.kif_out
        table = np.asarray(layer.table.numpy(), dtype=np.float64)
        return {
            "class_name": "UnaryLUT",
            "table_data": table,
            "table_t": FixedPrecisionType(max(k + i + f, 1), k + i, bool(k)),
            "activation": "unary_lut",
            KIF_IN_ATTR: tuple(layer.kif_in),
        }


# ---------------------------------------------------------------------------------------------------------
# Table re-indexing after hls4ml's bit-exact precision flow.
#
# hls4ml indexes a UnaryLUT by the raw bits of its *input type*, and that type is chosen by hls4ml's
# bit-exact pass, which shrinks a quantizer's (k, i, f) to what its producer can actually emit. When the
# quantizer before a UnaryLUT is shrunk (e.g. its f exceeds the fractional bits the layer before can
# produce), the table built for the proxy's (k, i, f) would be read with a different code layout.
# This pass rebuilds the table for the final input type: every code of that type is decoded to its value
# and looked up in the proxy's table. Only UnaryLUT nodes made by this package (carrying KIF_IN_ATTR) are
# touched.

KIF_IN_ATTR = "hgq_rewrite_kif_in"
REMAP_PASS_NAME = "hgq_rewrite_remap_unary_lut"


def remap_table(table, kif_in, signed, width, integer):
    """Re-index a table built for ``kif_in`` to the codes of ``(ap_)fixed<width, integer, signed>``."""
    table = np.asarray(table).ravel()
    k, i, f = (int(v) for v in kif_in)
    bits_in = max(k + i + f, 0)
    width = int(width)
    f_new = width - int(integer)
    codes = np.arange(2**width, dtype=np.int64)
    if signed:
        codes = np.where(codes >= 2 ** (width - 1), codes - 2**width, codes)
    # value of each new code, expressed as a code of kif_in (rounded and saturated for unreachable codes)
    shift = f - f_new
    if shift >= 0:
        old = codes * (2**shift)
    else:
        old = np.floor(codes / 2.0 ** (-shift) + 0.5).astype(np.int64)
    lo = -(2 ** (bits_in - 1)) if (k and bits_in > 0) else 0
    hi = 2 ** (bits_in - k) - 1 if bits_in > 0 else 0
    old = np.clip(old, lo, hi)
    index = np.mod(old, 2**bits_in) if bits_in > 0 else np.zeros_like(old)
    return table[index]


def _make_remap_pass():
    from hls4ml.model.optimizer import OptimizerPass
    from hls4ml.model.optimizer.passes.hgq_proxy_model import UnaryLUT as HLSUnaryLUT

    class RemapUnaryLUTTable(OptimizerPass):
        def match(self, node):
            return (
                isinstance(node, HLSUnaryLUT)
                and node.attributes.get(KIF_IN_ATTR) is not None
                and not node.attributes.get("hgq_rewrite_remapped", False)
            )

        def transform(self, model, node):
            node.attributes["hgq_rewrite_remapped"] = True
            precision = node.get_input_variable().type.precision
            var = node.attributes["table"]
            new = remap_table(var.data, node.attributes[KIF_IN_ATTR], precision.signed, precision.width, precision.integer)
            if new.shape == np.shape(var.data) and np.array_equal(new, var.data):
                return False
            var.data = new
            var.shape = list(new.shape)
            var.data_length = int(new.size)
            var.nonzeros = int(np.count_nonzero(new))
            var.nzeros = var.data_length - var.nonzeros
            var.min, var.max = np.min(new), np.max(new)
            node.attributes["table_size"] = int(new.size)
            return False

    return RemapUnaryLUTTable


def _register_remap_pass():
    from hls4ml.model.flow import get_flow, update_flow
    from hls4ml.model.optimizer import get_available_passes, register_pass

    if REMAP_PASS_NAME not in get_available_passes():
        register_pass(REMAP_PASS_NAME, _make_remap_pass())
    if REMAP_PASS_NAME not in get_flow("convert").optimizers:
        update_flow("convert", add_optimizers=[REMAP_PASS_NAME])


_register_remap_pass()

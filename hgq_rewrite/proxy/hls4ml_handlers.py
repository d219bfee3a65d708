"""hls4ml (1.3.x) Keras-3 handlers for the proxy layers, and the table re-indexing pass.

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

Nothing is registered when this module is imported: :func:`install` registers the
handlers and the pass, and returns what it changed so that :func:`uninstall` can put
hls4ml back (see ``hgq_rewrite.proxy.registration``).
"""

from copy import deepcopy

import numpy as np
from hls4ml.model.types import FixedPrecisionType

from ..compat.hls4ml_private import handler_base, handler_registry, set_weight_data, unary_lut_node_class, unregister_pass
from .hls4ml_einsum import EINSUM_KEY, ProxyEinsumHandler
from .hls4ml_softmax import FIXED_POINT_SOFTMAX_KEY, FixedPointSoftmaxHandler

# the registry keys hls4ml builds for our layers ("module.ClassName"); tests check they match the classes
FIXED_POINT_QUANTIZER_KEY = "hgq_rewrite.proxy.fixed_point_layer.FixedPointQuantizer"
UNARY_LUT_KEY = "hgq_rewrite.proxy.unary_lut.UnaryLUT"


class FixedPointQuantizerHandler(handler_base()):
    """Our ``FixedPointQuantizer`` -> hls4ml's internal ``FixedPointQuantizer`` node."""

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
            "SAT": layer.overflow,
            "fusible": None,
            "overrides": deepcopy(layer.overrides),
        }


class UnaryLUTHandler(handler_base()):
    """Our ``UnaryLUT`` -> hls4ml's internal ``UnaryLUT`` node (table indexed by raw input bits)."""

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


HANDLERS = {FIXED_POINT_QUANTIZER_KEY: FixedPointQuantizerHandler, UNARY_LUT_KEY: UnaryLUTHandler,
            EINSUM_KEY: ProxyEinsumHandler, FIXED_POINT_SOFTMAX_KEY: FixedPointSoftmaxHandler}

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
CONVERT_FLOW = "convert"


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

    lut_node = unary_lut_node_class()

    class RemapUnaryLUTTable(OptimizerPass):
        def match(self, node):
            return (
                isinstance(node, lut_node)
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
            set_weight_data(var, new)
            node.attributes["table_size"] = int(new.size)
            return False

    return RemapUnaryLUTTable


def install():
    """Register the handlers and the re-indexing pass with hls4ml; return what changed (for `uninstall`)."""
    from hls4ml.model.flow import get_flow, update_flow
    from hls4ml.model.optimizer import get_available_passes, register_pass

    registry = handler_registry()
    changes = {"handlers": {key: registry.get(key) for key in HANDLERS}, "pass": False, "flow": False}
    for key, cls in HANDLERS.items():
        registry[key] = cls()
    if REMAP_PASS_NAME not in get_available_passes():
        register_pass(REMAP_PASS_NAME, _make_remap_pass())
        changes["pass"] = True
    if REMAP_PASS_NAME not in get_flow(CONVERT_FLOW).optimizers:
        update_flow(CONVERT_FLOW, add_optimizers=[REMAP_PASS_NAME])
        changes["flow"] = True
    return changes


def uninstall(changes):
    """Undo what `install` changed (``changes`` is its return value)."""
    from hls4ml.model.flow import update_flow

    registry = handler_registry()
    for key, previous in changes["handlers"].items():
        if previous is None:
            registry.pop(key, None)
        else:
            registry[key] = previous
    if changes["flow"]:
        update_flow(CONVERT_FLOW, remove_optimizers=[REMAP_PASS_NAME])
    if changes["pass"]:
        unregister_pass(REMAP_PASS_NAME)

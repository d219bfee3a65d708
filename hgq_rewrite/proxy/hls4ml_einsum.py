"""hls4ml (1.3.x) Keras-3 handler of the proxy's `ProxyEinsum`: hls4ml's ``Einsum`` node (io_parallel only).

Imported by `hls4ml_handlers.install` only (it imports hls4ml).
"""

from ..compat.hls4ml_private import handler_base

EINSUM_KEY = "hgq_rewrite.proxy.einsum.ProxyEinsum"


def strip_batch(equation):
    """The equation without its batch letter (the first of every operand and of the output), as hls4ml takes it."""
    specs, out = equation.replace(" ", "").split("->")
    return ",".join(s[1:] for s in specs.split(",")) + "->" + out[1:]


class ProxyEinsumHandler(handler_base()):
    """Our ``ProxyEinsum`` -> hls4ml's ``Einsum`` node, with the batch letter stripped from the equation."""

    def handle(self, layer, in_tensors, out_tensors):
        shapes = [tuple(t.shape[1:]) for t in (*in_tensors, *out_tensors)]
        if any(s is None for shape in shapes for s in shape):
            raise ValueError(f"{layer.name}: hls4ml's Einsum needs fixed shapes, got {shapes}.")
        return {
            "class_name": "Einsum",
            "equation": strip_batch(layer.equation),
            "inp0_shape": shapes[0],
            "inp1_shape": shapes[1],
            "out_shape": shapes[2] or (1,),
        }

"""PReLU (→ HPReLU). hls4ml 1.3's PReLU node has no bit-exact rule, so the proxy computes it with
exact pieces: ``alpha·x + (1 - alpha)·relu(x)`` is a relu, a concatenation and a Dense holding
``[diag(alpha); diag(1 - alpha)]`` (no rounding: every product and sum is exact in fixed point),
then the layer's output quantizer. Slopes that vary along other axes than the last are handled on
the flattened input (Flatten, Dense, Reshape).
"""

import keras
import numpy as np
from keras import ops

from ...layers.prelu import HPReLU
from ...proxy.frac import dense_frac, frac_bits
from ..handler import LayerHandler
from ..registry import register_builtin
from ._common import channels_last
from .core import FLOAT32_SIGNIFICAND_BITS


@register_builtin
class PReLUHandler(LayerHandler):
    float_classes = (keras.layers.PReLU,)
    hgq_classes = (HPReLU,)
    target = "HPReLU"
    fields = ("beta", "kernel", "activation")
    exports_doc = "yes, as a relu, a concatenation and a Dense holding alpha and 1 - alpha"

    def check(self, layer):
        return channels_last(layer)

    def convert(self, layer, settings, **fused):
        new = HPReLU(shared_axes=layer.shared_axes, kernel_initializer=layer.alpha_initializer,
                     kernel_regularizer=layer.alpha_regularizer, kernel_constraint=layer.alpha_constraint,
                     name=settings.name, **settings.kwargs("kq_conf", "paq_conf", "beta"))
        new.set_initial_weights(kernel=layer.alpha)
        return new

    def emit(self, layer, inputs, ctx):
        x, name = inputs[0], ctx.layer_name(layer)
        shape = tuple(x.shape[1:])
        alpha = np.broadcast_to(layer.qkernel, shape)
        per_channel = np.array_equal(alpha, np.broadcast_to(alpha.reshape(-1, shape[-1])[0], shape))
        if per_channel:
            alpha = alpha.reshape(-1, shape[-1])[0]
        else:
            x = _pass(keras.layers.Flatten(dtype=ctx.dtype, name=ctx.name(f"{name}_flat")), x, ctx)
            alpha = alpha.reshape(-1)
        relu = _pass(keras.layers.Activation("relu", dtype=ctx.dtype, name=ctx.name(f"{name}_relu")), x, ctx)
        both = keras.layers.Concatenate(dtype=ctx.dtype, name=ctx.name(f"{name}_cat"))([x, relu])
        ctx.pass_on(both, x, np.concatenate([ctx.frac_of(x), ctx.frac_of(relu)], axis=-1))
        kernel = np.concatenate([np.diag(alpha), np.diag(1.0 - alpha)])
        dense = keras.layers.Dense(alpha.size, use_bias=False, kernel_initializer="zeros", dtype=ctx.dtype,
                                   name=name if per_channel else ctx.name(f"{name}_dense"))
        y = dense(both)
        dense.set_weights([kernel])
        f_avail = dense_frac(ctx.frac_of(both), kernel, None)
        if not per_channel:
            y = keras.layers.Reshape(shape, dtype=ctx.dtype, name=name)(y)
            f_avail = f_avail.reshape((1, *shape))
        if _float32_may_round(layer, ctx.frac_of(inputs[0])):
            ctx.float32_inexact.append(layer.name)
        return ctx.quantize_output(layer, y, f_avail, f"{name}_q")


def _pass(plain, x, ctx):
    """``plain(x)`` for a layer that moves values without changing them (fractional bits move along)."""
    y = plain(x)
    f = ctx.frac_of(x)
    ctx.pass_on(y, x, f if isinstance(plain, keras.layers.Activation) else f.reshape(1, -1))
    return y


def _float32_may_round(layer, f_in):
    """True when the layer's float32 product alpha·x may need more than 24 significant bits."""
    i = np.asarray(ops.convert_to_numpy(layer.input_kif_maps(True)[0][1]), np.float64)  # |x| <= 2**i
    alpha = np.broadcast_to(layer.qkernel, i.shape)
    live = (alpha != 0) & np.isfinite(f_in)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = i + np.ceil(np.log2(np.abs(np.where(live, alpha, 1.0)))) + f_in + frac_bits(alpha)
    return bool(np.any(live & (bits > FLOAT32_SIGNIFICAND_BITS)))

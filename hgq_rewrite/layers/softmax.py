"""HSoftmax: softmax over the last axis in fixed point (two tables, a sum, a product), trainable bitwidths.

It computes exactly what hls4ml 1.3's bit-exact ``softmax_stable`` computes (Vivado/Vitis):

1. ``d = max(x) - x`` cast to the normalised-input format ``(0, i_norm, f_norm)`` (RND, SAT);
2. ``e = exp_table(d)``: ``expf(-float(d) * scale)`` in float32, cast to ``(0, 1, f_exp)`` (RND, SAT);
3. ``s = sum(e)`` (exact) cast to the sum format ``(0, i_sum, f_sum)`` (RND, SAT);
4. ``r = inv_table(s)``: ``1.0f / float(s)`` in float32, cast to ``(0, 1, f_inv)`` (RND, SAT);
5. ``y = paq(e * r)`` (the product is exact; the output quantizer is the layer's usual ``paq``).

The four fractional bitwidths are one trainable vector ``fbw = [f_norm, f_exp, f_sum, f_inv]``
(per layer: hls4ml has one type per table); the output quantizer ``paq`` may be heterogeneous.
The integer bits follow from the arithmetic: ``e <= 1`` and ``r <= 1`` need 1; the sum of ``n``
values in ``(0, 1]`` needs ``n.bit_length()``; ``i_norm`` is the smallest with
``exp(-2**i_norm * scale)`` below half a step of the exp table, so saturating ``d`` changes nothing
but that last step.
"""

import math

import keras
import numpy as np
from keras import ops

from ..quantizers.fixed_point import quantize
from ..quantizers.hquantizer import LN2, BitsL1, ClipBits
from .base import HLayerBase

F_MAX = 11  # (1 + f_exp) + (1 + f_inv) <= 24: the product e * r stays exact in float32
F_NAMES = ("f_norm", "f_exp", "f_sum", "f_inv")
MODES = ("RND", "SAT")  # rounding and overflow of every internal cast and table


def norm_integer_bits(f_exp, scale):
    """i_norm for an exp table with ``f_exp`` fractional bits: ``exp(-2**i * scale) < 2**-(f_exp + 1)``."""
    return max(1, math.ceil(math.log2((f_exp + 1) * math.log(2.0) / scale)))


def _cast(values, kif):
    return np.asarray(ops.convert_to_numpy(quantize(ops.convert_to_tensor(values, "float64"), *kif, *MODES)), np.float64)


def exp_table(kif_norm, kif_exp, scale):
    """Exp table indexed by the codes of ``kif_norm``: ``expf(-float(d) * scale)`` cast to ``kif_exp``."""
    _, i, f = kif_norm
    d = np.arange(2 ** (i + f), dtype=np.float64) * 2.0**-f
    arg = np.float32(d) * np.float32(scale)  # float32 product, as the C++
    return _cast(np.exp(-arg.astype(np.float64)).astype(np.float32).astype(np.float64), kif_exp)


def inv_table(kif_sum, kif_inv):
    """1/x table indexed by the codes of ``kif_sum``: ``1.0f / float(s)`` cast to ``kif_inv`` (entry 0,
    1/0, saturates; it is never read: the sum is >= 1)."""
    _, i, f = kif_sum
    s = (np.arange(2 ** (i + f), dtype=np.float64) * 2.0**-f).astype(np.float32)
    with np.errstate(divide="ignore"):
        r = np.float32(1.0) / s  # float32 division, as the C++
    return _cast(np.where(np.isfinite(r), r, np.float32(2.0)).astype(np.float64), kif_inv)


def _ste(true, exact, f_var):
    """Value ``exact``; gradient 1 to ``true`` and ``-ln2 * (exact - true)`` to the bitwidth ``f_var``."""
    delta = ops.stop_gradient(exact - true)
    return exact + (true - ops.stop_gradient(true)) + delta * LN2 * (ops.stop_gradient(f_var) - f_var)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HSoftmax(HLayerBase):
    """Softmax over the last axis, exported bit-exactly as hls4ml's table softmax (see the module docstring).

    Args:
        axis: -1 (or the index of the last axis): the softmax axis.
        beta: weight of the layer's EBOPs in the loss.
        scale: softmax of ``scale * x`` (> 0; hls4ml's ``exp_scale``, a float32), e.g. 1/sqrt(d) in attention.
        f_norm, f_exp, f_sum, f_inv: initial fractional bits of the normalised input, the exp table,
            the sum (the 1/x table's input) and the 1/x table, in [0, 11] (default: the output
            quantizer's ``init_bw``, at most 11).
        bits_trainable: train the four bitwidths (the output quantizer follows ``paq_conf``).
        paq_conf: config of the output quantizer.

    EBOPs: the ``n`` multiplications ``e * r`` (``n`` = elements of the input), each
    ``(1 + f_exp) x (1 + f_inv)`` bits; the tables, the max, the subtractions and the sums count 0.
    """

    activation_name = "softmax"  # what it computes (finetune then compiles a loss taking probabilities)

    def __init__(self, axis=-1, beta=0.0, scale=1.0, f_norm=None, f_exp=None, f_sum=None, f_inv=None,
                 bits_trainable=True, paq_conf=None, **kwargs):
        super().__init__(beta=beta, paq_conf=paq_conf, **kwargs)
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        if not isinstance(axis, int):
            raise ValueError(f"Layer {self.name!r}: HSoftmax takes one axis (the last), got axis={axis!r}.")
        self.axis = axis
        self.scale = float(np.float32(scale))
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Layer {self.name!r}: scale must be a finite number > 0, got {scale!r}.")
        default = min(float(self.paq.config["init_bw"]), F_MAX)
        self.f_init = [default if v is None else float(v) for v in (f_norm, f_exp, f_sum, f_inv)]
        for name, v in zip(F_NAMES, self.f_init):
            if not 0 <= v <= F_MAX:
                raise ValueError(f"Layer {self.name!r}: {name} must be in [0, {F_MAX}], got {v!r}.")
        self.bits_trainable = bool(bits_trainable)
        # i_norm for every possible f_exp: one table for the graph and the export alike
        self._i_norm = [norm_integer_bits(f, self.scale) for f in range(F_MAX + 1)]

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        rank = len(input_shape)
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"Layer {self.name!r}: softmax over axis {self.axis} of a rank-{rank} input; only the "
                             "last axis is supported (Permute the axis last first).")
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name!r}: the softmax axis needs a known size; give the model an Input "
                             "with a full shape.")
        self.n_slice = int(input_shape[-1])
        self._build_state(input_shape)
        l1 = self.paq.config["l1"]
        self.fbw = self.add_weight(name="fbw", shape=(4,), initializer=keras.initializers.Constant(self.f_init),
                                   trainable=self.bits_trainable, regularizer=BitsL1(l1) if l1 else None,
                                   constraint=ClipBits(0, F_MAX))

    # -- formats ---------------------------------------------------------------------------------------
    def bits(self):
        """The four fractional bitwidths as ints (round half to even, as the forward pass)."""
        return dict(zip(F_NAMES, (int(v) for v in np.round(ops.convert_to_numpy(self.fbw)))))

    def formats(self):
        """(k, i, f) of the normalised input, exp table, sum and 1/x table (what the export uses)."""
        b = self.bits()
        return {
            "norm": (0, self._i_norm[b["f_exp"]], b["f_norm"]),
            "exp": (0, 1, b["f_exp"]),
            "sum": (0, self.n_slice.bit_length(), b["f_sum"]),
            "inv": (0, 1, b["f_inv"]),
        }

    # -- forward ---------------------------------------------------------------------------------------
    def call(self, x, training=None):
        f_var = self.fbw
        f = ops.round(ops.stop_gradient(f_var))
        f_norm, f_exp, f_sum, f_inv = (f[j] for j in range(4))
        i_norm = ops.take(ops.convert_to_tensor(self._i_norm, x.dtype), ops.cast(f_exp, "int32"))
        i_sum = float(self.n_slice.bit_length())

        d = ops.max(x, axis=-1, keepdims=True) - x
        d = _ste(d, quantize(d, 0.0, i_norm, f_norm, *MODES), f_var[0])
        # the table value: expf of a float32 argument (exp in float64, rounded once to float32)
        arg = ops.cast(ops.stop_gradient(d), "float32") * np.float32(self.scale)
        e_exact = ops.cast(ops.cast(ops.exp(-ops.cast(arg, "float64")), "float32"), x.dtype)
        e = _ste(ops.exp(-d * self.scale), quantize(e_exact, 0.0, 1.0, f_exp, *MODES), f_var[1])
        s = ops.sum(e, axis=-1, keepdims=True)
        s = _ste(s, quantize(s, 0.0, i_sum, f_sum, *MODES), f_var[2])
        s32 = ops.cast(ops.stop_gradient(s), "float32")
        r_exact = ops.cast(ops.divide(ops.ones_like(s32), s32), x.dtype)  # float32 division, as the C++
        r = _ste(1.0 / s, quantize(r_exact, 0.0, 1.0, f_inv, *MODES), f_var[3])
        y = self.paq(e * r, training=training)
        self._train_ebops(training)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # -- EBOPs -----------------------------------------------------------------------------------------
    def has_cost(self):
        return True

    def ebops_of_call(self, input_maps, exact, **known):
        n = float(np.prod(input_maps[0][0].shape[1:]))
        f = ops.round(self.fbw) if exact else self.fbw + ops.stop_gradient(ops.round(self.fbw) - self.fbw)
        return n * (1.0 + f[1]) * (1.0 + f[3])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, scale=self.scale, bits_trainable=self.bits_trainable,
                   **dict(zip(F_NAMES, self.f_init)))
        return cfg

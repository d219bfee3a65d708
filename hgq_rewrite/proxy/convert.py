"""``to_proxy_model``: a traced HGQ model as plain Keras layers plus fixed-point quantizers.

The proxy computes in float64 with:

* every H-layer with a kernel as the plain Keras layer holding ``qkernel``/``qbias``
  (+ ``Activation('relu')``), followed by a :class:`FixedPointQuantizer` with the
  layer's traced output format;
* ``HQuantize`` / ``Signature`` as a quantizer; ``HAdd`` as (two-input) ``Add`` layers
  and a quantizer; ``HActivation`` relu/linear as ``Activation('relu')`` and a
  quantizer; any other ``HActivation`` as a homogeneous quantizer covering its
  input, a :class:`UnaryLUT`, and a quantizer when the output format is not uniform;
* P-layers as their Keras base layers (``PDropout`` removed).

Nested models are flattened. Quantizers round like the HGQ layer (RND unless
configured otherwise) and overflow with WRAP (``aggressive=True``) or SAT.

One detail keeps hls4ml 1.3 exact on overflow: a quantizer never asks for more
fractional bits than its input can carry. hls4ml drops such bits before
saturating (so SAT would clip to a different bound); the proxy drops them too,
which changes nothing for values inside the range.
"""

import hashlib
import math
import warnings
import weakref

import numpy as np
import keras
from keras import ops

from ..layers import (
    HActivation,
    HAdd,
    HConv1D,
    HConv2D,
    HDense,
    HDepthwiseConv2D,
    HQuantize,
    PDropout,
    Signature,
)
from ..layers.base import HLayerBase, PLayerMixin
from ..layers.kernel_base import HKernelLayer
from ..layers.conv import depth_multiplier_problem
from ..layers.links import link_model, walk_layers
from ..layers.pooling import average_pooling_problem
from ..quantizers import NotTracedError
from ..quantizers.fixed_point import quantize, round_to_grid, wrap_from_arguments
from .fixed_point_layer import FixedPointQuantizer
from .unary_lut import UnaryLUT, lut_inputs

F64 = "float64"
FLOAT32_SIGNIFICAND_BITS = 24
DROPPED = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.GaussianNoise)
PASSIVE_KERAS = (keras.layers.Reshape, keras.layers.Flatten, keras.layers.Permute)


class ProxyConversionError(ValueError):
    """A layer of the HGQ model cannot be turned into a proxy; the message names it and the remedy."""


# ---------------------------------------------------------------------------------------------------------
# Fractional bits actually carried by values (numpy, -inf where a value is always 0)


def frac_bits(values):
    """Smallest f with ``value * 2**f`` an integer, per element; ``-inf`` for zeros."""
    a = np.abs(np.asarray(values, dtype=np.float64))
    out = np.full(a.shape, -np.inf)
    nz = a > 0
    if nz.any():
        mant, exp = np.frexp(a[nz])
        ints = (mant * 2.0**53).astype(np.int64)
        trailing = np.log2((ints & -ints).astype(np.float64))
        out[nz] = 53 - exp - trailing
    return out


def _dense_frac(f_in, kernel, bias):
    """Per output: max over non-zero terms of f_in + f_w (and the bias); f_in has shape (1, ..., n_in)."""
    f_w = frac_bits(kernel)  # (n_in, units)
    out = np.max(f_in[..., :, None] + f_w, axis=-2)
    if bias is not None:
        out = np.maximum(out, frac_bits(bias))
    return out


def _conv_patches(x, kernel_size, strides, padding, dilation, pad_value):
    """``(output spatial shape, [(kernel offset, input patch of shape (*out_spatial, C)), ...])``."""
    out_sp, pads = [], []
    for n, k, s, d in zip(x.shape[:-1], kernel_size, strides, dilation):
        span = d * (k - 1) + 1
        if padding == "same":
            o = math.ceil(n / s)
            total = max((o - 1) * s + span - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            o = (n - span) // s + 1
            pads.append((0, 0))
        out_sp.append(o)
    xp = np.pad(x, pads + [(0, 0)], constant_values=pad_value)
    patches = []
    for offset in np.ndindex(*kernel_size):
        window = tuple(slice(o * d, o * d + (m - 1) * s + 1, s) for o, d, s, m in zip(offset, dilation, strides, out_sp))
        patches.append((offset, xp[window]))
    return tuple(out_sp), patches


def _conv_frac(f_in, kernel, bias, strides, padding, dilation, depthwise):
    """Like ``_dense_frac`` for a (depthwise) convolution, channels_last; f_in has shape (1, *spatial, C)."""
    f_w = frac_bits(kernel)  # (*k, C, F) or (*k, C, dm)
    out_sp, patches = _conv_patches(f_in[0], f_w.shape[:-2], strides, padding, dilation, -np.inf)
    n_out = f_w.shape[-2] * f_w.shape[-1] if depthwise else f_w.shape[-1]
    out = np.full((*out_sp, n_out), -np.inf)
    for offset, patch in patches:
        cand = patch[..., :, None] + f_w[offset]
        out = np.maximum(out, cand.reshape(*out_sp, n_out) if depthwise else np.max(cand, axis=-2))
    if bias is not None:
        out = np.maximum(out, frac_bits(bias))
    return out[None]


def _magnitude_bound(layer, magnitude, kernel, bias):
    """Per output: sum of |weight| x input magnitude bound (+ |bias|), for Dense and (depthwise) convs."""
    w = np.abs(kernel)
    if isinstance(layer, HDense):
        out = magnitude @ w
    else:
        out_sp, patches = _conv_patches(magnitude[0], w.shape[:-2], layer.strides, layer.padding,
                                        layer.dilation_rate, 0.0)
        depthwise = isinstance(layer, HDepthwiseConv2D)
        n_out = w.shape[-2] * w.shape[-1] if depthwise else w.shape[-1]
        out = np.zeros((*out_sp, n_out))
        for offset, patch in patches:
            out += (patch[..., :, None] * w[offset]).reshape(*out_sp, n_out) if depthwise else patch @ w[offset]
        out = out[None]
    return out + (np.abs(bias) if bias is not None else 0.0)


# ---------------------------------------------------------------------------------------------------------


def _full(arr, shape):
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape)


def _union(*maps):
    return tuple(int(np.max(m)) for m in maps)


class _Namer:
    """Unique layer names: the HGQ name when free, else prefixed by the nested model, else numbered.

    hls4ml stores a layer's output variable as an attribute named like the layer, so a layer named
    after one of its attributes (an ``Activation`` layer is named ``activation`` by default) would
    overwrite it; those names are taken from the start.
    """

    def __init__(self):
        self.used = {"activation", "table", "weight", "bias", "scale", "n_in", "n_out"}

    def __call__(self, name, prefix=None):
        base = name if name not in self.used or prefix is None else f"{prefix}_{name}"
        candidate, n = base, 1
        while candidate in self.used:
            candidate = f"{base}_{n}"
            n += 1
        self.used.add(candidate)
        return candidate


class _ProxyBuilder:
    def __init__(self, aggressive, max_table_bits):
        self.overflow = "WRAP" if aggressive else "SAT"
        self.max_table_bits = int(max_table_bits)
        self.name = _Namer()
        self.frac = {}  # id(new tensor) -> fractional bits its values carry, shape (1, *features), -inf = zero
        self.formats = {}  # id(HQuantizer) -> (quantizer, (k, i, f)): the format its firmware cast uses
        self.float32_inexact = []  # layers whose float32 sums may need more than 24 significant bits
        # id(new tensor) -> (rounding, overflow) of the last quantizer before it (passive layers pass it on)
        self.modes = {}

    # -- helpers ---------------------------------------------------------------------------------------
    def _f_of(self, tensor):
        return self.frac.get(id(tensor), np.full((1, *tensor.shape[1:]), np.inf))

    def _quantize(self, x, kif, f_available, round_mode, name, overrides=None, overflow=None, prefix=None, paq=None):
        """FixedPointQuantizer with format ``kif`` (never more fractional bits than the input carries).

        ``paq``: the HGQ quantizer this one exports; its final format is recorded in ``self.formats``.
        """
        shape = (1, *x.shape[1:])
        k, i, f = (_full(m, shape) for m in kif)
        f = np.minimum(f, f_available)
        f = np.where(np.isfinite(f), f, -(k + i))  # the input is always 0: zero bits
        k, i, f = (m.astype(np.int64) for m in (k, i, f))
        if paq is not None:
            self.formats[id(paq)] = (paq, (k, i, f))
        carried = np.where(k + i + f > 0, f, -np.inf).astype(np.float64)
        if all(np.unique(m).size == 1 for m in (k, i, f)):
            k, i, f = (m.reshape(-1)[:1] for m in (k, i, f))
        layer = FixedPointQuantizer.from_kif(
            k, i, f, RND=round_mode, overflow=overflow or self.overflow, overrides=overrides,
            name=self.name(name, prefix), dtype=F64,
        )
        y = layer(x)
        self.frac[id(y)] = carried
        self.modes[id(y)] = (round_mode, overflow or self.overflow)
        return y

    # -- graph walk ------------------------------------------------------------------------------------
    def run(self, model, inputs, prefix=None):
        """Rebuild ``model`` on the new tensors ``inputs``; return the new output tensors."""
        if isinstance(model, keras.Sequential):
            if model._functional is None:
                raise ProxyConversionError(
                    f"Sequential model {model.name!r} is not built: call it on data or build it with an input shape."
                )
            model = model._functional
        tmap = {id(t): new for t, new in zip(model.inputs, inputs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                args = [tmap[id(t)] for t in node.arguments.keras_tensors]
                if isinstance(op, keras.Model):
                    outs = self.run(op, args, prefix=op.name)
                else:
                    outs = self.convert_call(op, node, args, prefix)
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                for t, new in zip(node.outputs, outs):
                    tmap[id(t)] = new
        return [tmap[id(t)] for t in model.outputs]

    def convert_call(self, layer, node, args, prefix):
        if isinstance(layer, HQuantize):
            return self.quantize_input(layer, args[0], layer.paq.config["rounding"], prefix)
        if isinstance(layer, Signature):
            return self.quantize_input(layer, args[0], "TRN", prefix)
        if isinstance(layer, HKernelLayer):
            return self.kernel_layer(layer, args[0], prefix)
        if isinstance(layer, HAdd):
            return self.add(layer, args, prefix)
        if isinstance(layer, HActivation):
            return self.activation(layer, node, args[0], prefix)
        if isinstance(layer, (PDropout, *DROPPED)):
            return args[0]
        if isinstance(layer, keras.layers.Activation) and _act_name(layer.activation) == "linear":
            return args[0]
        if isinstance(layer, PLayerMixin) or isinstance(layer, PASSIVE_KERAS):
            return self.passive(layer, args, prefix)
        raise ProxyConversionError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no proxy equivalent. Remedy: use the H-/P-layer "
            "for it (hgq_rewrite.quantize does this), or remove it before export."
        )

    # -- layer kinds -----------------------------------------------------------------------------------
    def quantize_input(self, layer, x, round_mode, prefix):
        paq = getattr(layer, "paq", None)
        return self._quantize(x, layer.output_kif(), np.inf, round_mode, layer.name, prefix=prefix, paq=paq)

    def kernel_layer(self, layer, x, prefix):
        cls = type(layer)
        name = self.name(layer.name, prefix)
        if any(d != 1 for d in getattr(layer, "dilation_rate", (1,))):
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({cls.__name__}) uses dilation_rate={layer.dilation_rate}, which hls4ml 1.3 "
                "ignores. Remedy: use dilation_rate=1."
            )
        qkernel, qbias = layer.qkernel, layer.qbias
        use_bias = qbias is not None
        # weights are set right after: zero initializers skip random draws (a compile each on JAX)
        common = dict(use_bias=use_bias, dtype=F64, name=name, bias_initializer="zeros")
        f_in = self._f_of(x)
        if isinstance(layer, HDense):
            plain = keras.layers.Dense(layer.units, kernel_initializer="zeros", **common)
            f_avail = _dense_frac(f_in, qkernel, qbias)
        elif isinstance(layer, (HConv1D, HConv2D)):
            base = keras.layers.Conv1D if isinstance(layer, HConv1D) else keras.layers.Conv2D
            plain = base(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                         kernel_initializer="zeros", **common)
            f_avail = _conv_frac(f_in, qkernel, qbias, layer.strides, layer.padding, layer.dilation_rate, False)
        elif isinstance(layer, HDepthwiseConv2D):
            problem = depth_multiplier_problem(layer.depth_multiplier)
            if problem:
                raise ProxyConversionError(f"Layer {layer.name!r} (HDepthwiseConv2D): {problem}.")
            plain = keras.layers.DepthwiseConv2D(
                layer.kernel_size, strides=layer.strides, padding=layer.padding,
                depth_multiplier=layer.depth_multiplier, depthwise_initializer="zeros", **common,
            )
            f_avail = _conv_frac(f_in, qkernel, qbias, layer.strides, layer.padding, layer.dilation_rate, True)
        else:
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({cls.__name__}) has no proxy rule. Remedy: use HDense, HConv1D, HConv2D "
                "or HDepthwiseConv2D (or their BatchNorm variants)."
            )
        y = plain(x)
        plain.set_weights([qkernel, qbias] if use_bias else [qkernel])
        self._check_float32(layer, qkernel, qbias, f_avail)
        if layer.activation_name == "relu":
            y = keras.layers.Activation("relu", dtype=F64, name=self.name(f"{name}_relu"))(y)
        overrides = None
        n_positions = int(np.prod(y.shape[1:-1])) if len(y.shape) > 2 else 1
        if layer.parallel_factor is not None and (not isinstance(layer, HDense) or n_positions > 1):
            overrides = {"layers": {name: {"parallelization_factor": int(layer.parallel_factor)}}}
        return self._quantize(
            y, layer.output_kif(), f_avail, layer.paq.config["rounding"], f"{name}_q", overrides, paq=layer.paq
        )

    def _check_float32(self, layer, qkernel, qbias, f_avail):
        """Note ``layer`` when its float32 sums may round: magnitude bound x carried fractional bits > 24 bits."""
        k, i, _ = (np.asarray(ops.convert_to_numpy(m), np.float64) for m in layer.input_kif_maps(True)[0])
        magnitude = 2.0**i  # |x| <= 2**i for any format (k, i, f)
        bound = _magnitude_bound(layer, magnitude, qkernel, qbias)
        with np.errstate(divide="ignore"):
            bits = np.ceil(np.log2(bound)) + np.broadcast_to(f_avail, bound.shape)
        if np.any(np.isfinite(bits) & (bits > FLOAT32_SIGNIFICAND_BITS)):
            self.float32_inexact.append(layer.name)

    def add(self, layer, args, prefix):
        name = self.name(layer.name, prefix)
        total, f_avail = args[0], self._f_of(args[0])
        for j, x in enumerate(args[1:]):
            last = j == len(args) - 2
            add_name = name if last else self.name(f"{name}_{j}")
            total = keras.layers.Add(dtype=F64, name=add_name)([total, x])
            f_avail = np.maximum(f_avail, self._f_of(x))
        return self._quantize(total, layer.output_kif(), f_avail, layer.paq.config["rounding"], f"{name}_q",
                              paq=layer.paq)

    def activation(self, layer, node, x, prefix):
        name = self.name(layer.name, prefix)
        act = layer.activation_name
        rounding = layer.paq.config["rounding"]
        f_in = self._f_of(x)
        if act == "linear":
            return self._quantize(x, layer.output_kif(), f_in, rounding, f"{name}_q", paq=layer.paq)
        if act == "relu":
            y = keras.layers.Activation("relu", dtype=F64, name=name)(x)
            return self._quantize(y, layer.output_kif(), f_in, rounding, f"{name}_q", paq=layer.paq)
        if act in ("softmax", "log_softmax"):
            raise ProxyConversionError(
                f"Layer {layer.name!r}: {act} is not element-wise and hls4ml 1.3 has no bit-exact softmax. "
                "Remedy: remove it from the model before export (argmax of the logits is unchanged) and apply it "
                "after the firmware."
            )
        return self.lookup_table(layer, node, x, name, rounding, f_in)

    def lookup_table(self, layer, node, x, name, rounding, f_in):
        """A homogeneous input quantizer, the table, and (for a per-element output format) a quantizer.

        The table holds exactly what the HGQ layer computes for each input code: the activation in the
        layer's dtype, rounded to the finest output grid, then (uniform output format) cast with the
        layer's rounding and overflow. For a per-element output format the table keeps the rounded
        activation in a format wide enough for all of it, and the quantizer after it does the cast.
        """
        node_index = layer._inbound_nodes.index(node)
        shape = (1, *x.shape[1:])
        k_in, i_in, _ = (_full(ops.convert_to_numpy(m), shape) for m in layer.input_kif_maps(True, node_index)[0])
        live = np.isfinite(f_in)
        if not live.any():
            live = np.ones(shape, dtype=bool)
            f_in = np.zeros(shape)
        kif_in = (int(np.max(k_in[live])), int(np.max(i_in[live])), int(np.max(f_in[live])))
        bits = sum(kif_in)
        if bits > self.max_table_bits:
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({layer.activation_name}): its input format {kif_in} (k, i, f) needs a table "
                f"of 2**{bits} entries, above max_table_bits={self.max_table_bits}. Remedy: fewer input bits (a "
                "larger beta on the layer before, cover_factor closer to 1), or a larger max_table_bits."
            )
        # value-preserving (kif_in covers every input); it takes the modes of the quantizer before it because
        # hls4ml fuses consecutive quantizers into one type with the *last* one's rounding and overflow
        lut_rounding, lut_overflow = self.modes.get(id(x), ("RND", "WRAP"))
        q_in = self._quantize(x, kif_in, np.inf, lut_rounding, f"{name}_lut_in", overflow=lut_overflow)
        out_shape = (1, *x.shape[1:])
        k_out, i_out, f_out = (_full(m, out_shape).astype(np.int64) for m in layer.output_kif())
        finest = float(np.max(np.round(ops.convert_to_numpy(layer.paq.fbw))))
        try:
            codes = ops.convert_to_tensor(lut_inputs(kif_in), layer.compute_dtype)
        except ValueError as exc:
            raise ProxyConversionError(f"Layer {layer.name!r}: cannot tabulate its activation: {exc}") from exc
        # the HGQ layer's own arithmetic: activation in its dtype, then the finest output grid
        raw = np.asarray(ops.convert_to_numpy(round_to_grid(layer.activation(codes), finest)), dtype=np.float64)
        if not np.all(np.isfinite(raw)):
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({layer.activation_name}) is not finite on its input range {kif_in} (k, i, f). "
                "Remedy: fewer integer bits before it (a larger beta on the layer before), or a bounded activation."
            )
        uniform = all(np.unique(m).size == 1 for m in (k_out, i_out, f_out))
        if uniform:
            kif_table = (int(k_out.flat[0]), int(i_out.flat[0]), int(f_out.flat[0]))
            table = ops.convert_to_numpy(quantize(ops.convert_to_tensor(raw, F64), *kif_table, rounding, self.overflow))
            self.formats[id(layer.paq)] = (layer.paq, (k_out, i_out, f_out))
        else:
            table, kif_table = raw, covering_kif(raw, finest)
        table = np.asarray(table, dtype=np.float64)
        lut = UnaryLUT(table=table, kif_in=kif_in, kif_out=kif_table, dtype=F64, name=name)
        y = lut(q_in)
        f_table = np.max(frac_bits(table)) if np.any(table) else -np.inf
        self.frac[id(y)] = np.full(out_shape, f_table)
        if uniform:
            return y
        return self._quantize(y, (k_out, i_out, f_out), self.frac[id(y)], rounding, f"{name}_q", paq=layer.paq)

    def passive(self, layer, args, prefix):
        name = self.name(layer.name, prefix)
        if isinstance(layer, keras.layers.Concatenate):
            out, f_maps = args[0], [self._f_of(args[0])]
            for j, x in enumerate(args[1:]):
                last = j == len(args) - 2
                out = keras.layers.Concatenate(axis=layer.axis, dtype=F64, name=name if last else self.name(
                    f"{name}_{j}"))([out, x])
                f_maps.append(self._f_of(x))
            self.frac[id(out)] = np.concatenate(f_maps, axis=layer.axis)
            modes = {self.modes.get(id(x)) for x in args}
            if len(modes) == 1 and None not in modes:
                self.modes[id(out)] = modes.pop()
            return out
        base = _keras_base(layer)
        config = {key: v for key, v in layer.get_config().items() if key not in ("name", "dtype", "trainable")}
        problem = average_pooling_problem(layer)
        if problem:
            raise ProxyConversionError(f"Layer {layer.name!r}: {problem}.")
        plain = base.from_config({**config, "name": name, "dtype": F64})
        y = plain(args[0])
        self.frac[id(y)] = self._passive_frac(layer, plain, args[0])
        if id(args[0]) in self.modes:
            self.modes[id(y)] = self.modes[id(args[0])]
        keepdims = getattr(layer, "keepdims", False)
        if base.__name__ == "GlobalAveragePooling2D" or (base.__name__ == "GlobalAveragePooling1D" and keepdims):
            # hls4ml 1.3's bit-exact pass gives these outputs the wrong rank; Flatten (and Reshape back to the
            # kept dimensions) restore it
            f = self.frac[id(y)]
            shape = tuple(y.shape[1:])
            y = keras.layers.Flatten(dtype=F64, name=self.name(f"{name}_flat"))(y)
            if keepdims:
                y = keras.layers.Reshape(shape, dtype=F64, name=self.name(f"{name}_keepdims"))(y)
            self.frac[id(y)] = f
            if id(args[0]) in self.modes:
                self.modes[id(y)] = self.modes[id(args[0])]
        return y

    def _passive_frac(self, layer, plain, x):
        """Fractional bits after a passive layer: its own rule on the input's map (zeros for k and i)."""
        f = self._f_of(x)
        finite = np.where(np.isfinite(f), f, -1e4)
        if isinstance(layer, PLayerMixin):
            zeros = ops.zeros(f.shape)
            maps = (zeros, zeros, ops.convert_to_tensor(finite, "float32"))
            out = np.asarray(ops.convert_to_numpy(layer.transform_kif([maps], True)[2]), dtype=np.float64)
        else:
            out = np.asarray(ops.convert_to_numpy(plain(ops.convert_to_tensor(finite, F64))), dtype=np.float64)
        out = out.reshape((1, *plain.compute_output_shape((1, *x.shape[1:]))[1:]))
        return np.where(out < -1e3, -np.inf, out)


def covering_kif(values, f):
    """The smallest (k, i, f) format holding every value in ``values`` (all on the ``2**-f`` grid)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    k = int(lo < 0)
    i = 0
    while hi > 2.0**i - 2.0**-f or lo < -k * 2.0**i:
        i += 1
    while i > -f - k + 1 and hi <= 2.0 ** (i - 1) - 2.0**-f and lo >= -k * 2.0 ** (i - 1):
        i -= 1
    return k, i, int(f)


def _act_name(act):
    return act if isinstance(act, str) else getattr(act, "__name__", "")


def _keras_base(layer):
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("keras.") and issubclass(cls, keras.layers.Layer) and cls is not keras.layers.Layer:
            return getattr(keras.layers, cls.__name__, cls)
    raise ProxyConversionError(f"Layer {layer.name!r} ({type(layer).__name__}) has no Keras base layer.")


def _check_traced(model):
    untraced = [
        layer.name for layer in walk_layers(model) if isinstance(layer, HLayerBase) and not layer.paq.is_traced()
    ]
    if untraced:
        shown = ", ".join(repr(n) for n in untraced[:5]) + (" ..." if len(untraced) > 5 else "")
        raise NotTracedError(
            f"to_proxy_model needs a calibrated model, but {len(untraced)} layer(s) have no calibration ({shown}): "
            "ranges left by training are not one. Call hgq_rewrite.trace_minmax(model, calibration_data) first."
        )


def _check_built(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_proxy_model expects a keras.Model, got {type(model).__name__}.")
    if not model.built or (isinstance(model, keras.Sequential) and model._functional is None):
        raise ProxyConversionError(f"Model {model.name!r} is not built: call it on data or build it first.")


def _build(model, aggressive, max_table_bits, name=None):
    """Run the proxy builder on a built, linked model; return (proxy, builder)."""
    builder = _ProxyBuilder(aggressive, max_table_bits)
    functional = model._functional if isinstance(model, keras.Sequential) else model
    inputs = []
    for t in functional.inputs:
        input_name = builder.name(t._keras_history[0].name)
        inputs.append(keras.Input(shape=tuple(t.shape[1:]), dtype=F64, name=input_name))
    outputs = builder.run(functional, inputs)
    proxy = keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=name or f"{model.name}_proxy",
    )
    return proxy, builder


# model -> (fingerprint, proxy) built by the last export_analysis, handed out once by to_proxy_model
_built_proxies = weakref.WeakKeyDictionary()


def _fingerprint(model, aggressive, max_table_bits):
    digest = hashlib.sha1(repr((model.name, bool(aggressive), int(max_table_bits))).encode())
    for w in model.weights:
        digest.update(np.ascontiguousarray(ops.convert_to_numpy(w)).tobytes())
    return digest.hexdigest()


def export_analysis(model, aggressive=True, max_table_bits=16):
    """What the exported firmware does with a traced model.

    Returns ``(formats, float32_inexact, proxy)``: ``formats`` is ``[(quantizer, (k, i, f)), ...]``, the
    format each HGQ activation quantizer gets in the firmware (arrays of shape ``(1, *features)``:
    the traced format, with no more fractional bits than the quantizer's input carries, since
    hls4ml drops the others before it rounds and saturates); ``float32_inexact`` names the layers
    whose sums may need more than float32's 24 significant bits. Raises
    :class:`ProxyConversionError` for a model that cannot be exported. ``proxy`` is the proxy
    built on the way (see :func:`keep_for_export`).
    """
    _check_built(model)
    link_model(model)
    proxy, builder = _build(model, aggressive, max_table_bits)
    return list(builder.formats.values()), list(builder.float32_inexact), proxy


def keep_for_export(model, proxy, aggressive=True, max_table_bits=16):
    """Hand ``proxy`` to the next ``to_proxy_model(model)`` call, if the model does not change before it."""
    _built_proxies[model] = (_fingerprint(model, aggressive, max_table_bits), proxy)


def traced_overflow_is_wrap(model):
    """True (WRAP) or False (SAT): the overflow the calibrated HGQ model emulates; None if not calibrated."""
    for layer in walk_layers(model):
        if isinstance(layer, HLayerBase) and layer.paq.is_traced():
            return not bool(ops.convert_to_numpy(layer.paq.saturate) > 0)
    return None


def to_proxy_model(model, aggressive=None, max_table_bits=16, name=None, overflow=None):
    """Rebuild a traced HGQ model as a float64 Keras model hls4ml converts bit-exactly.

    Args:
        model: HGQ model (Sequential or functional, nested models allowed) after ``trace_minmax``.
        aggressive: overflow mode of the quantizers: ``True`` -> WRAP (cheapest hardware), ``False`` -> SAT.
            ``None`` (default): the mode given to ``trace_minmax`` (WRAP unless told otherwise). Inside the
            traced ranges both give the same outputs.
        max_table_bits: largest input width (bits) of a lookup table made for a non-linear ``HActivation``.
        name: name of the proxy model (default ``<model name>_proxy``).
        overflow: ``"WRAP"`` or ``"SAT"``, the same choice as ``aggressive`` by name.

    The calibrated HGQ model computes exactly what the proxy computes (formats and overflow included)
    when ``aggressive`` is the mode given to ``trace_minmax``; otherwise this warns, and the model is
    left as it is (call ``trace_minmax(..., aggressive=...)`` to make it follow the other mode).

    Returns:
        A ``keras.Model`` of plain layers, :class:`FixedPointQuantizer` and :class:`UnaryLUT`, dtype float64.
        Save it with ``proxy.save("x.keras")``; loading needs only ``import hgq_rewrite``.

    Raises:
        NotTracedError: ``trace_minmax`` was not run since the last training step.
        ProxyConversionError: a layer cannot be exported; the message names it and the remedy.
    """
    _check_built(model)
    link_model(model)
    _check_traced(model)
    traced_wrap = traced_overflow_is_wrap(model)
    aggressive = wrap_from_arguments(overflow, aggressive, "to_proxy_model")
    aggressive = traced_wrap if aggressive is None else aggressive
    cached = _built_proxies.pop(model, None)
    if name is None and cached is not None and cached[0] == _fingerprint(model, aggressive, max_table_bits):
        return cached[1]  # built by trace_minmax from this very state
    proxy, builder = _build(model, aggressive, max_table_bits, name)
    differs = [paq.owner for paq, kif in builder.formats.values() if not paq.emulates(kif, saturate=not aggressive)]
    if differs:
        shown = ", ".join(repr(n) for n in differs[:5]) + (" ..." if len(differs) > 5 else "")
        warnings.warn(
            f"to_proxy_model: the HGQ model was calibrated for other firmware than this proxy ({shown}: "
            f"aggressive={traced_wrap} at trace_minmax, {aggressive} here), so the two differ on inputs outside the "
            f"calibrated ranges. Call trace_minmax(model, data, aggressive={aggressive}) to make the model follow."
        )
    return proxy

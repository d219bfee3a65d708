"""QONNX export of proxy models: standard ONNX ops plus QONNX ``Quant`` nodes.

qonnx 1.0's ``Quant`` takes one scalar bitwidth per tensor; the scale may be a tensor. A
per-element :class:`~hgq_rewrite.proxy.FixedPointQuantizer` (k, B, I) therefore becomes

* ``scale = 2**-f`` per element (``f = B - I``), zero point 0,
* one bitwidth ``Bq = kq + max(B - k)`` and ``signed = kq = max(k)`` over the live elements,
  so the ``Quant`` range covers every element,
* rounding: ``TRN`` -> ``FLOOR``; ``RND_CONV`` -> ``ROUND`` (half to even); ``RND`` (half up) ->
  an ``Add`` of half a step (``2**-(f+1)``) then ``FLOOR``,
* overflow (``exact_overflow=True``, the default): ``SAT`` / ``SAT_SYM`` -> ``Min``/``Max`` with
  per-element bounds before the ``Quant`` where an element's range is narrower than the
  ``Quant``'s; ``WRAP`` -> the modular wrap written with ``Mul``/``Floor``/``Sub`` on the integer
  code (``Quant`` only saturates), after which the ``Quant`` is an exact identity that declares
  the format. With ``exact_overflow=False`` these ops are left out (the "reduced" form): exact
  whenever no element leaves its own range; see docs/qonnx.md for what differs otherwise.

Tensors keep Keras' channels-last layout; ``Conv`` and pooling are wrapped in ``Transpose``
nodes. :class:`~hgq_rewrite.proxy.UnaryLUT` tables (``lut=``):

* ``"multithreshold"``: a monotonic table becomes QONNX's ``MultiThreshold`` (a staircase: one
  threshold per output step, at the half-way points between input codes, ``out_scale`` = +-the
  output step, ``out_bias`` = the table's value at the lowest input code); a non-monotonic table
  (gelu, ...) is refused, as is a table whose input is not guaranteed inside ``kif_in``'s range;
* ``"gather"``: ``Gather`` over the table indexed by the integer code (a standard ONNX op; qonnx's
  ``execute_onnx`` runs it, the hls4ml and FINN QONNX frontends do not read it);
* ``"auto"`` (default): ``"multithreshold"`` where it applies, ``"gather"`` elsewhere;
* ``"refuse"``: every table is refused.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import keras

from ..compat.keras_private import keras_history
from ..proxy.fixed_point_layer import FixedPointQuantizer
from ..proxy.softmax import FixedPointSoftmax
from ..proxy.unary_lut import UnaryLUT
from ._deps import require
from .source import as_proxy, call_order

QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
DTYPES = ("float32", "float64")
LUT_MODES = ("auto", "multithreshold", "gather", "refuse")
_LAYOUTS = {2: "NC", 3: "NWC", 4: "NHWC", 5: "NDHWC"}


class QONNXExportError(ValueError):
    """A proxy layer has no QONNX encoding; the message names the layer and the remedy."""


def quant_encoding(k, b, i, round_mode, overflow, exact_overflow=True):
    """The numbers a FixedPointQuantizer's QONNX encoding uses (numpy only; no onnx needed).

    Args:
        k, b, i: int arrays (sign bit, total bits, integer bits with sign), broadcast together.
        round_mode, overflow: the quantizer's RND and SAT modes.
        exact_overflow: include the element-wise overflow ops.

    Returns:
        dict with ``scale`` (2**-f), ``bitwidth``, ``signed``, ``rounding`` (Quant's mode),
        ``half`` (the RND offset or None), ``clip`` ((lo, hi) value bounds or None), ``wrap``
        ((K, N) code offset and span or None), ``mask`` (0/1 array for pruned elements or None),
        ``live`` (any element with B > 0).
    """
    k, b, i = (np.asarray(m, dtype=np.int64) for m in np.broadcast_arrays(k, b, i))
    live = b > 0
    f = np.where(live, b - i, 0)
    scale = np.ldexp(1.0, -f)
    if not live.any():
        return dict(live=False, scale=scale)
    kq = int(np.max(k[live]))
    bq = kq + int(np.max((b - k)[live]))
    if kq == 1 and bq == 1:
        bq = 2  # qonnx reads a signed 1-bit Quant as bipolar (+-1); a wider range changes nothing in range
    lo = np.where(live, -k * np.ldexp(1.0, np.maximum(b - 1, 0)), 0.0)
    hi = np.where(live, np.ldexp(1.0, b - k) - 1.0, 0.0)
    if overflow == "SAT_SYM":
        lo = np.where((k == 1) & (b > 1), -hi, lo)
    q_lo, q_hi = -kq * 2.0 ** (bq - 1), 2.0 ** (bq - kq) - 1.0
    narrower = bool(np.any(lo != q_lo) or np.any(hi != q_hi))
    enc = dict(live=True, scale=scale, bitwidth=bq, signed=kq, half=None, clip=None, wrap=None, mask=None)
    if overflow == "WRAP" and exact_overflow:
        enc["wrap"] = (np.where(live, k * np.ldexp(1.0, np.maximum(b - 1, 0)), 0.0), np.ldexp(1.0, np.where(live, b, 0)))
        enc["rounding"] = "ROUND"  # the code is already an integer in range: Quant is an identity
        enc["pre_round"] = round_mode
        return enc
    enc["rounding"] = "ROUND" if round_mode == "RND_CONV" else "FLOOR"
    if round_mode == "RND":
        enc["half"] = np.ldexp(1.0, -f - 1)
    if exact_overflow and narrower:
        enc["clip"] = (lo * scale, hi * scale)
    elif not live.all():
        enc["mask"] = live.astype(np.float64)
    return enc


def multithreshold_staircase(table, kif_in, kif_out):
    """The ``MultiThreshold`` parameters that reproduce a monotonic UnaryLUT table (numpy only).

    The table is put in input-value order. For a non-decreasing table with output step
    ``s = 2**-f_out``, level ``m`` (``1 .. (max - min) / s``) is reached at the first input code
    ``c_m`` whose value is ``>= table_min + m*s``; its threshold is ``(c_m - 1/2) * 2**-f_in``, so
    ``x >= threshold`` is ``floor(x*2**f_in + 1/2) >= c_m``: the proxy's round-half-up code, also
    for inputs between grid points. A jump of several steps repeats the threshold. Output:
    ``out_bias + out_scale * count`` with ``out_bias`` the value at the lowest code and
    ``out_scale = +s`` (non-decreasing) or ``-s`` (non-increasing).

    Returns:
        ``(thresholds, out_scale, out_bias)``: thresholds as a float64 ``(1, T)`` array.

    Raises:
        ValueError: the table is neither non-decreasing nor non-increasing (the message says where).
    """
    from ..proxy.unary_lut import lut_inputs

    table = np.asarray(table, dtype=np.float64).ravel()
    k_in, i_in, f_in = (int(v) for v in kif_in)
    f_out = int(kif_out[2])
    x = lut_inputs(kif_in)
    order = np.argsort(x, kind="stable")
    x, y = x[order], table[order]
    d = np.diff(y)
    if np.all(d >= 0):
        sign = 1.0
    elif np.all(d <= 0):
        sign = -1.0
    else:
        up, down = int(np.argmax(d > 0)), int(np.argmax(d < 0))
        raise ValueError(
            f"the table is not monotonic: it rises between inputs {x[up]:g} and {x[up + 1]:g} and falls between "
            f"{x[down]:g} and {x[down + 1]:g}"
        )
    step = 2.0**-f_out
    levels = np.rint(sign * (y - y[0]) / step).astype(np.int64)
    n = int(levels[-1])
    if n == 0:
        return np.zeros((1, 1)), 0.0, float(y[0])
    first = np.searchsorted(levels, np.arange(1, n + 1), side="left")
    thresholds = (x[first] - 2.0 ** (-f_in - 1)).reshape(1, n)
    return thresholds, sign * step, float(y[0])


def _lut_input_in_range(node, kif_in):
    """True when the UnaryLUT's input comes from a FixedPointQuantizer whose every element lies on
    ``kif_in``'s grid and inside its range (then MultiThreshold's saturation never shows)."""
    producer = keras_history(node.arguments.keras_tensors[0])[0]
    if not isinstance(producer, FixedPointQuantizer):
        return False
    k, b, i = (m.astype(np.int64) for m in producer.mask_kbi)
    live = b > 0
    if not live.any():
        return True
    k, b, i = k[live], b[live], i[live]
    f = b - i
    k_in, i_in, f_in = (int(v) for v in kif_in)
    lo = -k * np.ldexp(1.0, np.maximum(b - 1, 0) - f)
    hi = (np.ldexp(1.0, b - k) - 1.0) * np.ldexp(1.0, -f)
    if producer.overflow == "SAT_SYM":
        lo = np.where((k == 1) & (b > 1), -hi, lo)
    b_in = k_in + i_in + f_in
    lo_in = -k_in * 2.0 ** (b_in - 1 - f_in)
    hi_in = (2.0 ** (b_in - k_in) - 1.0) * 2.0**-f_in
    return bool(np.all(f <= f_in) and np.all(lo >= lo_in) and np.all(hi <= hi_in))


@dataclass
class _Graph:
    dtype: str
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    names: set = field(default_factory=set)

    def uname(self, base):
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in base)
        name, n = base, 1
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def const(self, value, name, dtype=None):
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype or self.dtype)
        if arr.size == 1 and dtype is None:
            arr = arr.reshape(())
        name = self.uname(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op, inputs, base, domain=None, **attrs):
        from onnx import helper

        out = self.uname(base)
        kwargs = {"domain": domain} if domain else {}
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.uname(f"{base}_{op}"), **kwargs, **attrs))
        return out


def _const_or_scalar(g, arr, name):
    arr = np.asarray(arr, dtype=np.float64)
    if np.unique(arr).size == 1:
        return g.const(arr.reshape(-1)[0], name)
    return g.const(arr, name)


def _emit_quant(g, x, enc, base, mask_shape):
    """The QONNX nodes of one quantizer encoding; returns the output name."""
    def full(a):
        return np.broadcast_to(np.asarray(a, dtype=np.float64), mask_shape)

    if not enc["live"]:
        return g.node("Mul", [x, g.const(0.0, f"{base}_zero")], base)
    t = x
    if enc.get("wrap") is not None:
        offset, span = enc["wrap"]
        u = g.node("Mul", [t, _const_or_scalar(g, full(1.0 / enc["scale"]), f"{base}_inv_scale")], f"{base}_code")
        if enc["pre_round"] == "RND":
            u = g.node("Floor", [g.node("Add", [u, g.const(0.5, f"{base}_half")], f"{base}_code_half")], f"{base}_rnd")
        elif enc["pre_round"] == "TRN":
            u = g.node("Floor", [u], f"{base}_trn")
        else:
            u = g.node("Round", [u], f"{base}_rnd_conv")
        shifted = g.node("Add", [u, _const_or_scalar(g, full(offset), f"{base}_wrap_offset")], f"{base}_shift")
        turns = g.node("Floor", [g.node("Mul", [shifted, _const_or_scalar(g, full(1.0 / span), f"{base}_inv_span")],
                                        f"{base}_turns_f")], f"{base}_turns")
        u = g.node("Sub", [u, g.node("Mul", [turns, _const_or_scalar(g, full(span), f"{base}_span")], f"{base}_wraps")],
                   f"{base}_wrapped")
        t = g.node("Mul", [u, _const_or_scalar(g, full(enc["scale"]), f"{base}_step")], f"{base}_value")
    else:
        if enc["half"] is not None:
            t = g.node("Add", [t, _const_or_scalar(g, full(enc["half"]), f"{base}_half_step")], f"{base}_plus_half")
        if enc["clip"] is not None:
            lo, hi = enc["clip"]
            t = g.node("Min", [t, _const_or_scalar(g, full(hi), f"{base}_max")], f"{base}_sat_hi")
            t = g.node("Max", [t, _const_or_scalar(g, full(lo), f"{base}_min")], f"{base}_sat_lo")
    y = g.node(
        "Quant",
        [t, _const_or_scalar(g, full(enc["scale"]), f"{base}_scale"), g.const(0.0, f"{base}_zeropt"),
         g.const(float(enc["bitwidth"]), f"{base}_bitwidth")],
        base, domain=QONNX_DOMAIN, signed=int(enc["signed"]), narrow=0, rounding_mode=enc["rounding"],
    )
    if enc.get("mask") is not None:
        y = g.node("Mul", [y, g.const(full(enc["mask"]), f"{base}_pruned")], f"{base}_masked")
    return y


def _to_channels_first(g, x, rank, base):
    return g.node("Transpose", [x], f"{base}_nchw", perm=[0, rank - 1, *range(1, rank - 1)])


def _to_channels_last(g, x, rank, base):
    return g.node("Transpose", [x], f"{base}_nhwc", perm=[0, *range(2, rank), 1])


def _pads(in_spatial, kernel, strides, padding):
    begins, ends = [], []
    for n, k, s in zip(in_spatial, kernel, strides):
        if padding == "same":
            o = -(-n // s)
            total = max((o - 1) * s + k - n, 0)
        else:
            total = 0
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _act_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    return act if isinstance(act, str) else getattr(act, "__name__", type(act).__name__)


class _Exporter:
    def __init__(self, dtype, exact_overflow, lut):
        self.g = _Graph(dtype)
        self.exact_overflow = exact_overflow
        self.lut = lut

    def activation(self, layer, x, base):
        name = _act_name(layer)
        if name == "linear":
            return x
        if name == "relu":
            return self.g.node("Relu", [x], f"{base}_relu")
        raise QONNXExportError(
            f"Layer {layer.name!r} ({type(layer).__name__}) uses the activation {name!r}, which has no exact QONNX "
            "encoding here. Remedy: build the proxy with hr.to_proxy_model (it tabulates it as a UnaryLUT)."
        )

    def layer(self, layer, node, args):
        g, base = self.g, layer.name
        x = args[0] if args else None
        in_shape = tuple(node.arguments.keras_tensors[0].shape)
        out_shape = tuple(node.outputs[0].shape)
        if isinstance(layer, FixedPointQuantizer):
            k, b, i = layer.mask_kbi
            mask_shape = (1, *in_shape[1:]) if k.shape != (1,) else ()
            enc = quant_encoding(k, b, i, layer.RND, layer.overflow, self.exact_overflow)
            return _emit_quant(g, x, enc, base, mask_shape or (1,))
        if isinstance(layer, UnaryLUT):
            return self.unary_lut(layer, node, x, base, len(in_shape))
        if isinstance(layer, keras.layers.Dense):
            kernel, *bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
            y = g.node("MatMul", [x, g.const(kernel, f"{base}_kernel")], f"{base}_matmul")
            if bias:
                y = g.node("Add", [y, g.const(bias[0], f"{base}_bias")], f"{base}_biased")
            return self.activation(layer, y, base)
        if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv1D,
                              keras.layers.DepthwiseConv2D)):
            return self.conv(layer, x, in_shape, base)
        if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.AveragePooling1D,
                              keras.layers.AveragePooling2D)):
            rank = len(in_shape)
            op = "MaxPool" if "Max" in type(layer).__name__ else "AveragePool"
            attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                         pads=_pads(in_shape[1:-1], layer.pool_size, layer.strides, layer.padding))
            if op == "AveragePool":
                attrs["count_include_pad"] = 0
            y = g.node(op, [_to_channels_first(g, x, rank, base)], f"{base}_{op.lower()}", **attrs)
            return _to_channels_last(g, y, rank, base)
        if isinstance(layer, (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D)):
            return g.node("ReduceMean", [x], base, axes=list(range(1, len(in_shape) - 1)),
                          keepdims=int(bool(layer.keepdims)))
        if isinstance(layer, keras.layers.Activation):
            return self.activation(layer, x, base)
        if isinstance(layer, keras.layers.ReLU) and layer.max_value is None and not layer.negative_slope \
                and not layer.threshold:
            return g.node("Relu", [x], base)
        if isinstance(layer, keras.layers.Add):
            y = x
            for j, other in enumerate(args[1:]):
                y = g.node("Add", [y, other], base if j == len(args) - 2 else f"{base}_{j}")
            return y
        if isinstance(layer, keras.layers.Concatenate):
            return g.node("Concat", args, base, axis=int(layer.axis) % len(out_shape))
        if isinstance(layer, keras.layers.Flatten):
            return g.node("Flatten", [x], base, axis=1)
        if isinstance(layer, keras.layers.Reshape):
            shape = g.const(np.asarray([0, *out_shape[1:]], dtype=np.int64), f"{base}_shape", dtype=np.int64)
            return g.node("Reshape", [x, shape], base)
        if isinstance(layer, keras.layers.Permute):
            return g.node("Transpose", [x], base, perm=[0, *layer.dims])
        if isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                              keras.layers.AlphaDropout)):
            return x
        if isinstance(layer, FixedPointSoftmax):
            raise QONNXExportError(
                f"Layer {layer.name!r} (FixedPointSoftmax): QONNX has no table softmax. Remedy: export the model "
                "without its softmax (argmax of the logits is unchanged) and apply it after, or export to hls4ml."
            )
        raise QONNXExportError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no QONNX encoding. Remedy: export the proxy made "
            "by hr.to_proxy_model, whose layers are listed in docs/qonnx.md."
        )

    def conv(self, layer, x, in_shape, base):
        g = self.g
        rank = len(in_shape)
        weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        kernel, bias = weights[0], (weights[1] if len(weights) > 1 else None)
        if any(d != 1 for d in layer.dilation_rate):
            raise QONNXExportError(f"Layer {layer.name!r}: dilated convolutions are not exported. Remedy: "
                                   "dilation_rate=1.")
        spatial = kernel.shape[:-2]
        channels = kernel.shape[-2]
        if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
            dm = kernel.shape[-1]
            w = np.moveaxis(kernel, (-2, -1), (0, 1)).reshape(channels * dm, 1, *spatial)
            group = channels
        else:
            w = np.moveaxis(kernel, (-1, -2), (0, 1))
            group = 1
        inputs = [_to_channels_first(g, x, rank, base), g.const(w, f"{base}_kernel")]
        if bias is not None:
            inputs.append(g.const(bias, f"{base}_bias"))
        y = g.node("Conv", inputs, f"{base}_conv", kernel_shape=list(spatial), strides=list(layer.strides),
                   pads=_pads(in_shape[1:-1], spatial, layer.strides, layer.padding), group=group,
                   dilations=[1] * len(spatial))
        y = _to_channels_last(g, y, rank, base)
        return self.activation(layer, y, base)

    def unary_lut(self, layer, node, x, base, rank):
        g = self.g
        table = np.asarray(keras.ops.convert_to_numpy(layer.table), dtype=np.float64)
        if self.lut in ("auto", "multithreshold"):
            reason = None
            try:
                staircase = multithreshold_staircase(table, layer.kif_in, layer.kif_out)
            except ValueError as e:
                reason = str(e)
            if reason is None and not _lut_input_in_range(node, layer.kif_in):
                reason = ("its input does not come from a FixedPointQuantizer inside the table's input format, so it "
                          "can leave the range, where the table wraps and MultiThreshold saturates")
            if reason is None:
                return self.multithreshold(layer, x, base, rank, *staircase)
            if self.lut == "multithreshold":
                raise QONNXExportError(
                    f"Layer {layer.name!r} (UnaryLUT, input format {layer.kif_in}) cannot be written as a QONNX "
                    f"MultiThreshold: {reason}. MultiThreshold only reproduces monotonic tables of an in-range input. "
                    "Remedy: to_qonnx(..., lut='gather') (an ONNX Gather over the table; executed by qonnx's "
                    "execute_onnx, not read by the hls4ml/FINN QONNX frontends), or lut='auto'."
                )
        if self.lut == "refuse":
            raise QONNXExportError(
                f"Layer {layer.name!r} (UnaryLUT, input format {layer.kif_in}) is a lookup table, and QONNX has no "
                "table operator. Remedy: to_qonnx(..., lut='gather') writes it as an ONNX Gather (executed by "
                "qonnx's execute_onnx, not read by the hls4ml/FINN QONNX frontends), or replace the activation "
                "by relu/linear before quantizing."
            )
        k, i, f = layer.kif_in
        code = g.node("Round", [g.node("Mul", [x, g.const(2.0**f, f"{base}_inv_step")], f"{base}_code_f")],
                      f"{base}_code_r")
        code = g.node("Cast", [code], f"{base}_code", to=7)  # INT64
        index = g.node("Mod", [code, g.const(np.int64(table.size), f"{base}_size", dtype=np.int64)],
                       f"{base}_index", fmod=0)
        y = g.node("Gather", [g.const(table, f"{base}_table"), index], f"{base}_lookup", axis=0)
        return self.table_format(layer, y, base)

    def multithreshold(self, layer, x, base, rank, thresholds, out_scale, out_bias):
        g = self.g
        ko, io, fo = layer.kif_out
        attrs = dict(out_dtype="FLOAT32" if g.dtype == "float32" else "FLOAT64", out_scale=float(out_scale),
                     out_bias=float(out_bias))
        if rank in _LAYOUTS:
            attrs["data_layout"] = _LAYOUTS[rank]
        y = g.node("MultiThreshold", [x, g.const(thresholds, f"{base}_thresholds")], f"{base}_staircase",
                   domain=QONNX_DOMAIN, **attrs)
        return self.table_format(layer, y, base)

    def table_format(self, layer, y, base):
        g = self.g
        ko, io, fo = layer.kif_out
        bits = ko + io + fo
        if bits <= 0:
            return y
        signed, width = ko, max(bits, 2) if ko else bits
        return g.node("Quant", [y, g.const(2.0**-fo, f"{base}_scale"), g.const(0.0, f"{base}_zeropt"),
                                g.const(float(width), f"{base}_bitwidth")],
                      base, domain=QONNX_DOMAIN, signed=int(signed), narrow=0, rounding_mode="ROUND")


def to_qonnx(model, path=None, *, exact_overflow=True, dtype="float32", batch_size=1, lut="auto",
             aggressive=None, name=None):
    """Write a QONNX model (standard ONNX ops + QONNX ``Quant``) that computes what the proxy computes.

    Args:
        model: a traced HGQ model (``hr.to_proxy_model`` is called) or a proxy model.
        path: ``.onnx`` file to write (``None``: only return the model).
        exact_overflow: add the element-wise ops that reproduce each element's own WRAP/SAT overflow
            (exact for any input); ``False`` writes the reduced form (one ``Quant`` per quantizer,
            plus the RND half-step ``Add``), exact as long as no element leaves its own range.
        dtype: ``"float32"`` (what QONNX tools expect) or ``"float64"`` (exact for wider sums;
            onnxruntime has no float64 ``Conv``/``AveragePool``, so only for models without them).
        batch_size: the fixed batch dimension of inputs and outputs (qonnx's ``execute_onnx`` needs
            fixed shapes).
        lut: how a UnaryLUT is written: ``"multithreshold"`` (QONNX ``MultiThreshold``; a non-monotonic
            table, or one whose input is not a quantizer inside its input format, is refused),
            ``"gather"`` (ONNX ``Gather`` over the table), ``"auto"`` (multithreshold where it applies,
            else gather) or ``"refuse"``.
        aggressive: passed to ``to_proxy_model`` for an HGQ model (``None``: the traced mode).
        name: graph name (default: the proxy's name).

    Returns:
        ``qonnx.core.modelwrapper.ModelWrapper`` with shapes inferred.

    Raises:
        MissingExtraError: onnx/qonnx not installed (``pip install 'hgq_rewrite[qonnx]'``).
        QONNXExportError: a layer has no QONNX encoding (the message names it).
    """
    onnx = require("qonnx", "onnx")
    ModelWrapper = require("qonnx", "qonnx.core.modelwrapper").ModelWrapper
    InferShapes = require("qonnx", "qonnx.transformation.infer_shapes").InferShapes
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    if lut not in LUT_MODES:
        raise ValueError(f"lut must be one of {LUT_MODES}, got {lut!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    proxy = as_proxy(model, aggressive)
    functional, order = call_order(proxy)
    ex = _Exporter(dtype, exact_overflow, lut)
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    names, graph_inputs = {}, []
    for t in functional.inputs:
        in_name = ex.g.uname(keras_history(t)[0].name)
        names[id(t)] = in_name
        graph_inputs.append(onnx.helper.make_tensor_value_info(in_name, elem, [int(batch_size), *t.shape[1:]]))
    for layer, node in order:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            raise QONNXExportError(f"Layer {layer.name!r} is a nested model. Remedy: export the proxy made by "
                                   "hr.to_proxy_model (it flattens nested models).")
        args = [names[id(t)] for t in node.arguments.keras_tensors]
        out = ex.layer(layer, node, args)
        names[id(node.outputs[0])] = out
    graph_outputs, used = [], set()
    for t in functional.outputs:
        out = names[id(t)]
        if out in used or out in {v.name for v in graph_inputs}:
            out = ex.g.node("Identity", [out], f"{out}_out")
        used.add(out)
        graph_outputs.append(onnx.helper.make_tensor_value_info(out, elem, [int(batch_size), *t.shape[1:]]))
    graph = onnx.helper.make_graph(ex.g.nodes, name or proxy.name, graph_inputs, graph_outputs,
                                   initializer=ex.g.inits)
    onnx_model = onnx.helper.make_model(
        graph, producer_name="hgq_rewrite",
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET), onnx.helper.make_opsetid(QONNX_DOMAIN, 1)],
    )
    wrapper = ModelWrapper(onnx_model).transform(InferShapes())
    if path is not None:
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp"
        wrapper.save(tmp)
        os.replace(tmp, path)
    return wrapper


@dataclass
class QONNXCheckReport:
    """Result of :func:`check_qonnx`."""

    n_samples: int
    n_mismatching: int
    mismatching_samples: np.ndarray
    max_abs_diff: float
    dtype: str
    exact_overflow: bool
    n_nodes: int
    op_counts: dict
    proxy_output: np.ndarray = field(repr=False)
    qonnx_output: np.ndarray = field(repr=False)

    @property
    def ok(self):
        return self.n_mismatching == 0

    def __str__(self):
        return (f"QONNX ({self.dtype}, exact_overflow={self.exact_overflow}, {self.n_nodes} nodes): "
                f"{self.n_mismatching}/{self.n_samples} samples mismatch (max |diff| {self.max_abs_diff:g})")


def check_qonnx(model, x, *, exact_overflow=True, dtype="float32", lut="auto", aggressive=None):
    """Export to QONNX with the batch size of ``x``, run qonnx's ``execute_onnx`` and compare with the proxy.

    The proxy is run (``predict_float64``) on ``x`` cast to ``dtype`` first, which is what the
    QONNX graph sees. Returns a :class:`QONNXCheckReport`.
    """
    execute_onnx = require("qonnx", "qonnx.core.onnx_exec").execute_onnx
    from ..proxy.bit_exact import compare_samples, flat_outputs, predict_float64, proxy_inputs

    proxy = as_proxy(model, aggressive)
    xs, n = proxy_inputs(proxy, x, "check_qonnx")
    xs = [v.astype(dtype) for v in xs]
    wrapper = to_qonnx(proxy, exact_overflow=exact_overflow, dtype=dtype, batch_size=n, lut=lut)
    feed = {vi.name: v for vi, v in zip(wrapper.graph.input, xs)}
    result = execute_onnx(wrapper, feed)
    y_q = [result[vi.name] for vi in wrapper.graph.output]
    y_p = predict_float64(proxy, [v.astype(np.float64) for v in xs] if len(xs) > 1 else xs[0].astype(np.float64))
    a = flat_outputs(y_p, n)
    b = flat_outputs(y_q if len(y_q) > 1 else y_q[0], n)
    bad, diff = compare_samples(a, b)
    ops_ = {}
    for nd in wrapper.graph.node:
        ops_[nd.op_type] = ops_.get(nd.op_type, 0) + 1
    return QONNXCheckReport(
        n_samples=n, n_mismatching=int(bad.size), mismatching_samples=bad,
        max_abs_diff=diff, dtype=dtype, exact_overflow=exact_overflow,
        n_nodes=len(wrapper.graph.node), op_counts=ops_, proxy_output=a, qonnx_output=b,
    )

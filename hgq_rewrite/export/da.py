"""da4ml (distributed arithmetic): resource estimates, da4ml's own simulation, Verilog, and the hls4ml strategy.

Two routes use da4ml (optional extra ``[da]``):

* **hls4ml** with ``Strategy='distributed_arithmetic'`` (ReuseFactor 1): every Dense/Conv becomes an
  adder graph inside the usual hls4ml C++ project (:func:`da_hls_config`; ``cli export --strategy da``).
* **da4ml's own tracer**: :func:`trace_proxy` replays the proxy on da4ml's symbolic fixed-point
  variables; :func:`da4ml.trace.comb_trace` turns that into a combinational-logic program with a
  cost model (LUTs), a latency, a C++ simulator (``.predict``) and a Verilog writer.

The traced program starts *after* each model input's quantizer: the firmware's input port has that
quantizer's format (as in hls4ml, where the first quantizer is fused into the input type). Use
:func:`quantize_inputs` to put float data on it.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import keras

from ..proxy.fixed_point_layer import FixedPointQuantizer
from ..proxy.unary_lut import UnaryLUT
from ._deps import require
from .source import as_proxy, call_order

DEFAULT_HWCONF = (1, -1, -1)  # da4ml's HWConfig(adder_size, carry_size, latency_cutoff): its default cost model


class DAExportError(ValueError):
    """A proxy layer cannot be traced by da4ml; the message names the layer and the remedy."""


def da_hls_config(precision="fixed<32,16>"):
    """hls4ml config selecting da4ml for every Dense/Conv (the default precision is ignored by the bit-exact flow)."""
    return {"Model": {"Strategy": "distributed_arithmetic", "ReuseFactor": 1, "Precision": precision}}


# ---------------------------------------------------------------------------------------------------------
# Replaying the proxy on da4ml variables


def _flat_index_patches(spatial, kernel, strides, padding):
    """Index of every (output position, kernel offset) into the flattened spatial input; -1 for padding."""
    pads, outs = [], []
    for n, k, s in zip(spatial, kernel, strides):
        if padding == "same":
            o = -(-n // s)
            total = max((o - 1) * s + k - n, 0)
            pads.append(total // 2)
        else:
            o = (n - k) // s + 1
            pads.append(0)
        outs.append(o)
    idx = np.arange(int(np.prod(spatial))).reshape(spatial)
    grids = []
    for d, (o, k, s, p) in enumerate(zip(outs, kernel, strides, pads)):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] - p  # (o, k)
        grids.append(pos)
    # broadcast to (*outs, *kernel)
    nd = len(spatial)
    coords, valid = [], np.ones((*outs, *kernel), dtype=bool)
    for d, pos in enumerate(grids):
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = pos.shape
        c = np.broadcast_to(pos.reshape(shape), (*outs, *kernel))
        valid &= (c >= 0) & (c < spatial[d])
        coords.append(np.clip(c, 0, spatial[d] - 1))
    flat = idx[tuple(coords)]
    return np.where(valid, flat, -1), tuple(outs)


def _patches(x, kernel, strides, padding, pad_value=0.0):
    """(*spatial, C) variables -> (*out, *kernel, C) with ``pad_value`` outside the input."""
    from da4ml.trace import FixedVariableArray

    spatial, channels = x.shape[:-1], x.shape[-1]
    index, outs = _flat_index_patches(spatial, kernel, strides, padding)
    raw = np.asarray(x._vars).reshape(-1, channels)
    picked = raw[np.maximum(index, 0)]  # (*out, *kernel, C)
    if (index < 0).any():
        picked = picked.copy()
        picked[index < 0] = pad_value
    return FixedVariableArray(picked, x.solver_options, hwconf=x.hwconf), outs


def _quantize(x, layer):
    """FixedPointQuantizer on a FixedVariableArray (per element; SAT_SYM on a signed 1-bit type saturates like SAT)."""
    from da4ml.trace import FixedVariableArray

    if layer.RND == "RND_CONV":
        raise DAExportError(
            f"Layer {layer.name!r} rounds with RND_CONV (ties to even), which da4ml 0.6 does not implement. "
            "Remedy: use RND or TRN rounding (config 'rounding') for the da4ml route; hls4ml's Latency strategy "
            "handles RND_CONV."
        )
    k, i, f = (np.broadcast_to(m.reshape(-1) if m.shape == (1,) else m[0], x.shape) for m in layer.kif)
    out = np.empty(x.shape, dtype=object)
    raw = np.asarray(x._vars)
    for pos in np.ndindex(*x.shape):
        kk, ii, ff = int(k[pos]), int(i[pos]), int(f[pos])
        if kk + ii + ff <= 0:
            out[pos] = 0.0
            continue
        mode = "SAT" if (layer.overflow == "SAT_SYM" and kk == 1 and kk + ii + ff == 1) else layer.overflow
        out[pos] = raw[pos].quantize(k=kk, i=ii, f=ff, overflow_mode=mode, round_mode=layer.RND)
    return FixedVariableArray(out, x.solver_options, hwconf=x.hwconf)


def _relu(x):
    return x.relu()


def _activation(layer, x):
    act = getattr(layer, "activation", None)
    name = act if isinstance(act, str) else getattr(act, "__name__", "linear")
    if name in (None, "linear"):
        return x
    if name == "relu":
        return _relu(x)
    raise DAExportError(f"Layer {layer.name!r}: activation {name!r} has no da4ml rule here. Remedy: build the proxy "
                        "with hr.to_proxy_model (it tabulates activations as UnaryLUT).")


def _weights(layer):
    return [np.asarray(keras.ops.convert_to_numpy(w), dtype=np.float64) for w in layer.weights]


def _conv(layer, x):
    if any(d != 1 for d in layer.dilation_rate):
        raise DAExportError(f"Layer {layer.name!r}: dilated convolutions are not traced. Remedy: dilation_rate=1.")
    kernel, *bias = _weights(layer)
    ks = kernel.shape[:-2]
    p, outs = _patches(x, ks, layer.strides, layer.padding)
    c = x.shape[-1]
    n_k = int(np.prod(ks))
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        dm = kernel.shape[-1]
        p = p.reshape(*outs, n_k, c)
        w = kernel.reshape(n_k, c, dm)
        parts = [p[..., :, ch] @ w[:, ch, :] for ch in range(c)]  # (*out, dm) each
        y = np.stack(parts, axis=-2).reshape(*outs, c * dm)
    else:
        y = p.reshape(*outs, n_k * c) @ kernel.reshape(n_k * c, -1)
    if bias:
        y = y + bias[0]
    return _activation(layer, y)


def _pool(layer, x):
    name = type(layer).__name__
    if "Global" in name:
        axes = tuple(range(x.ndim - 1))
        y = np.mean(x, axis=axes, keepdims=bool(layer.keepdims)) if "Average" in name else np.amax(x, axis=axes)
        return y
    p, outs = _patches(x, layer.pool_size, layer.strides, layer.padding,
                       pad_value=0.0 if "Average" in name else None)
    if (p.shape and "Max" in name and any(v is None for v in np.asarray(p._vars).ravel())):
        raise DAExportError(f"Layer {layer.name!r}: max pooling with padding='same' is not traced. Remedy: 'valid'.")
    nd = len(outs)
    axes = tuple(range(nd, 2 * nd))
    if "Max" in name:
        return np.amax(p, axis=axes)
    if layer.padding == "same":
        raise DAExportError(f"Layer {layer.name!r}: average pooling with padding='same' has a position-dependent "
                            "divisor. Remedy: padding='valid'.")
    return np.sum(p, axis=axes) * (1.0 / int(np.prod(layer.pool_size)))


def _unary_lut(layer, x):
    k, i, f = layer.kif_in
    table = np.asarray(keras.ops.convert_to_numpy(layer.table), dtype=np.float64)
    size = table.size

    def lookup(values):
        codes = np.floor(np.asarray(values, dtype=np.float64) * 2.0**f + 0.5).astype(np.int64)
        return table[np.mod(codes, size)]

    ko, io, fo = layer.kif_out
    return x.apply(lookup).quantize(k=ko, i=io, f=fo, overflow_mode="WRAP", round_mode="TRN")


def _apply(layer, args):
    x = args[0]
    if isinstance(layer, FixedPointQuantizer):
        return _quantize(x, layer)
    if isinstance(layer, UnaryLUT):
        return _unary_lut(layer, x)
    if isinstance(layer, keras.layers.Dense):
        kernel, *bias = _weights(layer)
        y = x @ kernel
        if bias:
            y = y + bias[0]
        return _activation(layer, y)
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv1D,
                          keras.layers.DepthwiseConv2D)):
        return _conv(layer, x)
    if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.AveragePooling1D,
                          keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling1D,
                          keras.layers.GlobalAveragePooling2D)):
        return _pool(layer, x)
    if isinstance(layer, keras.layers.Activation):
        return _activation(layer, x)
    if isinstance(layer, keras.layers.Add):
        y = args[0]
        for other in args[1:]:
            y = y + other
        return y
    if isinstance(layer, keras.layers.Concatenate):
        axis = int(layer.axis)
        return np.concatenate(args, axis=axis - 1 if axis > 0 else axis)
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        return x.reshape(*layer.compute_output_shape((1, *x.shape))[1:])
    if isinstance(layer, keras.layers.Permute):
        return x.transpose(tuple(d - 1 for d in layer.dims))
    raise DAExportError(f"Layer {layer.name!r} ({type(layer).__name__}) has no da4ml rule. Remedy: export the proxy "
                        "made by hr.to_proxy_model; its layer kinds are listed in docs/da4ml.md.")


@dataclass
class DATrace:
    """The proxy replayed on da4ml variables (see :func:`trace_proxy`)."""

    proxy: keras.Model
    input_quantizers: list
    inputs: list
    outputs: list
    layers: list  # (name, class name, input arrays, output array)


def trace_proxy(model, hwconf=DEFAULT_HWCONF, solver_options=None, aggressive=None):
    """Replay a proxy (or a traced HGQ model's proxy) on da4ml's symbolic fixed-point variables.

    Every model input must be read by a :class:`FixedPointQuantizer` first; its output format is
    the traced program's input port. Returns a :class:`DATrace`.
    """
    trace_mod = require("da", "da4ml.trace")
    proxy = as_proxy(model, aggressive)
    functional, order = call_order(proxy)
    hw = trace_mod.HWConfig(*hwconf)
    tensors, input_quantizers, inputs = {}, [], []
    skip = set()
    for t in functional.inputs:
        consumers = [(layer, node) for layer, node in order
                     if any(a is t for a in node.arguments.keras_tensors)]
        if len(consumers) != 1 or not isinstance(consumers[0][0], FixedPointQuantizer):
            raise DAExportError(f"Input {t.name!r} must be read by exactly one FixedPointQuantizer (the input port's "
                                "format). Remedy: export a proxy made by hr.to_proxy_model.")
        q_layer, q_node = consumers[0]
        k, i, f = (np.broadcast_to(m.reshape(-1) if m.shape == (1,) else m[0], tuple(t.shape[1:])) for m in q_layer.kif)
        arr = trace_mod.FixedVariableArray.from_kif(k, i, f, hw, 0.0, solver_options)
        tensors[id(q_node.outputs[0])] = arr
        input_quantizers.append(q_layer)
        inputs.append(arr)
        skip.add(id(q_node))
    layers = []
    for layer, node in order:
        if isinstance(layer, keras.layers.InputLayer) or id(node) in skip:
            continue
        if isinstance(layer, keras.Model):
            raise DAExportError(f"Layer {layer.name!r} is a nested model. Remedy: export the proxy made by "
                                "hr.to_proxy_model (it flattens nested models).")
        args = [tensors[id(a)] for a in node.arguments.keras_tensors]
        out = _apply(layer, args)
        if isinstance(layer, (keras.layers.Dropout,)):
            out = args[0]
        tensors[id(node.outputs[0])] = out
        layers.append((layer.name, type(layer).__name__, args, out))
    outputs = [tensors[id(t)] for t in functional.outputs]
    return DATrace(proxy, input_quantizers, inputs, outputs, layers)


def _flat_vars(arrays):
    out = []
    for a in arrays:
        raw = a._vars if hasattr(a, "_vars") else np.asarray(a, dtype=object)
        out.extend(np.asarray(raw).ravel().tolist())
    return out


def comb_logic(trace):
    """da4ml ``CombLogic`` of a :class:`DATrace` (all inputs -> all outputs, flattened in order)."""
    from da4ml.trace import comb_trace

    return comb_trace(_flat_vars(trace.inputs), _flat_vars(trace.outputs), keep_dead_inputs=True)


def adder_depth(comb):
    """Longest chain of additions (adders and constant additions) from an input to an output of ``comb``."""
    depth = np.zeros(len(comb.ops), dtype=np.int64)
    for n, op in enumerate(comb.ops):
        if op.opcode == -1 or op.opcode == 5:
            depth[n] = 0
        elif op.opcode in (0, 1):
            depth[n] = 1 + max(depth[op.id0], depth[op.id1])
        elif op.opcode == 4:
            depth[n] = 1 + depth[op.id0]
        elif op.opcode in (6, -6, 10):
            depth[n] = 1 + max(depth[op.id0], depth[op.id1])
        else:
            depth[n] = depth[op.id0] if op.id0 >= 0 else 0
    outs = [depth[i] for i in comb.out_idxs if i >= 0]
    return int(max(outs)) if outs else 0


@dataclass
class ResourceEstimate:
    """da4ml's cost-model estimate of a model (see :func:`estimate_resources`)."""

    layers: list  # dicts: name, class_name, luts, adder_depth (None if unknown), latency
    luts: float
    adder_depth: int
    latency: float
    comb: object = field(repr=False, default=None)
    trace: object = field(repr=False, default=None)

    def as_dict(self):
        return {"luts": self.luts, "adder_depth": self.adder_depth, "latency": self.latency, "layers": self.layers}

    def __str__(self):
        lines = [f"{'layer':28s} {'class':22s} {'LUTs':>10s} {'adders':>7s} {'latency':>8s}"]
        for r in self.layers:
            lines.append(f"{r['name'][:28]:28s} {r['class_name'][:22]:22s} {r['luts']:10.0f} {('-' if r['adder_depth'] is None else r['adder_depth']):>7} "
                         f"{r['latency']:8.1f}")
        lines.append(f"{'total':51s} {self.luts:10.0f} {self.adder_depth:7d} {self.latency:8.1f}")
        return "\n".join(lines)


def estimate_resources(model, *, hwconf=DEFAULT_HWCONF, solver_options=None, aggressive=None):
    """Per-layer and total LUTs, adder depth and latency from da4ml's cost model (no vendor tool).

    Args:
        model: a traced HGQ model (its proxy is built with ``to_proxy_model``) or a proxy model.
        hwconf: da4ml ``HWConfig`` (adder_size, carry_size, latency_cutoff); the default is da4ml's.
        solver_options: passed to da4ml's constant-matrix solver.
        aggressive: passed to ``to_proxy_model`` for an HGQ model.

    Returns:
        :class:`ResourceEstimate`: ``.luts`` (total), ``.adder_depth``, ``.latency`` (da4ml's
        latency model, max over outputs) and ``.layers`` (one dict per proxy layer). Requires the
        ``[da]`` extra.
    """
    from da4ml.trace import comb_trace

    from da4ml.trace.tracer import gather_variables

    trace = trace_proxy(model, hwconf=hwconf, solver_options=solver_options, aggressive=aggressive)
    ports = _flat_vars(trace.inputs)
    port_ids = {v.id for v in ports}

    def cost_upto(targets):
        targets = [v for v in targets if hasattr(v, "id")]
        return sum(float(v.cost) for v in gather_variables(ports, targets)[0] if v.id not in port_ids)

    rows = []
    for name, cls, args, out in trace.layers:
        ins, outs = [v for v in _flat_vars(args) if hasattr(v, "id")], [v for v in _flat_vars([out]) if hasattr(v, "id")]
        # the variables this layer adds: needed for its outputs but not for its inputs (shared ones count once)
        luts = cost_upto(ins + outs) - cost_upto(ins)
        lat = max((float(v.latency) for v in outs), default=0.0) - max((float(v.latency) for v in ins), default=0.0)
        depth = None
        try:
            depth = adder_depth(comb_trace([v for v in ins if v._factor > 0 and v.opr != "const"], outs,
                                           keep_dead_inputs=True))
        except Exception:  # inputs da4ml cannot take as ports (lazily negated variables): depth unknown
            pass
        rows.append(dict(name=name, class_name=cls, luts=float(luts), adder_depth=depth, latency=max(lat, 0.0)))
    comb = comb_logic(trace)
    total = comb.cost
    return ResourceEstimate(rows, float(total), adder_depth(comb), float(comb.latency[1]), comb, trace)


# ---------------------------------------------------------------------------------------------------------
# Simulation and Verilog


def quantize_inputs(trace, x):
    """Apply each input's quantizer (the proxy's first layer on that input) to float data; returns float64 arrays."""
    xs = x if isinstance(x, (list, tuple)) else [x]
    out = []
    for q, v in zip(trace.input_quantizers, xs):
        out.append(np.asarray(keras.ops.convert_to_numpy(q(keras.ops.convert_to_tensor(np.asarray(v, np.float64),
                                                                                           "float64"))), np.float64))
    return out


@dataclass
class DACheckReport:
    """Result of :func:`check_da`: da4ml's own simulator against the proxy."""

    n_samples: int
    n_mismatching: int
    mismatching_samples: np.ndarray
    max_abs_diff: float
    luts: float
    proxy_output: np.ndarray = field(repr=False)
    da_output: np.ndarray = field(repr=False)

    @property
    def ok(self):
        return self.n_mismatching == 0

    def __str__(self):
        return (f"da4ml ({self.luts:.0f} LUTs): {self.n_mismatching}/{self.n_samples} samples mismatch "
                f"(max |diff| {self.max_abs_diff:g})")


def check_da(model, x, *, hwconf=DEFAULT_HWCONF, solver_options=None, aggressive=None, comb=None, trace=None):
    """Run da4ml's C++ simulator of the traced program (``CombLogic.predict``) and compare with the proxy."""
    from ..proxy.bit_exact import compare_samples, flat_outputs, predict_float64, proxy_inputs

    if trace is None:
        trace = trace_proxy(model, hwconf=hwconf, solver_options=solver_options, aggressive=aggressive)
    comb = comb if comb is not None else comb_logic(trace)
    xs, n = proxy_inputs(trace.proxy, x, "check_da")
    q = quantize_inputs(trace, xs)
    data = np.concatenate([v.reshape(n, -1) for v in q], axis=1)
    y_da = np.asarray(comb.predict(data), dtype=np.float64).reshape(n, -1)
    y_p = flat_outputs(predict_float64(trace.proxy, xs[0] if len(xs) == 1 else xs), n)
    bad, diff = compare_samples(y_p, y_da)
    return DACheckReport(n, int(bad.size), bad, diff, float(comb.cost), y_p, y_da)


def write_verilog(model, out_dir, *, prj_name="hgq_rewrite_da", latency_cutoff=-1, hwconf=DEFAULT_HWCONF,
                  solver_options=None, aggressive=None, **rtl_kwargs):
    """Write da4ml's Verilog project for the model (combinational, or pipelined with ``latency_cutoff > 0``).

    Returns ``(rtl_model, comb)``. The port carries the inputs after their input quantizers, flattened.
    """
    rtl = require("da", "da4ml.codegen")
    trace = trace_proxy(model, hwconf=hwconf, solver_options=solver_options, aggressive=aggressive)
    comb = comb_logic(trace)
    os.makedirs(out_dir, exist_ok=True)
    model_rtl = rtl.RTLModel(comb, prj_name, out_dir, flavor="verilog", latency_cutoff=latency_cutoff, **rtl_kwargs)
    model_rtl.write()
    return model_rtl, comb

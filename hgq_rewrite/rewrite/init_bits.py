"""Data-driven initial bitwidths: start fine-tuning near the budget, not at a fixed ``init_bw``.

A model rewritten from a trained float model starts with every activation at ``init_bw``
fractional bits and every weight at ``init_bw`` significant bits, whatever the layer needs.
Training can only take bits down by about ``learning_rate`` per step (see `bitwidth_step`), so
the run spends its epochs walking down from that start. `init_bits` instead sets every
quantizer's initial fractional bits from the float model's actual ranges and the calibration
data: the fewest bits for which the model's output stays within ``tolerance`` of the float output.

The policy, per quantizer (the others held at full precision while it is searched):

- activations: one fractional-bit count ``f`` for the whole tensor (an absolute step, so elements
  with a small range get few bits and always-zero elements none), searched relative to the
  tensor's largest magnitude;
- kernels: per weight, ``f = g + i_in - e_col``: an absolute step per output column, scaled by the
  magnitude ``2**i_in`` of the input channel the weight multiplies (weights of inputs that are
  always zero are pruned), relative to the column's largest contribution ``2**e_col``; ``g`` is
  searched;
- the searched offset is the smallest for which the relative RMS error of the model output
  (``rms(y_q - y) / std(y)``, ``y`` the full-precision output) stays at or below
  ``tolerance / sqrt(number of quantizers searched)``, so the errors add up to about ``tolerance``.

Quantizers with ``trainable=False`` keep their configured bits, and ``tolerance`` may be a dict
``{layer name: tolerance or None}`` (``None``: keep that layer's configured ``init_bw``; the key
``"*"`` sets the default), so a layer can be left out or given its own tolerance.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from ..inputs import model_inputs
from ..layers.kernel_base import HKernelLayer
from ..layers.links import link_model
from ..quantizers.exact_bits import TINY
from ..trace import h_layers

DEFAULT_TOLERANCE = 0.03
_FULL = 23.0  # fractional bits that stand for full precision


def _np(v):
    return np.asarray(ops.convert_to_numpy(v), dtype=np.float64)


class _Slot:
    """One quantizer to initialise: how its fbw is built from a searched offset."""

    def __init__(self, layer, quantizer, role, tolerance):
        self.layer, self.q, self.role, self.tolerance = layer, quantizer, role, tolerance
        self.base = None  # fbw = base + offset
        self.offset = None

    @property
    def name(self):
        return f"{self.layer.name}.{'kq' if self.role == 'kernel' else 'paq'}"

    def set(self, offset):
        lo, hi = self.q.config["bw_clip"]
        self.q.fbw.assign(np.clip(np.round(self.base + offset), lo, hi).astype("float32").reshape(self.q.bw_shape))

    def full(self):
        lo, hi = self.q.config["bw_clip"]
        self.q.fbw.assign(np.full(self.q.bw_shape, min(_FULL, hi), dtype="float32"))


def _resolve_tolerance(tolerance, layer):
    if isinstance(tolerance, dict):
        value = tolerance.get(layer.name, tolerance.get("*", DEFAULT_TOLERANCE))
    else:
        value = tolerance
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"init_bits: tolerance for layer {layer.name!r} must be a number > 0 or None, got {value!r}.")
    return float(value)


def _kernel_base(layer):
    """``i_in - e_col`` for every weight of ``layer``'s (folded) kernel (see module docstring)."""
    kernel, _ = layer.folded_kernel_bias()
    w = np.abs(_np(kernel))
    (k_in, i_in, f_in), *_ = layer.input_kif_maps(exact=False)
    i_in = _np(i_in)
    channels = w.shape[-2]
    # integer bits of each input channel: the largest over every other axis
    i_ch = i_in.reshape(-1, i_in.shape[-1]).max(axis=0) if i_in.shape[-1] == channels else None
    if i_ch is None:  # unusual layout: no per-channel input scale
        i_ch = np.zeros(channels)
    i_ch = np.where(i_ch < -40, -1e3, i_ch)  # always-zero input channel: its weights are pruned
    shape = [1] * w.ndim
    shape[-2] = channels
    i_w = i_ch.reshape(shape)
    contrib = w * np.power(2.0, np.maximum(i_w, -60))
    col_axes = tuple(range(w.ndim - 1))
    if w.ndim > 2:  # depthwise: the output channel is (input channel, multiplier)
        col_axes = tuple(range(w.ndim - 2))
    top = contrib.max(axis=col_axes, keepdims=True)
    e_col = np.where(top > 0, np.floor(np.log2(np.maximum(top, TINY))), 0.0)
    return np.broadcast_to(i_w - e_col, w.shape) if layer.kq.axes == () else None


def _activation_base(q):
    lo, hi = _np(q.min), _np(q.max)
    mag = np.max(np.maximum(np.abs(np.where(np.isfinite(lo), lo, 0)), np.abs(np.where(np.isfinite(hi), hi, 0))))
    e = math.floor(math.log2(mag)) if mag > 0 else 0
    return np.full(q.bw_shape, -float(e))


def init_bits(model, data, tolerance=DEFAULT_TOLERANCE, *, max_samples=2048, batch_size=2048, verbose=False):
    """Set the initial fractional bits of every quantizer of ``model`` from calibration data.

    Args:
        model: an HGQ model (from `quantize`, or built by hand) holding trained weights.
        data: calibration inputs (array, or list of arrays for several inputs); the first
            ``max_samples`` samples are used.
        tolerance: allowed relative RMS error of the model output caused by quantization
            (float > 0), or a dict ``{layer name: float or None, "*": default}``; None keeps a
            layer's configured bits.
        max_samples: at most this many calibration samples.
        batch_size: batch size of the forward passes.
        verbose: print one line per quantizer.

    Returns:
        A dict: ``{"error": relative output error with every quantizer initialised,
        "quantizers": {name: {"role", "offset", "error", "mean_bits" (kernels) or "f" (activations)}}}``.
    """
    arrays = model_inputs(model, data, "calibration data", "init_bits", numbered=True, float32=True)
    arrays = [a[:max_samples].astype("float32") for a in arrays]
    feed = arrays if len(arrays) > 1 else arrays[0]
    link_model(model)
    layers = h_layers(model)
    if not layers:
        raise ValueError(f"init_bits: model {model.name!r} has no HGQ layers.")
    slots = []
    for layer in layers:
        tol = _resolve_tolerance(tolerance, layer)
        if tol is None:
            continue
        if layer.paq.config["trainable"]:
            slots.append(_Slot(layer, layer.paq, "activation", tol))
        if isinstance(layer, HKernelLayer) and layer.kq.config["trainable"] and layer.kq.axes == ():
            slots.append(_Slot(layer, layer.kq, "kernel", tol))
    saved = {id(s.q): _np(s.q.fbw) for s in slots}

    def predict():
        outs = model.predict(feed, batch_size=batch_size, verbose=0)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return np.concatenate([np.asarray(o, dtype=np.float64).reshape(len(arrays[0]), -1) for o in outs], axis=1)

    try:
        for s in slots:
            s.full()
        # ranges at full precision (they set the activation scales and the kernels' input scales)
        for layer in layers:
            layer.reset_minmax()
            layer.paq.record_minmax = True
        try:
            model(feed, training=False)
        finally:
            for layer in layers:
                layer.paq.record_minmax = False
        ref = predict()
        scale = float(np.sqrt(np.mean((ref - ref.mean(axis=0)) ** 2))) or 1.0

        def error():
            return float(np.sqrt(np.mean((predict() - ref) ** 2))) / scale

        for s in slots:
            s.base = _activation_base(s.q) if s.role == "activation" else _kernel_base(s.layer)
        budget = 1.0 / math.sqrt(max(len(slots), 1))
        report = {}
        for s in slots:
            target = s.tolerance * budget
            lo, hi = (-2, 16) if s.role == "kernel" else (-4, 20)
            errors = {}
            while lo < hi:  # smallest offset with error <= target (error falls as the offset grows)
                mid = (lo + hi) // 2
                s.set(mid)
                errors[mid] = error()
                if errors[mid] <= target:
                    hi = mid
                else:
                    lo = mid + 1
            s.offset = lo
            if lo not in errors:
                s.set(lo)
                errors[lo] = error()
            report[s.name] = {"role": s.role, "offset": int(lo), "error": errors[lo]}
            s.full()
        for s in slots:
            s.set(s.offset)
        total = error()
    except Exception:
        for s in slots:
            s.q.fbw.assign(saved[id(s.q)])
        raise
    finally:
        for layer in layers:
            layer.reset_minmax()
    for s in slots:
        f = np.round(_np(s.q.fbw))
        if s.role == "kernel":
            kernel, _ = s.layer.folded_kernel_bias()
            a = np.abs(_np(kernel))
            i = np.where(a > 0, np.floor(np.log2(np.maximum(a, TINY))) + 1, -1e3)
            bits = np.maximum(i + f, 0)
            report[s.name]["mean_bits"] = float(np.mean(bits))
        else:
            report[s.name]["f"] = float(np.mean(f))
        if verbose:
            r = report[s.name]
            what = f"mean bits {r['mean_bits']:.2f}" if s.role == "kernel" else f"f {r['f']:.0f}"
            print(f"{s.name:<32} offset {r['offset']:>3}  error {r['error']:.4f}  {what}")
    if verbose:
        print(f"output error with every quantizer initialised: {total:.4f} (tolerance {tolerance})")
    return {"error": total, "quantizers": report}

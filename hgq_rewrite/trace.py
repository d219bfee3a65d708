"""trace_minmax: exact activation ranges on calibration data, then exact EBOPs."""

import numbers
import warnings

import numpy as np
from keras import ops

from .formats import warn_wide_formats
from .inputs import model_inputs
from .layers.base import HLayerBase
from .layers.links import link_model, walk_layers
from .quantizers.fixed_point import wrap_from_arguments

DEFAULT_BATCH_SIZE = 16384


def h_layers(model):
    """Every H-layer of ``model``, nested models included."""
    return [layer for layer in walk_layers(model) if isinstance(layer, HLayerBase)]


def _snapshot(layers):
    """The range and calibration state of every quantizer, to restore after a failed trace."""
    return [[ops.convert_to_numpy(v) for v in layer.paq.weights] for layer in layers]


def _restore(layers, state):
    for layer, values in zip(layers, state):
        for var, value in zip(layer.paq.weights, values):
            var.assign(value)


def _widen(quantizer, cover_factor):
    """Scale the traced range about its centre by ``cover_factor`` (head-room against overflow)."""
    lo, hi = ops.convert_to_numpy(quantizer.min), ops.convert_to_numpy(quantizer.max)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    f = np.round(ops.convert_to_numpy(quantizer.fbw))
    step = 2.0**-f
    new_lo = np.floor((mid - half * cover_factor) / step) * step
    new_hi = np.ceil((mid + half * cover_factor) / step) * step
    # a range that was all >= 0 stays unsigned
    new_lo = np.where(lo >= 0, np.maximum(new_lo, 0), new_lo)
    quantizer.set_range(new_lo, new_hi)


def trace_minmax(model, data, bsz=None, cover_factor=1.0, verbose=False, aggressive=None, *, batch_size=None,
                 overflow=None):
    """Calibrate ``model`` on ``data``: exact activation ranges, the firmware's formats, exact EBOPs.

    Afterwards the model's inference (``predict``, ``evaluate``) computes exactly what its exported
    firmware computes, overflow included, until the next training step.

    Args:
        model: a Keras model made of H- and P-layers (nested models included).
        data: calibration array, or list of arrays for several inputs.
        bsz: batch size of the calibration passes (default 16384); the seed's name for ``batch_size``.
        cover_factor: widen every range about its centre by this factor (> 0); values above 1
            leave head-room against overflow on unseen data at the cost of more integer bits.
        verbose: print EBOPs per layer.
        aggressive: the seed's name for the overflow: True -> WRAP (default), False -> SAT.
        batch_size: same as ``bsz`` (the name ``finetune`` uses); give one of them.
        overflow: ``"WRAP"`` or ``"SAT"``: overflow of the firmware the model then emulates
            (``to_proxy_model`` uses the same mode unless told otherwise); same as ``aggressive``.

    Returns:
        Total exact EBOPs (float).

    On any error the model keeps the ranges and calibration it had before the call.
    """
    if isinstance(cover_factor, bool) or not isinstance(cover_factor, numbers.Real) or not (
        np.isfinite(cover_factor) and cover_factor > 0
    ):
        raise ValueError(f"trace_minmax: cover_factor must be a number > 0, got {cover_factor!r}.")
    if cover_factor < 1:
        warnings.warn("trace_minmax: cover_factor < 1 leaves traced values outside the range (overflow).")
    bsz = _batch_size(bsz, batch_size)
    aggressive = wrap_from_arguments(overflow, aggressive, "trace_minmax")
    aggressive = True if aggressive is None else aggressive
    cover_factor = float(cover_factor)
    arrays = model_inputs(model, data, "calibration data", "trace_minmax", numbered=True, float32=True)
    link_model(model)
    layers = h_layers(model)
    if not layers:
        raise ValueError(f"trace_minmax: model {model.name!r} has no H-layers to trace.")
    before = _snapshot(layers)
    try:
        _record_ranges(model, layers, arrays, bsz)
        if cover_factor != 1:
            for layer in layers:
                _widen(layer.paq, cover_factor)
        proxy = _calibrate(model, layers, aggressive)
    except BaseException:
        _restore(layers, before)
        raise
    warn_wide_formats(model)
    total = 0.0
    for layer in layers:
        value = layer.set_exact_ebops()
        total += value
        if verbose and value:
            print(f"{layer.name}: {value:.0f}")
    if verbose:
        print(f"Total EBOPs: {total:.0f}")
    if proxy is not None:
        from .proxy.convert import keep_for_export

        keep_for_export(model, proxy, aggressive)
    return total


def _batch_size(bsz, batch_size):
    """The calibration batch size from ``bsz`` (the seed's name) or ``batch_size``."""
    if bsz is not None and batch_size is not None and bsz != batch_size:
        raise ValueError(f"trace_minmax: bsz={bsz!r} and batch_size={batch_size!r} disagree; give one of them.")
    value = DEFAULT_BATCH_SIZE if bsz is None and batch_size is None else (bsz if bsz is not None else batch_size)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"trace_minmax: batch_size (bsz) must be a positive int, got {value!r}.")
    return int(value)


def _record_ranges(model, layers, arrays, bsz):
    for layer in layers:
        layer.reset_minmax()
        layer.paq.record_minmax = True
    try:
        n = arrays[0].shape[0]
        for start in range(0, n, bsz):
            batch = [a[start : start + bsz].astype("float32") for a in arrays]
            model(batch if len(batch) > 1 else batch[0], training=False)
    finally:
        for layer in layers:
            layer.paq.record_minmax = False


def _calibrate(model, layers, aggressive):
    """Freeze each quantizer's firmware format (what ``to_proxy_model`` will emit)."""
    from .proxy.convert import ProxyConversionError, export_analysis

    proxy = None
    try:
        formats, inexact, proxy = export_analysis(model, aggressive=aggressive)
    except ProxyConversionError as exc:
        # not exportable (yet): emulate the traced formats; to_proxy_model refuses with the same reason
        warnings.warn(f"trace_minmax: the model cannot be exported as it is ({exc}); inference emulates the "
                      "traced formats without the export's fractional-bit limits.")
        formats, inexact = [(layer.paq, layer.paq.range_kif(exact=True)) for layer in layers], []
    if inexact:
        shown = ", ".join(repr(n) for n in inexact[:5]) + (" ..." if len(inexact) > 5 else "")
        warnings.warn(
            f"trace_minmax: {len(inexact)} layer(s) ({shown}) can form sums wider than float32's 24 significant "
            "bits, so the float32 HGQ model may differ from its firmware on some inputs (the float64 proxy and "
            "the firmware still agree). Fewer bits (a larger beta) remove this."
        )
    for paq, kif in formats:
        if paq.has_firmware_state:
            paq.set_firmware_format(kif, saturate=not aggressive)
    return proxy

"""Checks of traced fixed-point formats: warn when one is absurdly wide.

Calibration data with outliers (say 1e30) makes `trace_minmax` pick formats with
a hundred integer bits, and hls4ml then emits ``ap_fixed`` types that wide
without complaint. `warn_wide_formats` names the layers whose traced output
format is wider than ``max_bits`` (k + i + f).
"""

from __future__ import annotations

import warnings

import numpy as np
from keras import ops

from .layers.base import HLayerBase
from .layers.links import walk_layers

MAX_BITS = 64  # wider than any sane FPGA datapath (and than hls4ml's accumulators handle well)


def wide_formats(model, max_bits=MAX_BITS):
    """``[(layer name, widest bits)]`` of the traced H-layers whose output format exceeds ``max_bits``.

    Layers without traced ranges are skipped.
    """
    out = []
    for layer in walk_layers(model):
        if not isinstance(layer, HLayerBase):
            continue
        paq = layer.paq
        if not getattr(paq, "built", False) or not paq.is_traced():
            continue
        k, i, f = (np.asarray(ops.convert_to_numpy(v)) for v in paq.activation_kif(exact=True))
        bits = int(np.max(k + i + f))
        if bits > max_bits:
            out.append((layer.name, bits))
    return out


def warn_wide_formats(model, max_bits=MAX_BITS, what="calibration data"):
    """Warn (one line) about every traced output format wider than ``max_bits``; return `wide_formats`."""
    wide = wide_formats(model, max_bits)
    if wide:
        layers = ", ".join(f"{name!r} ({bits} bits)" for name, bits in wide)
        warnings.warn(
            f"traced formats up to {max(b for _, b in wide)} bits wide, over {max_bits}: {layers}; hls4ml would "
            f"emit ap_fixed types that wide. Check the {what} for outliers or values far outside the training "
            "range (or lower cover_factor).",
            stacklevel=2,
        )
    return wide

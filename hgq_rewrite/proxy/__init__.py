"""Proxy models (plain Keras + fixed-point quantizers + lookup tables) and the hls4ml bridge."""

from .fixed_point_layer import FixedPointQuantizer, kif_to_mask, normalize_kbi
from .unary_lut import UnaryLUT, build_table, lut_inputs

HLS4ML_HANDLERS_ERROR = None


def register_hls4ml_handlers():
    """Register the hls4ml handlers for the proxy layers; return True on success.

    Called on import. Never raises: without a usable hls4ml the proxy layers still
    work in Keras, and the reason is kept in ``HLS4ML_HANDLERS_ERROR``.
    """
    global HLS4ML_HANDLERS_ERROR
    try:
        from . import hls4ml_handlers  # noqa: F401  (defining the handlers registers them)
    except Exception as exc:  # hls4ml missing or incompatible
        HLS4ML_HANDLERS_ERROR = exc
        return False
    HLS4ML_HANDLERS_ERROR = None
    return True


register_hls4ml_handlers()

from .convert import ProxyConversionError, to_proxy_model  # noqa: E402
from .bit_exact import BitExactReport, UnsupportedLayerError, check_bit_exact, export_problems, predict_float64  # noqa: E402,E501

__all__ = [
    "to_proxy_model",
    "ProxyConversionError",
    "FixedPointQuantizer",
    "UnaryLUT",
    "build_table",
    "lut_inputs",
    "kif_to_mask",
    "normalize_kbi",
    "register_hls4ml_handlers",
    "check_bit_exact",
    "BitExactReport",
    "UnsupportedLayerError",
    "export_problems",
    "predict_float64",
]

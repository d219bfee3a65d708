"""Proxy models (plain Keras + fixed-point quantizers + lookup tables) and the hls4ml bridge."""

from .fixed_point_layer import FixedPointQuantizer, kif_to_mask, normalize_kbi
from .registration import register_hls4ml_handlers, unregister_hls4ml_handlers
from .unary_lut import UnaryLUT, build_table, lut_inputs
from .convert import ProxyConversionError, to_proxy_model
from .bit_exact import BitExactReport, check_bit_exact, predict_float64
from .preflight import export_problems
from ..errors import UnsupportedLayerError

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
    "unregister_hls4ml_handlers",
    "check_bit_exact",
    "BitExactReport",
    "UnsupportedLayerError",
    "export_problems",
    "predict_float64",
]

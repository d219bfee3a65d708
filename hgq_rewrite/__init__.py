"""hgq_rewrite: float Keras model -> HGQ model -> bit-exact hls4ml firmware."""

from .callbacks import CalibratedBOPs, FreeBOPs, ResetMinMax
from .quantizers import get_default_kq_conf, get_default_paq_conf, set_default_kq_conf, set_default_paq_conf
from .trace import trace_minmax

__all__ = [
    "CalibratedBOPs",
    "FreeBOPs",
    "ResetMinMax",
    "trace_minmax",
    "get_default_kq_conf",
    "get_default_paq_conf",
    "set_default_kq_conf",
    "set_default_paq_conf",
]

"""Fixed-point math and the trainable heterogeneous quantizer."""

from .config import (
    get_default_kq_conf,
    get_default_paq_conf,
    reset_default_confs,
    set_default_kq_conf,
    set_default_paq_conf,
)
from .fixed_point import apply_overflow, kbi_to_kif, kif_to_kbi, quantize, round_to_grid
from .exact_bits import significant_bits
from .hquantizer import HQuantizer, NotTracedError

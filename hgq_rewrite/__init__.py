"""hgq_rewrite: float Keras model -> HGQ model -> bit-exact hls4ml firmware."""

from .bitwidth_step import BitwidthAdam, BitwidthStepMixin, relative_weight_steps
from .callbacks import CalibratedBOPs, FreeBOPs, ResetMinMax
from .finetune import ParetoFront, finetune
from .export import estimate_resources, to_qonnx
from .proxy import to_proxy_model
from .quantizers import get_default_kq_conf, get_default_paq_conf, set_default_kq_conf, set_default_paq_conf
from .rewrite import explain, quantize, register_converter, register_handler
from .rewrite.init_bits import init_bits
from .schedules import BetaScheduler
from .sweep import sweep
from .trace import trace_minmax

__all__ = [
    "quantize",
    "explain",
    "init_bits",
    "BitwidthAdam",
    "BitwidthStepMixin",
    "relative_weight_steps",
    "register_converter",
    "register_handler",
    "finetune",
    "sweep",
    "trace_minmax",
    "to_proxy_model",
    "to_qonnx",
    "estimate_resources",
    "BetaScheduler",
    "ParetoFront",
    "CalibratedBOPs",
    "FreeBOPs",
    "ResetMinMax",
    "get_default_kq_conf",
    "get_default_paq_conf",
    "set_default_kq_conf",
    "set_default_paq_conf",
]

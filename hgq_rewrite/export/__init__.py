"""Export routes beyond hls4ml's Latency C++: QONNX (``to_qonnx``) and da4ml (``estimate_resources``, Verilog,
hls4ml's ``distributed_arithmetic`` strategy).

onnx/qonnx and da4ml are optional (extras ``[qonnx]`` and ``[da]``) and imported only inside the
functions that need them.
"""

from ._deps import MissingExtraError, available
from .da import (
    DACheckReport,
    DAExportError,
    ResourceEstimate,
    check_da,
    da_hls_config,
    estimate_resources,
    trace_proxy,
    write_verilog,
)
from .qonnx import QONNXCheckReport, QONNXExportError, check_qonnx, quant_encoding, to_qonnx

__all__ = [
    "MissingExtraError",
    "available",
    "to_qonnx",
    "check_qonnx",
    "quant_encoding",
    "QONNXCheckReport",
    "QONNXExportError",
    "estimate_resources",
    "ResourceEstimate",
    "check_da",
    "DACheckReport",
    "DAExportError",
    "da_hls_config",
    "trace_proxy",
    "write_verilog",
]

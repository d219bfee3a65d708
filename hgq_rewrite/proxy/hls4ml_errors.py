"""hls4ml's own errors, turned into `UnsupportedLayerError` s that name the proxy layer and the remedy."""

from ..compat.hls4ml_private import error_subjects
from .fixed_point_layer import FixedPointQuantizer
from .hls4ml_limits import Problem, known_problem, unsupported


def explain_hls4ml_error(model, exc):
    """The `UnsupportedLayerError` for an exception raised inside hls4ml on ``model``, or None if unknown."""
    text = str(exc)
    names, heterogeneous_io = error_subjects(text)
    if heterogeneous_io:
        return unsupported(
            [Problem(layer.name, type(layer).__name__, "heterogeneous activation quantizers need io_parallel",
                     "convert with io_type='io_parallel' (Vivado or Vitis backend)")
             for layer in model.layers if isinstance(layer, FixedPointQuantizer) and not layer.homogeneous],
            cause=exc,
        )
    layers = [layer for layer in model.layers if type(layer).__name__ in names or layer.name in text]
    if not layers:
        return None
    return unsupported([known_problem(layer, fatal=True) for layer in layers], cause=exc)

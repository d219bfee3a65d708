"""Rewrite a float Keras model into an HGQ model: `quantize`, `explain`, `register_handler`.

Modules: `graph` (the rewrite's view of the layer calls), `policy` (config and its
precedence), `handler` (the contract of a layer family), `registry` + `handlers` (which
handler converts a float class and exports an HGQ class), `fusion` (BatchNorm folding,
activation fusion), `placement` (where HQuantize goes), `planner` + `plan` (the dry-run
report), `build` (the new model and its weights), `errors`.
"""

from . import handlers  # noqa: F401  (registers the built-in handlers)
from .api import explain, quantize
from .errors import ConfigError, RewriteError, UnsupportedLayerError, UnsupportedModelError
from .handler import Conversion, Converter, ExportProblem, LayerHandler, LayerSettings
from .plan import Plan, PlanEntry
from .registry import register_converter, register_handler, unregister_converter, unregister_handler

__all__ = [
    "quantize",
    "explain",
    "register_handler",
    "unregister_handler",
    "register_converter",
    "unregister_converter",
    "LayerHandler",
    "ExportProblem",
    "Plan",
    "PlanEntry",
    "Conversion",
    "Converter",
    "LayerSettings",
    "RewriteError",
    "ConfigError",
    "UnsupportedLayerError",
    "UnsupportedModelError",
]

"""Rewrite a float Keras model into an HGQ model: `quantize`, `explain`, `register_converter`.

Modules: `graph` (walk the layer calls), `policy` (config and its precedence),
`registry` + `converters` (float class → HGQ layers), `fusion` (BatchNorm
folding, relu fusion), `placement` (where HQuantize goes), `planner` + `plan`
(the dry-run report), `build` (the new model and its weights), `targets`
(the HGQ layer classes built), `errors`.
"""

from .api import explain, quantize
from .errors import ConfigError, RewriteError, UnsupportedLayerError, UnsupportedModelError
from .plan import Plan, PlanEntry
from .registry import Conversion, Converter, LayerSettings, register_converter, unregister_converter

__all__ = [
    "quantize",
    "explain",
    "register_converter",
    "unregister_converter",
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

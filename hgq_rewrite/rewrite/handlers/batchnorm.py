"""BatchNormalization: only folded into the Dense/Conv before it (see `rewrite.fusion`).

A BatchNormalization that cannot be folded is kept float, the plan says why, and it does not
export (no handler emits a float BatchNormalization).
"""

import keras

from ..handler import LayerHandler
from ..registry import register_builtin


@register_builtin
class BatchNormalizationHandler(LayerHandler):
    float_classes = (keras.layers.BatchNormalization,)
    target = "folded"
    fields = ()
    fold_only = True
    exports_doc = "folded: yes; kept float: no"

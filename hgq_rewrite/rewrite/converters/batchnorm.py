"""BatchNormalization: only folded into the Dense/Conv before it (see `rewrite.fusion`).

A BatchNormalization that cannot be folded is kept float, and the plan says why.
"""

import keras

from ..registry import Converter, register_builtin


@register_builtin(keras.layers.BatchNormalization)
class BatchNormalizationConverter(Converter):
    target = "folded"
    fields = ()
    fold_only = True

    def check(self, layer):
        return None

"""H-layers (arithmetic with trainable bitwidths) and P-layers (passive, propagate bitwidth maps)."""

from .activation import ActivationWithArgs, HActivation
from .base import BitMapMixin, HLayerBase, PLayerMixin
from .conv import HConv1D, HConv1DBatchNorm, HConv2D, HConv2DBatchNorm, HDepthwiseConv1D, HDepthwiseConv2D
from .dense import HDense, HDenseBatchNorm
from .einsum import HEinsum, HEinsumDense
from .kernel_base import HKernelLayer
from .normalization import HLayerNormalization
from .merge import HAdd, HAverage, HMaximum, HMerge, HMinimum, HMultiply, HSubtract, PConcatenate
from .passive import PDropout, PFlatten, PPermute, PReshape, PZeroPadding1D, PZeroPadding2D
from .pooling import (
    PAveragePooling1D,
    PAveragePooling2D,
    PAvgPool1D,
    PAvgPool2D,
    PGlobalAveragePooling1D,
    PGlobalAveragePooling2D,
    PGlobalMaxPooling1D,
    PGlobalMaxPooling2D,
    PMaxPool1D,
    PMaxPool2D,
    PMaxPooling1D,
    PMaxPooling2D,
)
from .prelu import HPReLU
from .quantize import HQuantize, Signature
from .softmax import HSoftmax

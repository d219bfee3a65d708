"""What hls4ml 1.3 cannot convert, or cannot convert bit-exactly, and the remedy for each.

The knowledge base the export checks (`hgq_rewrite.proxy.preflight`) and the reading of
hls4ml's errors (`hgq_rewrite.proxy.hls4ml_errors`) share.
"""

from dataclasses import dataclass

from ..errors import UnsupportedLayerError

# hls4ml 1.3 bit-exact flow: element-wise activations it handles, but only exactly under conditions
CONDITIONAL_ACTIVATIONS = ("tanh", "sigmoid")
PASS_THROUGH_TO_QUANTIZER = ("Reshape", "Flatten", "Permute", "Concatenate")
MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")

LUT_REMEDY = "tabulate it as a UnaryLUT after a homogeneous FixedPointQuantizer (to_proxy_model does this)"

# class name -> (fatal, reason, remedy). fatal: hls4ml 1.3 cannot convert it at all.
KNOWN_PROBLEMS = {
    "Softmax": (False, "hls4ml's softmax rebuilds its exp and 1/x tables in C++ and is not bit-exact",
                "use the FixedPointSoftmax that to_proxy_model makes from an HSoftmax, or drop the softmax from "
                "the exported model (argmax is unchanged) and apply it after the firmware"),
    "SeparableConv1D": (True, "hls4ml's Keras-3 handler reads a `kernel` attribute this layer does not have",
                        "split it into DepthwiseConv1D followed by a 1-wide Conv1D"),
    "SeparableConv2D": (True, "hls4ml's Keras-3 handler reads a `kernel` attribute this layer does not have",
                        "split it into DepthwiseConv2D followed by a 1x1 Conv2D"),
    "GlobalMaxPooling1D": (True, "hls4ml's bit-exact pass fails on global max pooling",
                           "use MaxPooling1D over the whole length followed by Flatten"),
    "GlobalMaxPooling2D": (True, "hls4ml's bit-exact pass fails on global max pooling",
                           "use MaxPooling2D over the whole image followed by Flatten"),
    "PReLU": (True, "hls4ml's bit-exact pass has no exact rule for PReLU", LUT_REMEDY),
    "BatchNormalization": (False, "the scale gamma/sqrt(var+eps) is generally not a binary fraction",
                           "fold it into the preceding Dense/Conv kernel and bias"),
    "LayerNormalization": (True, "hls4ml 1.3 has no bit-exact rule for it", "remove it or replace it before export"),
    "Embedding": (True, "hls4ml 1.3 has no bit-exact rule for it", "replace it by a one-hot input and a Dense"),
    "Lambda": (True, "hls4ml cannot convert arbitrary Python code", "replace it with standard layers"),
    # hls4ml 1.3's ReLU handler falls through to a ThresholdedReLU node, which loses bit-exactness
    "ReLU": (False, "hls4ml 1.3 converts it to a ThresholdedReLU node whose C simulation lets negative values through",
             "use keras.layers.Activation('relu') instead"),
}
for _name in ("ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3's bit-exact pass has no rule for it",
                             "use padding='same' in the convolution, or pad/crop/resize the data outside the firmware")
for _name in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3's bit-exact pass has no rule for recurrent layers",
                             "unroll the recurrence into Dense layers, or export it without bit-exact checking")
for _name in ("MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D", "Conv3D"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3 has no bit-exact rule for 3D layers", "reshape the problem to 1D/2D")


@dataclass
class Problem:
    """A layer hls4ml cannot convert (``fatal``) or cannot convert bit-exactly."""

    layer: str
    class_name: str
    reason: str
    remedy: str
    fatal: bool = True

    def __str__(self):
        kind = "cannot be converted" if self.fatal else "is not bit-exact"
        return f"layer '{self.layer}' ({self.class_name}) {kind} by hls4ml: {self.reason}. Remedy: {self.remedy}."


def known_problem(layer, fatal=None):
    """The `Problem` of ``layer``'s class from `KNOWN_PROBLEMS` (``fatal`` overrides the table's flag)."""
    cls = type(layer).__name__
    table_fatal, reason, remedy = KNOWN_PROBLEMS.get(
        cls, (True, "hls4ml failed on it", "replace it with a layer listed in docs/bit_exactness.md")
    )
    return Problem(layer.name, cls, reason, remedy, table_fatal if fatal is None else fatal)


def unsupported(problems, cause=None):
    """The `UnsupportedLayerError` listing ``problems`` (and hls4ml's own error, if any)."""
    problems = list(problems)
    lines = "\n".join(f"  - {p}" for p in problems)
    msg = f"The proxy model cannot be exported bit-exactly to hls4ml:\n{lines}"
    if cause is not None:
        msg += f"\n(hls4ml said: {type(cause).__name__}: {cause})"
    return UnsupportedLayerError(msg, problems)

"""The activations computed exactly without a lookup table.

An H-layer applies them itself (a Dense/Conv fuses them), the proxy emits them as Keras
``Activation`` layers, and hls4ml's bit-exact flow derives their output types exactly. Every
other element-wise activation goes through a table (``UnaryLUT``).
"""

NATIVE_ACTIVATIONS = ("linear", "relu")

"""Builders of the model zoo (tests/test_zoo.py): small float Keras models of the shapes people deploy.

Each builder returns a built float model with random weights (BatchNormalization statistics set
away from their defaults, so the folding is not the identity).
"""

import os
import re

import keras
import numpy as np
from keras import layers as L

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def _bn(name):
    return L.BatchNormalization(name=name)


def _all_layers(model):
    for layer in model.layers:
        yield from _all_layers(layer) if isinstance(layer, keras.Model) else (layer,)


def randomize_batchnorm(model, seed=0):
    """Non-trivial moving statistics and affine parameters on every BatchNormalization (nested too)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.2, n))


def mlp():
    x = keras.Input((16,))
    h = L.Dense(32, activation="relu", name="fc1")(x)
    h = L.Dense(16, activation="relu", name="fc2")(h)
    return keras.Model(x, L.Dense(5, name="out")(h), name="mlp")


def jet_tagger():
    """The hls4ml jet-tagging MLP: 16 → 64 → 32 → 32 → 5, BatchNorm + ReLU after each hidden Dense, softmax."""
    x = keras.Input((16,))
    h = x
    for j, units in enumerate((64, 32, 32)):
        h = L.ReLU(name=f"relu{j}")(_bn(f"bn{j}")(L.Dense(units, name=f"fc{j}")(h)))
    return keras.Model(x, L.Activation("softmax", name="softmax")(L.Dense(5, name="out")(h)), name="jet_tagger")


def softmax_classifier():
    x = keras.Input((12,))
    h = L.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(x, L.Dense(4, activation="softmax", name="out")(h), name="softmax_classifier")


def conv_bn_relu():
    x = keras.Input((8, 8, 1))
    h = L.ReLU(name="relu1")(_bn("bn1")(L.Conv2D(6, 3, name="conv1")(x)))
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.ReLU(name="relu2")(_bn("bn2")(L.Conv2D(8, 3, padding="same", name="conv2")(h)))
    h = L.Dense(12, activation="relu", name="fc")(L.Flatten(name="flat")(h))
    return keras.Model(x, L.Dense(3, name="out")(h), name="conv_bn_relu")


def cnn_separable_depthwise():
    x = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, activation="relu", name="conv")(x)
    h = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(h)
    h = L.DepthwiseConv2D(3, name="dw")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.Flatten(name="flat")(h)), name="cnn_separable_depthwise")


def mobile_block():
    """MobileNet-style: strided stem, then depthwise 3x3 + pointwise 1x1 (separable, BatchNorm, ReLU)."""
    x = keras.Input((8, 8, 3))
    h = L.ReLU(name="stem_relu")(_bn("stem_bn")(L.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)))
    h = L.SeparableConv2D(12, 3, padding="same", name="sep")(h)
    h = L.ReLU(name="sep_relu")(_bn("sep_bn")(h))
    h = L.ReLU(name="pw_relu")(_bn("pw_bn")(L.Conv2D(16, 1, name="pw")(h)))
    return keras.Model(x, L.Dense(4, name="out")(L.GlobalAveragePooling2D(name="gap")(h)), name="mobile_block")


def resnet():
    """Two residual blocks (identity, then a strided one with a 1x1 projection) and a pooled head."""
    x = keras.Input((8, 8, 1))
    h = L.ReLU(name="stem_relu")(_bn("stem_bn")(L.Conv2D(4, 3, padding="same", name="stem")(x)))
    r = L.ReLU(name="b1_relu")(_bn("b1_bn1")(L.Conv2D(4, 3, padding="same", name="b1_conv1")(h)))
    r = _bn("b1_bn2")(L.Conv2D(4, 3, padding="same", name="b1_conv2")(r))
    h = L.ReLU(name="b1_out")(L.Add(name="b1_add")([h, r]))
    r = L.ReLU(name="b2_relu")(_bn("b2_bn1")(L.Conv2D(8, 3, strides=2, padding="same", name="b2_conv1")(h)))
    r = _bn("b2_bn2")(L.Conv2D(8, 3, padding="same", name="b2_conv2")(r))
    skip = L.Conv2D(8, 1, strides=2, name="b2_proj")(h)
    h = L.ReLU(name="b2_out")(L.Add(name="b2_add")([skip, r]))
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(h)), name="resnet")


def conv1d():
    x = keras.Input((32, 4))
    h = L.Conv1D(8, 5, activation="relu", name="conv1")(x)
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(8, 3, activation="relu", name="conv2")(h)
    h = L.AveragePooling1D(2, name="pool2")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.Flatten(name="flat")(h)), name="conv1d")


def conv1d_padded():
    """ZeroPadding1D then a 'valid' Conv1D (the padding 'same' adds), MaxPooling1D, DepthwiseConv1D."""
    x = keras.Input((32, 4))
    h = L.Conv1D(8, 3, activation="relu", name="conv1")(L.ZeroPadding1D(1, name="pad1")(x))
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(8, 5, activation="relu", name="conv2")(L.ZeroPadding1D(2, name="pad2")(h))
    h = L.MaxPooling1D(2, name="pool2")(h)
    h = L.DepthwiseConv1D(3, name="dw")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.Flatten(name="flat")(h)), name="conv1d_padded")


def multi_io():
    """Two inputs (features, a sequence) and two heads (class logits, a regression)."""
    vec, seq = keras.Input((10,), name="features"), keras.Input((16, 3), name="sequence")
    a = L.Dense(16, activation="relu", name="vec_fc")(vec)
    s = L.Conv1D(8, 3, activation="relu", name="seq_conv")(seq)
    s = L.GlobalAveragePooling1D(name="seq_gap")(s)
    h = L.Dense(16, activation="relu", name="joint")(L.Concatenate(name="cat")([a, s]))
    return keras.Model([vec, seq], [L.Dense(4, name="cls")(h), L.Dense(1, name="reg")(h)], name="multi_io")


def nested():
    """A Functional block used as a layer of the outer model."""
    bx = keras.Input((16,))
    b = L.ReLU(name="blk_relu")(_bn("blk_bn")(L.Dense(16, name="blk_fc1")(bx)))
    block = keras.Model(bx, L.Dense(8, name="blk_fc2")(b), name="block")
    x = keras.Input((12,))
    h = block(L.Dense(16, activation="relu", name="fc_in")(x))
    return keras.Model(x, L.Dense(3, name="out")(L.ReLU(name="relu")(h)), name="nested")


def _encoder(x, norm, length=6):
    """Attention + Add (+ LayerNormalization), then an EinsumDense MLP + Add (+ LayerNormalization)."""
    a = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    h = L.Add(name="add1")([x, a])
    if norm:
        h = L.LayerNormalization(name="ln1")(h)
    m = L.EinsumDense("btc,cd->btd", output_shape=(length, 16), bias_axes="d", activation="relu", name="ff1")(h)
    m = L.EinsumDense("btd,dc->btc", output_shape=(length, 8), bias_axes="c", name="ff2")(m)
    h = L.Add(name="add2")([h, m])
    if norm:
        h = L.LayerNormalization(name="ln2")(h)
    return h


def transformer():
    """A transformer-encoder block without normalization (it exports)."""
    x = keras.Input((6, 8))
    h = _encoder(x, norm=False)
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="gap")(h)), name="transformer")


def transformer_layernorm():
    """The post-norm encoder block: LayerNormalization does not export."""
    x = keras.Input((6, 8))
    h = _encoder(x, norm=True)
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="gap")(h)),
                       name="transformer_layernorm")


def transformer_unknown_length():
    """The encoder block with EinsumDense output_shape=(None, d), as in Keras' examples: the sequence
    length of the MLP's outputs is unknown (None) though the input's is 6."""
    x = keras.Input((6, 8))
    h = _encoder(x, norm=False, length=None)
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="gap")(h)),
                       name="transformer_unknown_length")


def unet_concat():
    """U-shaped at one resolution: encoder convs, a bottleneck, decoder convs reading the skips (Concatenate)."""
    x = keras.Input((8, 8, 1))
    e1 = L.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="bottleneck")(e1)
    d1 = L.Conv2D(4, 3, padding="same", activation="relu", name="dec1")(L.Concatenate(name="skip1")([b, e1]))
    return keras.Model(x, L.Conv2D(1, 1, name="out")(L.Concatenate(name="skip0")([d1, x])), name="unet_concat")


def unet_upsampling():
    """The usual U-Net: pooling down, UpSampling2D up (hls4ml 1.3 has no bit-exact rule for it)."""
    x = keras.Input((8, 8, 1))
    e1 = L.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(x)
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="bottleneck")(L.MaxPooling2D(2, name="down")(e1))
    u = L.UpSampling2D(2, name="up")(b)
    d = L.Conv2D(4, 3, padding="same", activation="relu", name="dec")(L.Concatenate(name="skip")([u, e1]))
    return keras.Model(x, L.Conv2D(1, 1, name="out")(d), name="unet_upsampling")


def gap_head():
    x = keras.Input((8, 8, 2))
    h = L.Conv2D(8, 3, activation="relu", name="conv1")(x)
    h = L.Conv2D(8, 3, activation="relu", name="conv2")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(h)), name="gap_head")


def merges():
    x = keras.Input((8,))
    a, b, c = (L.Dense(8, name=f"fc_{n}")(x) for n in "abc")
    h = L.Concatenate(name="cat")([L.Average(name="avg")([a, b]), L.Maximum(name="max")([b, c]),
                                   L.Multiply(name="mul")([a, c])])
    return keras.Model(x, L.Dense(3, name="out")(h), name="merges")


def lut_activations():
    """LeakyReLU, ELU and swish between Dense layers: each exported as a lookup table."""
    x = keras.Input((8,))
    h = L.LeakyReLU(negative_slope=0.2, name="leaky")(L.Dense(16, name="fc1")(x))
    h = L.ELU(alpha=0.5, name="elu")(L.Dense(16, name="fc2")(h))
    h = L.Activation("swish", name="swish")(L.Dense(8, name="fc3")(h))
    return keras.Model(x, L.Dense(3, name="out")(h), name="lut_activations")


def reshape_permute():
    """A Dense feature map reshaped into a sequence, transposed, convolved (data-movement layers)."""
    x = keras.Input((12,))
    h = L.Reshape((8, 4), name="reshape")(L.Dense(32, activation="relu", name="fc")(x))
    h = L.Permute((2, 1), name="permute")(h)
    h = L.Conv1D(6, 3, activation="relu", name="conv")(L.Dropout(0.1, name="drop")(h))
    h = L.GlobalMaxPooling1D(name="gmp")(h)
    return keras.Model(x, L.Dense(3, name="out")(h), name="reshape_permute")


def kept_float():
    """An MLP whose 'skip_me' Dense the config keeps float."""
    x = keras.Input((10,))
    h = L.Dense(16, activation="relu", name="fc1")(x)
    h = L.Dense(16, activation="relu", name="skip_me")(h)
    return keras.Model(x, L.Dense(3, name="out")(h), name="kept_float")


def custom_family():
    """The custom layer family of docs/internals.md's tutorial: returns (float model, handler class).

    Executing the tutorial's first block registers its handler; the caller unregisters it.
    """
    text = open(os.path.join(DOCS, "internals.md"), encoding="utf-8").read()
    section = text.split("### Tutorial: a custom layer family", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace = {}
    exec(compile(blocks[0], "docs/internals.md", "exec"), namespace)
    scaled = namespace["ScaledDense"]
    x = keras.Input((8,))
    h = L.ReLU(name="relu")(scaled(16, name="scaled")(x))
    h = L.Dense(8, activation="relu", name="fc")(h)
    return keras.Model(x, L.Dense(3, name="out")(h), name="custom_family"), namespace["ScaledDenseHandler"]

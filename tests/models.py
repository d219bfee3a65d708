"""Small HGQ models shared by the tests."""

import keras
import numpy as np

from hgq_rewrite.layers import (
    HActivation,
    HAdd,
    HConv1D,
    HConv1DBatchNorm,
    HConv2D,
    HConv2DBatchNorm,
    HDense,
    HDenseBatchNorm,
    HDepthwiseConv2D,
    HQuantize,
    PAveragePooling1D,
    PAveragePooling2D,
    PConcatenate,
    PDropout,
    PFlatten,
    PGlobalAveragePooling1D,
    PGlobalAveragePooling2D,
    PMaxPooling1D,
    PMaxPooling2D,
    PPermute,
    PReshape,
    Signature,
)


def every_layer_model(beta=1e-6):
    """A functional model using every H- and P-layer (two inputs)."""
    img = keras.Input((8, 8, 2), name="img")
    seq = keras.Input((8, 3), name="seq")
    a = HQuantize(beta=beta, name="q_img")(img)
    a = HConv2D(4, 3, padding="same", activation="relu", beta=beta, name="conv")(a)
    a = HConv2DBatchNorm(4, 3, padding="same", beta=beta, name="conv_bn")(a)
    a = HActivation("tanh", beta=beta, name="tanh")(a)
    a = HDepthwiseConv2D(3, padding="same", beta=beta, name="dw")(a)
    b = PMaxPooling2D(2, name="maxpool")(a)
    c = PAveragePooling2D(2, name="avgpool")(a)
    ab = HAdd(beta=beta, name="add")([b, c])
    ab = PPermute((2, 1, 3), name="permute")(ab)
    g = PGlobalAveragePooling2D(name="gap")(ab)
    s = Signature(1, 6, 3, name="sig")(seq)
    s = HConv1D(4, 2, activation="relu", beta=beta, name="conv1d")(s)
    s = HConv1DBatchNorm(4, 2, padding="same", beta=beta, name="conv1d_bn")(s)
    s1 = PMaxPooling1D(2, name="maxpool1d")(s)
    s2 = PAveragePooling1D(2, name="avgpool1d")(s)
    s = PConcatenate(name="concat_seq")([s1, s2])
    s3 = PGlobalAveragePooling1D(name="gap1d")(s)
    s = PFlatten(name="flat")(s)
    s = PReshape((4, 6), name="reshape")(s)
    s = PFlatten(name="flat2")(s)
    x = PConcatenate(name="concat")([g, s, s3])
    x = PDropout(0.1, name="drop")(x)
    x = HDenseBatchNorm(8, activation="relu", beta=beta, name="dense_bn")(x)
    x = HActivation("sigmoid", beta=beta, name="sigmoid")(x)
    out = HDense(3, beta=beta, name="out")(x)
    return keras.Model([img, seq], out, name="every_layer")


def every_layer_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 8, 8, 2)).astype("float32")
    seq = (rng.integers(-16, 16, size=(n, 8, 3)) / 4).astype("float32")  # fits ap_fixed<6,3>
    return [img, seq], rng.integers(0, 3, size=n)

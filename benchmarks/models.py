"""The three benchmark architectures: float Keras models and their hand-built HGQ2 twins.

HGQ2 has no rewriter, so its models are written layer by layer here, following the
structure ``hgq_rewrite.quantize`` produces for the same float model:

- a quantizer right after the input (hls4ml needs one there);
- each Dense/Conv becomes the HGQ2 layer with its input quantizer (``iq``) and
  trainable per-weight kernel bits; Dense -> BatchNorm is fused (``QEinsumDenseBatchnorm``,
  the HGQ2 layer for a dense followed by batch normalization);
- passive layers (Reshape, pooling, Flatten) stay plain Keras;
- convolutions are counted fully parallel (HGQ2's default; ``parallel_factor`` = output
  positions on our side), as in the seed quick start.

The float weights are transferred into the HGQ2 model (``transfer_to_hgq2``), so both
libraries start fine-tuning from the same trained float model.
"""

import keras
import numpy as np

CLASSES = {"digits28": 10, "mnist1d": 10, "jets": 5, "mnist1d_pkg": 10, "digits8": 10}


def float_model(task):
    """The float architecture of ``task`` (uncompiled)."""
    L = keras.layers
    if task == "digits28":  # the seed quick-start CNN
        return keras.Sequential([
            keras.Input((28, 28)),
            L.Reshape((28, 28, 1), name="reshape"),
            L.MaxPooling2D((2, 2), name="pool1"),
            L.Conv2D(2, (3, 3), activation="relu", name="conv1"),
            L.MaxPooling2D((2, 2), name="pool2"),
            L.Conv2D(2, (3, 3), activation="relu", name="conv2"),
            L.MaxPooling2D((2, 2), name="pool3"),
            L.Flatten(name="flatten"),
            L.Dense(10, name="dense"),
        ], name="seed_cnn")
    if task in ("mnist1d", "mnist1d_pkg"):  # MLP 40-64-32-10
        return keras.Sequential([
            keras.Input((40,)),
            L.Dense(64, activation="relu", name="dense1"),
            L.Dense(32, activation="relu", name="dense2"),
            L.Dense(10, name="dense3"),
        ], name="mlp_mnist1d")
    if task == "jets":  # MLP 16-64-32-32-5 with BatchNorm
        return keras.Sequential([
            keras.Input((16,)),
            L.Dense(64, name="dense1"),
            L.BatchNormalization(name="bn1"),
            L.Activation("relu", name="relu1"),
            L.Dense(32, name="dense2"),
            L.BatchNormalization(name="bn2"),
            L.Activation("relu", name="relu2"),
            L.Dense(32, name="dense3"),
            L.BatchNormalization(name="bn3"),
            L.Activation("relu", name="relu3"),
            L.Dense(5, name="dense4"),
        ], name="jet_tagger")
    if task == "digits8":  # the small conv net of issue 11
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            L.Conv2D(8, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool"),
            L.Conv2D(16, 3, activation="relu", name="conv2"),
            L.Flatten(name="flatten"),
            L.Dense(10, name="dense"),
        ], name="cnn_digits8")
    raise ValueError(f"unknown task {task!r}")


def hgq_rewrite_config(task):
    """Rewrite config for our ``quantize``: none (converted convolutions are fully parallel by default)."""
    return None


def hgq2_model(task, beta):
    """The HGQ2 twin of ``float_model(task)``, built from HGQ2 layers with library defaults."""
    from hgq.config import LayerConfigScope
    from hgq.layers import QConv2D, QDense, QEinsumDenseBatchnorm
    from hgq.quantizer import Quantizer, QuantizerConfig

    L = keras.layers
    with LayerConfigScope(beta0=beta, enable_ebops=True):
        if task == "digits28":
            inp = keras.Input((28, 28))
            h = Quantizer(QuantizerConfig("default", "datalane"), name="input_q")(inp)
            h = L.Reshape((28, 28, 1), name="reshape")(h)
            h = L.MaxPooling2D((2, 2), name="pool1")(h)
            h = QConv2D(2, (3, 3), activation="relu", name="conv1")(h)
            h = L.MaxPooling2D((2, 2), name="pool2")(h)
            h = QConv2D(2, (3, 3), activation="relu", name="conv2")(h)
            h = L.MaxPooling2D((2, 2), name="pool3")(h)
            h = L.Flatten(name="flatten")(h)
            out = QDense(10, name="dense")(h)
        elif task == "digits8":
            inp = keras.Input((8, 8, 1))
            h = Quantizer(QuantizerConfig("default", "datalane"), name="input_q")(inp)
            h = QConv2D(8, 3, activation="relu", name="conv1")(h)
            h = L.MaxPooling2D(2, name="pool")(h)
            h = QConv2D(16, 3, activation="relu", name="conv2")(h)
            h = L.Flatten(name="flatten")(h)
            out = QDense(10, name="dense")(h)
        elif task in ("mnist1d", "mnist1d_pkg"):
            inp = keras.Input((40,))
            h = Quantizer(QuantizerConfig("default", "datalane"), name="input_q")(inp)
            h = QDense(64, activation="relu", name="dense1")(h)
            h = QDense(32, activation="relu", name="dense2")(h)
            out = QDense(10, name="dense3")(h)
        elif task == "jets":
            inp = keras.Input((16,))
            h = Quantizer(QuantizerConfig("default", "datalane"), name="input_q")(inp)
            for i, units in enumerate((64, 32, 32), start=1):
                h = QEinsumDenseBatchnorm("bi,io->bo", (units,), bias_axes="o", activation="relu",
                                          name=f"dense{i}")(h)
            out = QDense(5, name="dense4")(h)
        else:
            raise ValueError(f"unknown task {task!r}")
    return keras.Model(inp, out, name=f"hgq2_{task}")


def transfer_to_hgq2(float_m, hgq2_m):
    """Copy the trained float weights into the HGQ2 twin (BatchNorm statistics included).

    ``QEinsumDenseBatchnorm`` normalizes ``x @ W`` (without the dense bias) and uses its
    ``bias`` as the BatchNorm offset; its epsilon is Keras' global epsilon, so the moving
    variance is shifted to give exactly the float layer's scale.
    """
    float_layers = {layer.name: layer for layer in float_m.layers}
    for layer in hgq2_m.layers:
        src = float_layers.get(layer.name)
        if src is None or not src.weights:
            continue
        kernel = np.asarray(src.kernel)
        bias = np.asarray(src.bias) if src.use_bias else None
        if type(layer).__name__ == "QEinsumDenseBatchnorm":
            bn = float_layers["bn" + layer.name[len("dense"):]]
            gamma, beta, mean, var = (np.asarray(w) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
            layer.kernel.assign(kernel.reshape(layer.kernel.shape))
            layer.bn_gamma.assign(gamma)
            layer.bias.assign(beta)
            layer.moving_mean.assign(mean - (bias if bias is not None else 0.0))
            layer.moving_variance.assign(var + bn.epsilon - keras.config.epsilon())
        else:
            layer.kernel.assign(kernel)
            if bias is not None:
                layer.bias.assign(bias)

"""Layers that only move data (→ P-layers, nothing quantized), and the layers the proxy drops.

In the proxy a P-layer is its plain Keras base layer, and its output carries the fractional
bits the layer's own bitwidth rule gives; dropout and noise layers are removed.
"""

import math

import keras
import numpy as np
from keras import ops

from ...layers import (
    PAveragePooling1D,
    PAveragePooling2D,
    PDropout,
    PFlatten,
    PGlobalAveragePooling1D,
    PGlobalAveragePooling2D,
    PGlobalMaxPooling1D,
    PGlobalMaxPooling2D,
    PLayerMixin,
    PMaxPooling1D,
    PMaxPooling2D,
    PPermute,
    PReshape,
    HQuantize,
)
from ..handler import Conversion, ExportProblem, LayerHandler
from ..registry import register_builtin
from ._common import activation_name, channels_last


class PassiveHandler(LayerHandler):
    """Build ``p_class(**args(layer), name=...)``; no weights, no config fields."""

    fields = ()
    p_class = None

    @property
    def target(self):
        return self.p_class.__name__

    def args(self, layer):
        return {}

    def check(self, layer):
        return channels_last(layer)

    def convert(self, layer, settings, **fused):
        return Conversion([self.p_class(**self.args(layer), name=settings.name)])

    def emit(self, layer, inputs, ctx):
        return self.plain(layer, inputs[0], ctx.layer_name(layer), ctx)

    def plain(self, layer, x, name, ctx):
        """The plain Keras layer named ``name`` applied to ``x``."""
        base = _keras_base(layer)
        config = {key: v for key, v in layer.get_config().items() if key not in ("name", "dtype", "trainable")}
        plain = base.from_config({**config, "name": name, "dtype": ctx.dtype})
        y = plain(x)
        ctx.pass_on(y, x, _passive_frac(layer, plain, ctx.frac_of(x)))
        return y


def _keras_base(layer):
    """The Keras layer class a P-layer (or a kept-float Keras layer) is built on."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("keras.") and issubclass(cls, keras.layers.Layer) and cls is not keras.layers.Layer:
            return getattr(keras.layers, cls.__name__, cls)
    raise TypeError(f"Layer {layer.name!r} ({type(layer).__name__}) has no Keras base layer.")


def _passive_frac(layer, plain, f):
    """Fractional bits after a passive layer: its own rule on the input's map (zeros for k and i)."""
    finite = np.where(np.isfinite(f), f, -1e4)
    if isinstance(layer, PLayerMixin):
        zeros = ops.zeros(f.shape)
        maps = (zeros, zeros, ops.convert_to_tensor(finite, "float32"))
        out = np.asarray(ops.convert_to_numpy(layer.transform_kif([maps], True)[2]), dtype=np.float64)
    else:
        out = np.asarray(ops.convert_to_numpy(plain(ops.convert_to_tensor(finite, "float64"))), dtype=np.float64)
    out = out.reshape((1, *plain.compute_output_shape(f.shape)[1:]))
    return np.where(out < -1e3, -np.inf, out)


@register_builtin
class FlattenHandler(PassiveHandler):
    float_classes = (keras.layers.Flatten,)
    hgq_classes = (keras.layers.Flatten,)  # PFlatten, and a Flatten kept float
    p_class = PFlatten


@register_builtin
class ReshapeHandler(PassiveHandler):
    float_classes = (keras.layers.Reshape,)
    hgq_classes = (keras.layers.Reshape,)
    p_class = PReshape

    def args(self, layer):
        return {"target_shape": tuple(layer.target_shape)}


@register_builtin
class PermuteHandler(PassiveHandler):
    float_classes = (keras.layers.Permute,)
    hgq_classes = (keras.layers.Permute,)
    p_class = PPermute

    def args(self, layer):
        return {"dims": tuple(layer.dims)}


@register_builtin
class DropoutHandler(PassiveHandler):
    """Dropout → PDropout. The proxy drops every dropout and noise layer, and a kept-float linear Activation."""

    float_classes = (keras.layers.Dropout,)
    hgq_classes = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout,
                   keras.layers.GaussianNoise, keras.layers.Activation)
    p_class = PDropout

    def args(self, layer):
        return {"rate": layer.rate}

    def notes(self, layer):
        notes = []
        if layer.noise_shape is not None:
            notes.append("noise_shape not carried over")
        if layer.seed is not None:
            notes.append("seed not carried over")
        return notes

    def export_problem(self, layer, **fused):
        if isinstance(layer, keras.layers.Activation):
            name = activation_name(layer.activation)
            if name != "linear":
                return ExportProblem(f"Activation({name!r}) is kept float",
                                     "quantize it (hgq_rewrite.quantize turns it into an HActivation)")
        return None

    def emit(self, layer, inputs, ctx):
        return inputs[0]


class _AveragingHandler(PassiveHandler):
    """Average pooling. A divisor that is not a power of 2 makes a quotient no finite binary fraction
    holds: the firmware keeps it about 54 fractional bits wide, so an ``HQuantize`` (computing in
    float64, like the proxy) rounds it right there, before any multiply."""

    fields = ("beta", "activation")

    def divisor(self, layer):
        raise NotImplementedError

    def needs_quantizer(self, layer):
        n = self.divisor(layer)
        return n & (n - 1) != 0

    def describe(self, layer, **fused):
        return f"{self.target} + HQuantize" if self.needs_quantizer(layer) else self.target

    def convert(self, layer, settings, **fused):
        if not self.needs_quantizer(layer):
            return Conversion([self.p_class(**self.args(layer), name=settings.name)])
        quantizer = HQuantize(name=settings.unique_name(f"{settings.name}_q"), dtype="float64",
                              **settings.kwargs("beta", "paq_conf"))
        return Conversion([self.p_class(**self.args(layer), name=settings.name, dtype="float64"), quantizer])


class _ConvertsOnlyWhatExports:
    """A layer whose export problem also stops its conversion (the conversion needs what is missing)."""

    def check(self, layer):
        problem = self.export_problem(layer)
        return super().check(layer) or (None if problem is None else str(problem))


class _PoolingHandler(PassiveHandler):
    def args(self, layer):
        return {"pool_size": layer.pool_size, "strides": layer.strides, "padding": layer.padding}


class _AveragePoolingHandler(_ConvertsOnlyWhatExports, _AveragingHandler, _PoolingHandler):
    exports_doc = "yes (`padding` must be 'valid')"

    def export_problem(self, layer, **fused):
        if layer.padding != "valid":
            return ExportProblem(f"average pooling with padding={layer.padding!r} divides border windows by fewer "
                                 "values than inner ones, which hls4ml 1.3 does not reproduce",
                                 "use padding='valid'")
        return None

    def divisor(self, layer):
        return math.prod(layer.pool_size)


@register_builtin
class MaxPooling1DHandler(_PoolingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.MaxPooling1D,), (PMaxPooling1D,), PMaxPooling1D


@register_builtin
class MaxPooling2DHandler(_PoolingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.MaxPooling2D,), (PMaxPooling2D,), PMaxPooling2D


@register_builtin
class AveragePooling1DHandler(_AveragePoolingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.AveragePooling1D,), (PAveragePooling1D,), PAveragePooling1D


@register_builtin
class AveragePooling2DHandler(_AveragePoolingHandler):
    float_classes, hgq_classes, p_class = (keras.layers.AveragePooling2D,), (PAveragePooling2D,), PAveragePooling2D


class _WholeExtentMixin(_ConvertsOnlyWhatExports):
    """Global pooling works on the whole spatial extent: every size of it must be known."""

    def export_problem(self, layer, **fused):
        shape = tuple(layer.input.shape)
        if any(n is None for n in shape[1:-1]):
            return ExportProblem(f"it pools over axes of unknown size (input shape {shape}), so its window is unknown",
                                 "give those axes a size: an Input with a full shape, and e.g. EinsumDense("
                                 "output_shape=...) with the sequence length instead of None")
        return None


class _GlobalPoolingHandler(_WholeExtentMixin, _AveragingHandler):
    def args(self, layer):
        return {"keepdims": True} if layer.keepdims else {}

    def divisor(self, layer):
        """Spatial positions averaged over (from the float input's shape)."""
        return math.prod(int(n) for n in layer.input.shape[1:-1])

    def emit(self, layer, inputs, ctx):
        name = ctx.layer_name(layer)
        y = self.plain(layer, inputs[0], name, ctx)
        if not self.restores_rank(layer):
            return y
        # hls4ml 1.3's bit-exact pass gives this output the wrong rank; Flatten (and Reshape back to the
        # kept dimensions) restore it
        f, shape = ctx.frac_of(y), tuple(y.shape[1:])
        flat = keras.layers.Flatten(dtype=ctx.dtype, name=ctx.name(f"{name}_flat"))(y)
        ctx.pass_on(flat, y, f)
        if not layer.keepdims:
            return flat
        out = keras.layers.Reshape(shape, dtype=ctx.dtype, name=ctx.name(f"{name}_keepdims"))(flat)
        ctx.pass_on(out, y, f)
        return out

    def restores_rank(self, layer):
        return True


@register_builtin
class GlobalAveragePooling1DHandler(_GlobalPoolingHandler):
    float_classes = (keras.layers.GlobalAveragePooling1D,)
    hgq_classes, p_class = (PGlobalAveragePooling1D,), PGlobalAveragePooling1D

    def restores_rank(self, layer):
        return layer.keepdims


@register_builtin
class GlobalAveragePooling2DHandler(_GlobalPoolingHandler):
    float_classes = (keras.layers.GlobalAveragePooling2D,)
    hgq_classes, p_class = (PGlobalAveragePooling2D,), PGlobalAveragePooling2D



class _GlobalMaxPoolingHandler(_WholeExtentMixin, PassiveHandler):
    """Global max pooling, emitted as max pooling over the whole extent (hls4ml 1.3's bit-exact pass
    fails on its global max pooling), then Flatten unless ``keepdims``."""

    pool_class = None

    def args(self, layer):
        return {"keepdims": True} if layer.keepdims else {}

    def emit(self, layer, inputs, ctx):
        x, name = inputs[0], ctx.layer_name(layer)
        spatial = tuple(int(n) for n in x.shape[1:-1])
        pool = self.pool_class(pool_size=spatial, dtype=ctx.dtype,
                               name=name if layer.keepdims else ctx.name(f"{name}_pool"))
        y = pool(x)
        ctx.pass_on(y, x, np.max(ctx.frac_of(x), axis=tuple(range(1, len(spatial) + 1)), keepdims=True))
        if layer.keepdims:
            return y
        flat = keras.layers.Flatten(dtype=ctx.dtype, name=name)(y)
        ctx.pass_on(flat, y, ctx.frac_of(y).reshape(1, -1))
        return flat


@register_builtin
class GlobalMaxPooling1DHandler(_GlobalMaxPoolingHandler):
    float_classes = (keras.layers.GlobalMaxPooling1D,)
    hgq_classes, p_class, pool_class = (PGlobalMaxPooling1D,), PGlobalMaxPooling1D, keras.layers.MaxPooling1D


@register_builtin
class GlobalMaxPooling2DHandler(_GlobalMaxPoolingHandler):
    float_classes = (keras.layers.GlobalMaxPooling2D,)
    hgq_classes, p_class, pool_class = (PGlobalMaxPooling2D,), PGlobalMaxPooling2D, keras.layers.MaxPooling2D

"""``to_proxy_model``: a traced HGQ model as plain Keras layers plus fixed-point quantizers.

The proxy computes in float64. Each layer of the HGQ model is emitted by the handler
registered for its class (`hgq_rewrite.rewrite.handlers`: a kernel layer becomes the plain
Keras layer holding ``qkernel``/``qbias`` and a quantizer with its traced output format,
``HActivation`` a relu or a lookup table, P-layers their Keras base layers, ...), walked by
`builder.ProxyBuilder`. Nested models are flattened. Quantizers round like the HGQ layer (RND
unless configured otherwise) and overflow with WRAP (``aggressive=True``) or SAT.

One detail keeps hls4ml 1.3 exact on overflow: a quantizer never asks for more
fractional bits than its input can carry (`frac`). hls4ml drops such bits before
saturating (so SAT would clip to a different bound); the proxy drops them too,
which changes nothing for values inside the range.
"""

import hashlib
import warnings
import weakref

import numpy as np
import keras
from keras import ops

from ..compat.keras_private import functional_graph, keras_history
from ..layers.base import HLayerBase
from ..layers.links import link_model, walk_layers
from ..quantizers import NotTracedError
from ..quantizers.fixed_point import wrap_from_arguments
from .builder import F64, ProxyBuilder
from .errors import ProxyConversionError

__all__ = ["to_proxy_model", "export_analysis", "keep_for_export", "traced_overflow_is_wrap", "ProxyConversionError"]


def _check_traced(model):
    untraced = [
        layer.name for layer in walk_layers(model) if isinstance(layer, HLayerBase) and not layer.paq.is_traced()
    ]
    if untraced:
        shown = ", ".join(repr(n) for n in untraced[:5]) + (" ..." if len(untraced) > 5 else "")
        raise NotTracedError(
            f"to_proxy_model needs a calibrated model, but {len(untraced)} layer(s) have no calibration ({shown}): "
            "ranges left by training are not one. Call hgq_rewrite.trace_minmax(model, calibration_data) first."
        )


def _check_built(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_proxy_model expects a keras.Model, got {type(model).__name__}.")
    if not model.built or functional_graph(model) is None:
        raise ProxyConversionError(f"Model {model.name!r} is not built: call it on data or build it first.")


def _build(model, aggressive, max_table_bits, name=None):
    """Run the proxy builder on a built, linked model; return (proxy, builder)."""
    builder = ProxyBuilder(aggressive, max_table_bits)
    functional = functional_graph(model)
    inputs = []
    for t in functional.inputs:
        input_name = builder.name(keras_history(t)[0].name)
        inputs.append(keras.Input(shape=tuple(t.shape[1:]), dtype=F64, name=input_name))
    outputs = builder.run(functional, inputs)
    proxy = keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=name or f"{model.name}_proxy",
    )
    return proxy, builder


# model -> (fingerprint, proxy) built by the last export_analysis, handed out once by to_proxy_model
_built_proxies = weakref.WeakKeyDictionary()


def _fingerprint(model, aggressive, max_table_bits):
    digest = hashlib.sha1(repr((model.name, bool(aggressive), int(max_table_bits))).encode())
    for w in model.weights:
        digest.update(np.ascontiguousarray(ops.convert_to_numpy(w)).tobytes())
    return digest.hexdigest()


def export_analysis(model, aggressive=True, max_table_bits=16):
    """What the exported firmware does with a traced model.

    Returns ``(formats, float32_inexact, proxy)``: ``formats`` is ``[(quantizer, (k, i, f)), ...]``, the
    format each HGQ activation quantizer gets in the firmware (arrays of shape ``(1, *features)``:
    the traced format, with no more fractional bits than the quantizer's input carries, since
    hls4ml drops the others before it rounds and saturates); ``float32_inexact`` names the layers
    whose sums may need more than float32's 24 significant bits. Raises
    :class:`ProxyConversionError` for a model that cannot be exported. ``proxy`` is the proxy
    built on the way (see :func:`keep_for_export`).
    """
    _check_built(model)
    link_model(model)
    proxy, builder = _build(model, aggressive, max_table_bits)
    return list(builder.formats.values()), list(builder.float32_inexact), proxy


def keep_for_export(model, proxy, aggressive=True, max_table_bits=16):
    """Hand ``proxy`` to the next ``to_proxy_model(model)`` call, if the model does not change before it."""
    _built_proxies[model] = (_fingerprint(model, aggressive, max_table_bits), proxy)


def traced_overflow_is_wrap(model):
    """True (WRAP) or False (SAT): the overflow the calibrated HGQ model emulates; None if not calibrated."""
    for layer in walk_layers(model):
        if isinstance(layer, HLayerBase) and layer.paq.is_traced():
            return not layer.paq.saturates()
    return None


def to_proxy_model(model, aggressive=None, max_table_bits=16, name=None, overflow=None):
    """Rebuild a traced HGQ model as a float64 Keras model hls4ml converts bit-exactly.

    Args:
        model: HGQ model (Sequential or functional, nested models allowed) after ``trace_minmax``.
        aggressive: overflow mode of the quantizers: ``True`` -> WRAP (cheapest hardware), ``False`` -> SAT.
            ``None`` (default): the mode given to ``trace_minmax`` (WRAP unless told otherwise). Inside the
            traced ranges both give the same outputs.
        max_table_bits: largest input width (bits) of a lookup table made for a non-linear ``HActivation``.
        name: name of the proxy model (default ``<model name>_proxy``).
        overflow: ``"WRAP"`` or ``"SAT"``, the same choice as ``aggressive`` by name.

    The calibrated HGQ model computes exactly what the proxy computes (formats and overflow included)
    when ``aggressive`` is the mode given to ``trace_minmax``; otherwise this warns, and the model is
    left as it is (call ``trace_minmax(..., aggressive=...)`` to make it follow the other mode).

    Returns:
        A ``keras.Model`` of plain layers, :class:`FixedPointQuantizer` and :class:`UnaryLUT`, dtype float64.
        Save it with ``proxy.save("x.keras")``; loading needs only ``import hgq_rewrite``.

    Raises:
        NotTracedError: ``trace_minmax`` was not run since the last training step.
        ProxyConversionError: a layer cannot be exported; the message names it and the remedy.
    """
    _check_built(model)
    link_model(model)
    _check_traced(model)
    traced_wrap = traced_overflow_is_wrap(model)
    aggressive = wrap_from_arguments(overflow, aggressive, "to_proxy_model")
    aggressive = traced_wrap if aggressive is None else aggressive
    cached = _built_proxies.pop(model, None)
    if name is None and cached is not None and cached[0] == _fingerprint(model, aggressive, max_table_bits):
        return cached[1]  # built by trace_minmax from this very state
    proxy, builder = _build(model, aggressive, max_table_bits, name)
    differs = [paq.owner for paq, kif in builder.formats.values() if not paq.emulates(kif, saturate=not aggressive)]
    if differs:
        shown = ", ".join(repr(n) for n in differs[:5]) + (" ..." if len(differs) > 5 else "")
        warnings.warn(
            f"to_proxy_model: the HGQ model was calibrated for other firmware than this proxy ({shown}: "
            f"aggressive={traced_wrap} at trace_minmax, {aggressive} here), so the two differ on inputs outside the "
            f"calibrated ranges. Call trace_minmax(model, data, aggressive={aggressive}) to make the model follow."
        )
    return proxy

"""Converter registry: which converter turns a float layer class into HGQ layers.

Lookup (`find_converter`) walks the layer's class MRO, most derived first; at
each class a user converter (`register_converter`) wins over a built-in one.
So an exact-class registration beats one for a base class, and a subclass of
``Dense`` is converted like a ``Dense`` unless something more specific exists.

A converter is a function ``fn(layer, settings)`` returning a new layer, a
list of layers applied one after the other, or a `Conversion` (layers plus a
weight-transfer callback run once the new model is built)::

    @hgq_rewrite.register_converter(MyDense)
    def convert_my_dense(layer, settings):
        new = HDense(layer.units, name=settings.name,
                     **settings.kwargs("beta", "kq_conf", "paq_conf", "parallel_factor"))

        def transfer():                      # runs once the new model is built
            new.kernel.assign(layer.kernel)
            new.bias.assign(layer.bias)
            new.adapt_kernel_bits()

        return Conversion([new], transfer)

``settings`` is a `LayerSettings`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

# Constructor keyword -> settings attribute
_KWARGS = {"beta": "beta", "kq_conf": "kq_conf", "paq_conf": "paq_conf", "parallel_factor": "parallel_factor"}


@dataclass
class LayerSettings:
    """The resolved settings handed to a converter.

    Attributes:
        path: nested path of the float layer.
        name: name the new layer should take (the float layer's name).
        beta, parallel_factor: resolved fields (``parallel_factor`` None = layer default).
        kq_conf, paq_conf: kernel / activation quantizer configs.
    """

    path: str
    name: str
    beta: float = 0.0
    parallel_factor: int | None = None
    kq_conf: dict = field(default_factory=dict)
    paq_conf: dict = field(default_factory=dict)
    namer: object = None

    def unique_name(self, base):
        """A layer name based on ``base`` that is free in the model being built."""
        return self.namer(base) if self.namer is not None else base

    def kwargs(self, *names):
        """Constructor keywords among ``beta``, ``kq_conf``, ``paq_conf``, ``parallel_factor``.

        ``parallel_factor`` is left out when None; empty quantizer configs too.
        """
        out = {}
        for n in names:
            v = getattr(self, _KWARGS[n])
            if v is None or (isinstance(v, dict) and not v):
                continue
            out[n] = dict(v) if isinstance(v, dict) else v
        return out


@dataclass
class Conversion:
    """What a converter returns.

    Attributes:
        layers: new layers; the first receives the call's inputs, each next one
            the previous one's output.
        transfer: optional ``transfer()`` called once the new model is built
            (weights exist then), to copy the float weights over.
    """

    layers: list
    transfer: object = None


class Converter:
    """Base class of converters.

    Attributes:
        target: name of the produced layer class(es), for `explain`.
        fields: config fields the produced layers use (shown by `explain`).
        quantized_input: True if the produced layers need quantized inputs
            (an HQuantize is then placed after float producers).
        quantized_output: True if the produced layers' outputs are quantized.
    """

    target = "?"
    fields = ("beta", "kernel", "activation", "parallel_factor")
    quantized_input = True
    quantized_output = True
    builtin = False
    fold_only = False  # True: only usable folded into another layer (BatchNormalization)

    def needs_quantized_inputs(self, layer):
        """True if the new layers need quantized inputs (default: ``quantized_input``)."""
        return self.quantized_input

    def notes(self, layer):
        """Remarks for `explain`, e.g. float settings that are not carried over."""
        return []

    def check(self, layer):
        """Return None if ``layer`` can be converted, else the reason it cannot."""
        return None

    def describe(self, layer):
        """Target shown by `explain` for this layer."""
        return self.target

    def convert(self, layer, settings: LayerSettings) -> Conversion:
        raise NotImplementedError


class FunctionConverter(Converter):
    """Adapter for a converter written as a plain function."""

    def __init__(self, fn, target=None, fields=None, quantized_input=True, quantized_output=True):
        self.fn = fn
        self.target = target or getattr(fn, "__name__", repr(fn))
        if fields is not None:
            self.fields = tuple(fields)
        self.quantized_input = quantized_input
        self.quantized_output = quantized_output

    def convert(self, layer, settings):
        return as_conversion(self.fn(layer, settings))


def as_conversion(result) -> Conversion:
    if isinstance(result, Conversion):
        return result
    if isinstance(result, (list, tuple)):
        return Conversion(list(result))
    return Conversion([result])


_USER: dict = {}
_BUILTIN: dict = {}


def register_converter(float_class, *, target=None, fields=None, quantized_input=True, quantized_output=True):
    """Decorator registering a converter for ``float_class`` (and its subclasses).

    Args:
        float_class: the float Keras layer class handled.
        target: name shown by `explain` (default: the function's name).
        fields: config fields the converter uses (default: all).
        quantized_input: whether the new layers need quantized inputs.
        quantized_output: whether the new layers' outputs are quantized.

    The decorated object is a function ``fn(layer, settings) -> layer | [layers] |
    Conversion`` or a `Converter` subclass; it is returned unchanged.
    """
    if not isinstance(float_class, type):
        raise TypeError(f"register_converter expects a layer class, got {float_class!r}.")

    def deco(obj):
        if isinstance(obj, type) and issubclass(obj, Converter):
            conv = obj()
        elif isinstance(obj, Converter):
            conv = obj
        elif callable(obj):
            conv = FunctionConverter(obj, target, fields, quantized_input, quantized_output)
        else:
            raise TypeError(f"Cannot register {obj!r} as a converter: expected a function or Converter.")
        if float_class in _USER:
            warnings.warn(f"Replacing the converter registered for {float_class.__name__}.", stacklevel=2)
        _USER[float_class] = conv
        return obj

    return deco


def unregister_converter(float_class):
    """Remove the user converter of ``float_class`` (built-ins are kept)."""
    _USER.pop(float_class, None)


def register_builtin(*float_classes):
    """Class decorator used by `converters/` for the built-in converters."""

    def deco(cls):
        conv = cls()
        conv.builtin = True
        for fc in float_classes:
            _BUILTIN[fc] = conv
        return cls

    return deco


def builtin_converters():
    """``{float class: converter}`` of the built-in converters (a copy)."""
    from . import converters  # noqa: F401  (registers the built-ins)

    return dict(_BUILTIN)


def user_converters():
    """``{float class: converter}`` registered with `register_converter` (a copy)."""
    return dict(_USER)


def find_converter(layer_class):
    """Return ``(converter, matched_class)`` for ``layer_class``, or ``(None, None)``."""
    from . import converters  # noqa: F401  (registers the built-ins)

    for klass in layer_class.__mro__:
        if klass in _USER:
            return _USER[klass], klass
        if klass in _BUILTIN:
            return _BUILTIN[klass], klass
    return None, None

"""The handler registry: which `LayerHandler` converts a float class, and which exports an HGQ class.

Both lookups walk the class MRO, most derived first; at each class a user handler
(`register_handler`, `register_converter`) wins over a built-in one. So an exact-class
registration beats one for a base class, and a subclass of ``Dense`` is handled like a
``Dense`` unless something more specific exists. The built-in handlers
(`hgq_rewrite.rewrite.handlers`) register themselves when `hgq_rewrite.rewrite` is imported.

A user handler gets the whole path (conversion, BatchNorm folding and activation fusion if
it declares them, the exportability check in `explain`, the proxy)::

    @hgq_rewrite.register_handler
    class ScaledDenseHandler(LayerHandler):
        float_classes = (ScaledDense,)
        hgq_classes = (HScaledDense,)
        ...

`register_converter` registers a conversion-only handler (a function ``fn(layer, settings)``
or a `Converter`); the layers it builds export through the handlers of their classes.
"""

from __future__ import annotations

import warnings

from .handler import FunctionConverter, LayerHandler

_USER = {"float": {}, "hgq": {}}
_BUILTIN = {"float": {}, "hgq": {}}


def _instance(obj, what):
    if isinstance(obj, type) and issubclass(obj, LayerHandler):
        return obj()
    if isinstance(obj, LayerHandler):
        return obj
    raise TypeError(f"Cannot register {obj!r} as a {what}: expected a LayerHandler subclass or instance.")


def _check_classes(handler):
    classes = tuple(handler.float_classes) + tuple(handler.hgq_classes)
    if not classes:
        raise TypeError(f"{type(handler).__name__} declares no float_classes and no hgq_classes: nothing to handle.")
    for c in classes:
        if not isinstance(c, type):
            raise TypeError(f"{type(handler).__name__}: {c!r} in float_classes/hgq_classes is not a class.")


def _put(table, klass, handler):
    if klass in table:
        warnings.warn(f"Replacing the handler registered for {klass.__name__}.", stacklevel=3)
    table[klass] = handler


def register_handler(handler):
    """Register a `LayerHandler` (class or instance) for its ``float_classes`` and ``hgq_classes``.

    Usable as a class decorator; returns its argument unchanged.
    """
    h = _instance(handler, "handler")
    _check_classes(h)
    for c in h.float_classes:
        _put(_USER["float"], c, h)
    for c in h.hgq_classes:
        _put(_USER["hgq"], c, h)
    return handler


def unregister_handler(handler):
    """Remove a user handler (the class or instance given to `register_handler`) everywhere."""
    for table in _USER.values():
        for klass, h in list(table.items()):
            if h is handler or type(h) is handler:
                del table[klass]


def register_converter(float_class, *, target=None, fields=None, quantized_input=True, quantized_output=True):
    """Decorator registering a converter for ``float_class`` (and its subclasses).

    Args:
        float_class: the float Keras layer class handled.
        target: name shown by `explain` (default: the function's name).
        fields: config fields the converter uses (default: all).
        quantized_input: whether the new layers need quantized inputs.
        quantized_output: whether the new layers' outputs are quantized.

    The decorated object is a function ``fn(layer, settings) -> layer | [layers] |
    Conversion`` or a `Converter` (any `LayerHandler`) class or instance; it is returned unchanged. The layers it builds
    export through the handlers registered for their classes.
    """
    if not isinstance(float_class, type):
        raise TypeError(f"register_converter expects a layer class, got {float_class!r}.")

    def deco(obj):
        if isinstance(obj, LayerHandler) or (isinstance(obj, type) and issubclass(obj, LayerHandler)):
            conv = _instance(obj, "converter")
        elif callable(obj) and not isinstance(obj, type):
            conv = FunctionConverter(obj, target, fields, quantized_input, quantized_output)
        else:
            raise TypeError(f"Cannot register {obj!r} as a converter: expected a function or Converter.")
        _put(_USER["float"], float_class, conv)
        return obj

    return deco


def unregister_converter(float_class):
    """Remove the user converter of ``float_class`` (built-ins are kept)."""
    _USER["float"].pop(float_class, None)


def register_builtin(handler_class):
    """Class decorator of the built-in handlers (`hgq_rewrite.rewrite.handlers`)."""
    h = handler_class()
    h.builtin = True
    _check_classes(h)
    for c in h.float_classes:
        _BUILTIN["float"][c] = h
    for c in h.hgq_classes:
        _BUILTIN["hgq"][c] = h
    return handler_class


def builtin_converters():
    """``{float class: handler}`` of the built-in handlers, in registration order (a copy)."""
    return dict(_BUILTIN["float"])


def user_converters():
    """``{float class: handler}`` registered by users (a copy)."""
    return dict(_USER["float"])


def _find(kind, klass):
    for k in klass.__mro__:
        if k in _USER[kind]:
            return _USER[kind][k], k
        if k in _BUILTIN[kind]:
            return _BUILTIN[kind][k], k
    return None, None


def find_converter(layer_class):
    """``(handler, matched_class)`` converting float ``layer_class``, or ``(None, None)``."""
    return _find("float", layer_class)


def find_exporter(layer_class):
    """The handler emitting proxy layers for ``layer_class`` (an HGQ or kept-float class), or None."""
    return _find("hgq", layer_class)[0]


def fusable_activations():
    """Every activation some registered handler can fuse into the layer before it."""
    names = set()
    for table in (_USER["float"], _BUILTIN["float"]):
        for h in table.values():
            names.update(h.fuses_activation)
    return names

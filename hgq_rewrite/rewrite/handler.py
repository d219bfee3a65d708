"""The handler contract: one class per layer family knows that family end to end.

A `LayerHandler` declares the float Keras classes it converts (``float_classes``) and the
HGQ classes it exports (``hgq_classes``), and implements:

* ``convert(layer, settings, **fused)``: float layer → HGQ layer(s) (a `Conversion`);
* ``export_problem(layer, **fused)``: None, or an `ExportProblem` saying why the layer (float,
  at plan time; HGQ, at export) cannot be exported bit-exactly, and the remedy;
* ``emit(layer, inputs, ctx)``: HGQ layer → proxy layers (``ctx`` is the proxy builder,
  `hgq_rewrite.proxy.builder.ProxyBuilder`).

The EBOPs rule of a family is its H-layer's (``has_cost`` / ``ebops_of_call``, see
`hgq_rewrite.layers.base.HLayerBase`): training, `trace_minmax` and the callbacks call it on
the layer, so a handler's ``hgq_classes`` bring their EBOPs with them.

BatchNorm folding and activation fusion are capabilities a handler declares:
``folds_batchnorm = True`` makes the plan fold a following ``BatchNormalization`` into the
layer (``convert`` then gets ``bn=``), ``fuses_activation = ("relu",)`` fuses a following
activation layer computing one of these (``convert`` gets ``activation=``). A handler whose
float layer is only ever absorbed into the layer before it sets ``fold_only = True``; an
activation handler tells the planner what it computes with ``fusable_activation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Constructor keyword -> settings attribute
_KWARGS = {"beta": "beta", "kq_conf": "kq_conf", "paq_conf": "paq_conf", "parallel_factor": "parallel_factor"}


@dataclass
class LayerSettings:
    """The resolved settings handed to ``convert``.

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
    """What ``convert`` returns.

    Attributes:
        layers: new layers; the first receives the call's inputs, each next one
            the previous one's output.
        transfer: optional ``transfer()`` called once the new model is built
            (weights exist then), to copy the float weights over.
        call_inputs: optional ``call_inputs(args, kwargs)`` giving what the first new layer is
            called with, from the float call's arguments (default: called like the float layer).
    """

    layers: list
    transfer: object = None
    call_inputs: object = None


def as_conversion(result) -> Conversion:
    """A `Conversion` from what ``convert`` returned (a layer, a list of layers, or a Conversion)."""
    if isinstance(result, Conversion):
        return result
    if isinstance(result, (list, tuple)):
        return Conversion(list(result))
    return Conversion([result])


@dataclass(frozen=True)
class ExportProblem:
    """Why a layer cannot be exported bit-exactly to hls4ml 1.3, and what to do about it."""

    why: str
    remedy: str

    def __str__(self):
        return f"{self.why}; remedy: {self.remedy}"


class LayerHandler:
    """One layer family: conversion, exportability and proxy emission (see the module docstring).

    Attributes:
        float_classes: float Keras classes converted (subclasses too, unless registered themselves).
        hgq_classes: HGQ (or plain Keras) classes whose proxy layers ``emit`` writes.
        target: name of the produced layer class(es), for `explain`.
        fields: config fields the produced layers use (shown by `explain`).
        quantized_input: the produced layers need quantized inputs (an HQuantize is
            then placed after float producers).
        quantized_output: the produced layers' outputs are quantized.
        folds_batchnorm: a following BatchNormalization can be folded in (``convert(bn=...)``).
        fuses_activation: activations a following activation layer may fuse in (``convert(activation=...)``).
        fold_only: the float layer only exists folded into the layer before it (BatchNormalization).
        exports_known: ``export_problem`` answers at plan time (False: only the built layers tell).
        exports_doc: what ``export_problem`` allows, in words (the "exports exactly" column of
            docs/layers.md).
    """

    float_classes: tuple = ()
    hgq_classes: tuple = ()
    target = "?"
    fields = ("beta", "kernel", "activation", "parallel_factor")
    quantized_input = True
    quantized_output = True
    folds_batchnorm = False
    fuses_activation: tuple = ()
    fold_only = False
    exports_known = True
    exports_doc = "yes"
    builtin = False
    note_base_class = True  # explain notes "via the handler of base class X" for subclasses

    # -- float -> HGQ -------------------------------------------------------------------------
    def check(self, layer):
        """None if ``layer`` can be converted, else the reason it cannot."""
        return None

    def notes(self, layer):
        """Remarks for `explain`, e.g. float settings that are not carried over."""
        return []

    def activation_of(self, layer):
        """Name of the activation the float layer applies itself (a fused one needs ``"linear"``)."""
        return "linear"

    def fusable_activation(self, layer):
        """For an activation layer: the activation it computes, which a handler may fuse; else None."""
        return None

    def needs_quantized_inputs(self, layer):
        """True if the new layers need quantized inputs (default: ``quantized_input``)."""
        return self.quantized_input

    def describe(self, layer, **fused):
        """Target shown by `explain` for this layer."""
        return self.target

    def convert(self, layer, settings: LayerSettings, **fused) -> Conversion:
        """The new layer(s) for ``layer``; ``fused`` holds ``bn=`` / ``activation=`` when declared."""
        raise NotImplementedError(f"{type(self).__name__} does not convert float layers.")

    # -- exportability ------------------------------------------------------------------------
    def export_problem(self, layer, **fused):
        """None if ``layer`` (float, or the HGQ layer) exports bit-exactly, else an `ExportProblem`."""
        return None

    # -- HGQ -> proxy -------------------------------------------------------------------------
    def emit(self, layer, inputs, ctx):
        """Proxy tensor(s) computing ``layer`` on the proxy tensors ``inputs`` (``ctx``: the proxy builder)."""
        raise NotImplementedError(f"{type(self).__name__} does not export layers.")


class Converter(LayerHandler):
    """A handler that only converts (what `register_converter` registers): the layers it builds
    export through the handlers of their own classes, so `explain` cannot tell in advance."""

    exports_known = False
    exports_doc = "checked by `to_proxy_model` on the layers it builds"


class FunctionConverter(Converter):
    """A converter written as a plain function ``fn(layer, settings)``."""

    def __init__(self, fn, target=None, fields=None, quantized_input=True, quantized_output=True):
        self.fn = fn
        self.target = target or getattr(fn, "__name__", repr(fn))
        if fields is not None:
            self.fields = tuple(fields)
        self.quantized_input = quantized_input
        self.quantized_output = quantized_output

    def convert(self, layer, settings, **fused):
        return as_conversion(self.fn(layer, settings))

"""The two entry points: `quantize` (rewrite a float model) and `explain` (dry run)."""

from __future__ import annotations

import warnings

import keras

from ..quantizers.config import check_beta
from .build import build_model
from .init_bits import DEFAULT_TOLERANCE, init_bits
from .errors import ConfigError, UnsupportedLayerError
from .plan import Plan
from .planner import make_plan
from .policy import format_unmatched


def explain(model, config=None, *, beta=None) -> Plan:
    """Show what `quantize` would do, without building anything.

    Args:
        model: a built Functional or Sequential float `keras.Model`.
        config: rewrite config (dict, or YAML/JSON file path); see `policy`.
        beta: default EBOPs penalty of every HGQ layer.

    Returns:
        A `Plan`: per layer path the float class, the decision (converted to X,
        folded/fused into Y, kept float by rule Z, unsupported), the resolved
        settings and the rule that set each. ``print(plan)`` shows a table,
        ``plan.to_dict()`` the same data. Config keys matching no layer are
        listed in ``plan.unmatched`` (`quantize` raises on them).

    Raises:
        UnsupportedModelError: subclassed or unbuilt model.
        ConfigError: malformed config (unknown section/field, bad value or regex).
    """
    _check_arguments("explain", model, beta)
    return make_plan(model, config, beta)


def _check_arguments(fn, model, beta):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{fn}: model must be a keras.Model (Functional or Sequential, built), got {type(model).__name__}."
        )
    if beta is not None:
        try:
            check_beta(beta, f"{fn}")
        except ValueError as e:
            raise ConfigError(f"{str(e).rstrip('.')} (or None to keep the config's beta).") from None


def quantize(model, config=None, *, beta=None, strict=None, calibration_data=None, init_tolerance=DEFAULT_TOLERANCE):
    """Rewrite a float Keras model into an HGQ model, with its trained weights.

    Every supported layer becomes its HGQ counterpart (Dense → HDense, Conv2D →
    HConv2D, ...; a BatchNormalization after a Dense/Conv is folded into it, a
    relu after one is fused), an HQuantize is put after every model input and
    after every float layer feeding HGQ layers, and nested models are rebuilt
    in place. The float model and the config are not modified.

    Args:
        model: a built Functional or Sequential float `keras.Model`.
        config: rewrite config (dict, or YAML/JSON file path): sections
            ``defaults``, ``types``, ``patterns``, ``names``; a rule ``None``
            keeps the matching layers float. See `hgq_rewrite.rewrite.policy`.
        beta: default EBOPs penalty of every HGQ layer.
        strict: ``True``: config keys that match no layer raise `ConfigError`, and layers that
            will not export bit-exactly to hls4ml (``explain`` says which, why, and the remedy)
            raise `UnsupportedLayerError`. ``None`` (default): unmatched keys raise, layers that
            will not export only warn. ``False``: both only warn.
        calibration_data: inputs of the float model (array or list of arrays). If given,
            every quantizer's initial bits are set from the trained weights and these
            data (`init_bits`): the fewest bits keeping the output within
            ``init_tolerance`` of the float output. None: the configured ``init_bw``.
        init_tolerance: relative RMS output error allowed by `init_bits` (float, or a dict
            ``{layer name: float or None, "*": default}``; None keeps a layer's ``init_bw``).

    Returns:
        The HGQ `keras.Model` (uncompiled; same kind and layer names).

    Raises:
        UnsupportedModelError: subclassed or unbuilt model.
        ConfigError: malformed config, or (``strict`` not False) keys that match nothing.
        UnsupportedLayerError: layers without a converter that the config does not keep float,
            or (``strict=True``) layers that will not export.
    """
    _check_arguments("quantize", model, beta)
    plan = make_plan(model, config, beta)
    if plan.unmatched:
        msg = "Rewrite config keys match no layer:\n  - " + format_unmatched(plan.unmatched)
        if strict is not False:
            raise ConfigError(msg + "\n(Use strict=False to only warn; explain(model, config) shows every layer path.)")
        warnings.warn(msg, stacklevel=2)
    bad = plan.unsupported
    if bad:
        lines = "\n  - ".join(f"{e.path!r}: {e.reason}" for e in bad)
        keep = ", ".join(f"{e.path!r}: None" for e in bad)
        raise UnsupportedLayerError(
            f"{len(bad)} layer(s) cannot be converted:\n  - {lines}\n"
            "Either register a converter for the class with "
            "@hgq_rewrite.register_converter(TheClass), or keep the layer(s) float with "
            f"config={{'names': {{{keep}}}}}."
        )
    _check_exports(plan, strict)
    for lp in plan._internal.plans.values():
        if lp.auto_float:
            warnings.warn(f"{lp.path!r} is kept float: {lp.reason}", stacklevel=2)
    if not plan.by_decision("convert"):
        warnings.warn(f"quantize({model.name!r}): no layer was converted; the result is a float copy.", stacklevel=2)
    qmodel = build_model(plan._internal)
    if calibration_data is not None:
        init_bits(qmodel, calibration_data, init_tolerance)
    return qmodel


def _check_exports(plan, strict):
    """Refuse (``strict=True``) or warn about the layers that will not export bit-exactly."""
    bad = plan.not_exportable
    if not bad:
        return
    lines = "\n  - ".join(f"{e.path!r}: {e.exports[len('no: '):]}" for e in bad)
    msg = f"{len(bad)} layer(s) will not export bit-exactly to hls4ml:\n  - {lines}"
    if strict is True:
        raise UnsupportedLayerError(msg + "\n(Use strict=None to only warn; explain(model) shows every layer.)")
    warnings.warn(msg, stacklevel=3)

"""Default quantizer configurations and their validation.

A quantizer config is a plain dict:

- ``init_bw``: initial bits (a finite number). Kernels: significant bits per weight,
  >= 1 (the fractional bits are adapted to each weight's magnitude). Activations:
  fractional bits, >= 0.
- ``granularity``: which elements share one bitwidth: ``"element"`` (per weight,
  or per activation element shared over the batch), ``"channel"`` (per last
  axis), ``"tensor"`` (one for all), or a tuple of axes that share one bitwidth.
- ``rounding``: ``"RND"`` (half up), ``"TRN"`` (floor) or ``"RND_CONV"``.
- ``bw_clip``: (min, max) clip of the fractional bits (finite, min <= max).
- ``trainable``: whether the bits are trained (a bool; the string "false" is refused).
- ``l1``: strength of the bit-count penalty ``l1 * sum(f)`` (finite, >= 0): added to every bitwidth's
  gradient in training; not a term of the logged loss.
- ``prune_margin`` (kernels only): bits below a weight's float magnitude down to which the EBOPs
  penalty keeps lowering its fractional bits once it rounds to zero (finite, >= 0; 0 stops at the
  rounding threshold). A pruned weight then has to grow about ``2**prune_margin`` times to come back.

`validate_config` is the one place these values are checked; `check_beta` is the
one check of the EBOPs penalty ``beta`` (finite, >= 0).
"""

import copy
import difflib
import math
from numbers import Integral, Real

import numpy as np

from .fixed_point import ROUNDING_MODES

_FIELDS = ("init_bw", "granularity", "rounding", "bw_clip", "trainable", "l1", "prune_margin")
_KERNEL_ONLY = ("prune_margin",)
GRANULARITIES = ("element", "channel", "tensor")

_LIBRARY_KQ = dict(init_bw=4.0, granularity="element", rounding="RND", bw_clip=(-23, 23), trainable=True, l1=1e-6,
                   prune_margin=3.0)
_LIBRARY_PAQ = dict(init_bw=8.0, granularity="element", rounding="RND", bw_clip=(-23, 23), trainable=True, l1=1e-6)

_defaults = {"kernel": dict(_LIBRARY_KQ), "activation": dict(_LIBRARY_PAQ)}


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def check_beta(value, where="beta"):
    """``value`` as a float if it is a finite number >= 0 (the EBOPs penalty), else ``ValueError``.

    The one check of beta: `quantize` / `explain`, rewrite configs, layers and schedules use it.
    """
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: beta must be a finite number >= 0, got {value!r}.")
    return float(value)


def _check_init_bw(value, role):
    low = 1 if role == "kernel" else 0
    what = {"kernel": "significant bits of each weight", "activation": "fractional bits"}.get(role, "initial bits")
    if not _is_number(value) or not math.isfinite(value) or value < low:
        raise ValueError(f"init_bw ({what}) must be a finite number >= {low}, got {value!r}")
    return float(value)


def _check_granularity(value):
    if isinstance(value, str):
        if value not in GRANULARITIES:
            raise ValueError(f"granularity {value!r} is not one of {', '.join(GRANULARITIES)} or a list of axes")
        return value
    if isinstance(value, (tuple, list)):
        if not all(isinstance(a, Integral) and not isinstance(a, (bool, np.bool_)) for a in value):
            raise ValueError(f"granularity {value!r}: a list of axes must hold integers")
        axes = tuple(int(a) for a in value)
        if len(set(axes)) != len(axes):
            raise ValueError(f"granularity {value!r} names an axis twice")
        return axes
    raise ValueError(f"granularity {value!r} is not one of {', '.join(GRANULARITIES)} or a list of axes")


def _check_bw_clip(value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"bw_clip must be a pair (min, max) of fractional bits, got {value!r}")
    lo, hi = value
    if not all(_is_number(v) and math.isfinite(v) for v in (lo, hi)):
        raise ValueError(f"bw_clip must be a pair (min, max) of finite numbers, got {value!r}")
    if lo > hi:
        raise ValueError(f"bw_clip {value!r} must be (min, max) with min <= max")
    return (float(lo), float(hi))


def _check_trainable(value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"trainable must be true or false (a bool), got {value!r}")
    return bool(value)


def _check_l1(value):
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"l1 must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_prune_margin(value):
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"prune_margin must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_rounding(value):
    if not isinstance(value, str) or value not in ROUNDING_MODES:
        raise ValueError(f"rounding {value!r} is not one of {', '.join(ROUNDING_MODES)}")
    return value


def validate_config(conf, where="quantizer config", role=None):
    """Check the names, types and ranges of quantizer fields; return a checked copy.

    The one place quantizer fields are validated, names included (the rewrite policy, the
    layers and ``set_default_*_conf`` call it). Values come back normalised: numbers as floats,
    ``trainable`` as a bool, ``granularity`` axes and ``bw_clip`` as tuples.

    Args:
        conf: a dict of quantizer fields (any subset of them).
        where: names the owner in errors (``"kq_conf of layer 'dense'"``).
        role: ``"kernel"`` (``init_bw`` >= 1: kernels keep at least one significant bit) or
            ``"activation"`` / None (``init_bw`` >= 0).

    Raises:
        ValueError: one line naming ``where``, the field and the value at fault.
    """
    if not isinstance(conf, dict):
        raise ValueError(f"{where}: a quantizer config must be a mapping of fields, got {conf!r}.")
    unknown = sorted(map(str, set(conf) - set(_FIELDS)))
    if unknown:
        close = sorted({c for u in unknown for c in difflib.get_close_matches(u, _FIELDS, n=2, cutoff=0.6)})
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"{where}: unknown field(s) {unknown}{hint}; valid fields are {list(_FIELDS)}.")
    misplaced = [name for name in _KERNEL_ONLY if name in conf and role == "activation"]
    if misplaced:
        raise ValueError(f"{where}: {misplaced[0]!r} applies to kernel quantizers only; move it to the kernel config.")
    out = {}
    for name, value in conf.items():
        try:
            out[name] = _init_bw_checker(role)(value) if name == "init_bw" else _CHECKS[name](value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}.") from None
    return out


_CHECKS = {
    "granularity": _check_granularity,
    "rounding": _check_rounding,
    "bw_clip": _check_bw_clip,
    "trainable": _check_trainable,
    "l1": _check_l1,
    "prune_margin": _check_prune_margin,
}


def _init_bw_checker(role):
    return lambda value: _check_init_bw(value, role)


def check_granularity_rank(granularity, shape, where="quantizer"):
    """Raise ``ValueError`` if the shared axes of ``granularity`` do not exist in a tensor of ``shape``."""
    if isinstance(granularity, str):
        return
    rank = len(shape)
    bad = [a for a in granularity if not -rank <= a < rank]
    if bad:
        raise ValueError(
            f"{where}: granularity {tuple(granularity)!r} names axes {bad} that a rank-{rank} tensor of shape "
            f"{tuple(shape)} does not have (valid axes: {-rank}..{rank - 1})."
        )


def _merged(role, conf, where):
    out = copy.deepcopy(_defaults[role])
    out.update(validate_config(conf or {}, where, role))
    return out


def kernel_config(conf=None, where="kq_conf"):
    """The global kernel defaults updated by ``conf``."""
    return _merged("kernel", conf, where)


def activation_config(conf=None, where="paq_conf"):
    """The global activation defaults updated by ``conf``."""
    return _merged("activation", conf, where)


def get_default_kq_conf():
    """A copy of the global kernel-quantizer defaults."""
    return copy.deepcopy(_defaults["kernel"])


def get_default_paq_conf():
    """A copy of the global activation-quantizer defaults."""
    return copy.deepcopy(_defaults["activation"])


def set_default_kq_conf(conf=None, **fields):
    """Change global kernel defaults (fields not given keep their value). Affects layers built later."""
    _defaults["kernel"].update(validate_config({**(conf or {}), **fields}, "set_default_kq_conf", "kernel"))


def set_default_paq_conf(conf=None, **fields):
    """Change global activation defaults (fields not given keep their value). Affects layers built later."""
    _defaults["activation"].update(validate_config({**(conf or {}), **fields}, "set_default_paq_conf", "activation"))


def reset_default_confs():
    """Restore the library's kernel and activation defaults."""
    _defaults["kernel"] = dict(_LIBRARY_KQ)
    _defaults["activation"] = dict(_LIBRARY_PAQ)

"""Default quantizer configurations and their validation.

A quantizer config is a plain dict:

- ``init_bw``: initial bits. Kernels: significant bits per weight (the fractional
  bits are adapted to each weight's magnitude). Activations: fractional bits.
- ``granularity``: which elements share one bitwidth: ``"element"`` (per weight,
  or per activation element shared over the batch), ``"channel"`` (per last
  axis), ``"tensor"`` (one for all), or a tuple of axes that share one bitwidth.
- ``rounding``: ``"RND"`` (half up), ``"TRN"`` (floor) or ``"RND_CONV"``.
- ``bw_clip``: (min, max) clip of the fractional bits.
- ``trainable``: whether the bits are trained.
- ``l1``: strength of the bit-count regulariser ``l1 * sum(f)``.
"""

import copy

from .fixed_point import ROUNDING_MODES

_FIELDS = ("init_bw", "granularity", "rounding", "bw_clip", "trainable", "l1")

_LIBRARY_KQ = dict(init_bw=4.0, granularity="element", rounding="RND", bw_clip=(-23, 23), trainable=True, l1=1e-6)
_LIBRARY_PAQ = dict(init_bw=8.0, granularity="element", rounding="RND", bw_clip=(-23, 23), trainable=True, l1=1e-6)

_defaults = {"kernel": dict(_LIBRARY_KQ), "activation": dict(_LIBRARY_PAQ)}


def validate_config(conf, where="quantizer config"):
    """Check field names and values; return a completed copy. ``where`` names the owner in errors."""
    unknown = sorted(set(conf) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid fields are {list(_FIELDS)}.")
    gran = conf.get("granularity")
    if gran is not None and not (gran in ("element", "channel", "tensor") or isinstance(gran, (tuple, list))):
        raise ValueError(
            f"{where}: granularity {gran!r} is not 'element', 'channel', 'tensor' or a tuple of shared axes."
        )
    if "rounding" in conf and conf["rounding"] not in ROUNDING_MODES:
        raise ValueError(f"{where}: rounding {conf['rounding']!r} is not one of {ROUNDING_MODES}.")
    if "bw_clip" in conf:
        lo, hi = conf["bw_clip"]
        if lo > hi:
            raise ValueError(f"{where}: bw_clip {conf['bw_clip']!r} must be (min, max) with min <= max.")
    return copy.deepcopy(dict(conf))


def _merged(role, conf, where):
    out = copy.deepcopy(_defaults[role])
    out.update(validate_config(conf or {}, where))
    if isinstance(out["granularity"], list):
        out["granularity"] = tuple(out["granularity"])
    out["bw_clip"] = tuple(out["bw_clip"])
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
    _defaults["kernel"].update(validate_config({**(conf or {}), **fields}, "set_default_kq_conf"))


def set_default_paq_conf(conf=None, **fields):
    """Change global activation defaults (fields not given keep their value). Affects layers built later."""
    _defaults["activation"].update(validate_config({**(conf or {}), **fields}, "set_default_paq_conf"))


def reset_default_confs():
    """Restore the library's kernel and activation defaults."""
    _defaults["kernel"] = dict(_LIBRARY_KQ)
    _defaults["activation"] = dict(_LIBRARY_PAQ)

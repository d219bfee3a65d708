"""Rewrite policy: the settings each layer gets, and the rule that set each one.

A config is a dict (or a YAML/JSON file holding one) with up to four sections::

    defaults:  {field: value, ...}              # every layer
    types:     {FloatClassName: rule, ...}      # by the float layer's class
    patterns:  {regex: rule, ...}               # re.search on the layer path
    names:     {name_or_path: rule, ...}        # exact layer name or nested path

A *rule* is a dict of fields, or ``None`` (YAML ``null``) to keep the layer float.
Fields:

    beta             EBOPs penalty factor of the layer (finite float >= 0)
    parallel_factor  output elements computed in parallel (int >= 1)
    kernel           weight quantizer fields  -> the layer's ``kq_conf``
    output           output quantizer fields  -> the layer's ``paq_conf``
                     (``activation``, its old name, still works and warns)

with quantizer fields ``init_bw``, ``granularity``, ``rounding``, ``bw_clip``,
``trainable``, ``l1``, whose types and ranges are checked by
`hgq_rewrite.quantizers.config.validate_config` (the one place they are checked).

Precedence — the only place it is defined is `resolve_config`; lowest first:

1. ``default``            library defaults (beta 0, the layer's own
                          parallel_factor, the default quantizer configs);
2. ``defaults``           the config's ``defaults`` section;
3. ``beta=``              the ``beta`` argument of `quantize` / `explain`;
4. ``types:<Class>``      every class of the layer's MRO found in ``types``,
                          base classes first (so ``MyDense`` beats ``Dense``);
5. ``patterns:<regex>``   the *first* regex (in config order) that
                          ``re.search``-es the layer path;
6. ``names:<key>``        keys equal to the path of an enclosing nested model
                          (outermost first), then the layer's bare name, then
                          its full path.

Fields merge one by one, and so do the sub-fields of ``kernel`` and
``output``: a rule sets only what it names. Whether a layer is kept float
is decided by the highest-priority rule that matches it: ``None`` keeps it
float even against every default, and a more specific dict rule (say a
``names`` entry under a ``patterns: {...: null}``) quantizes it again.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from numbers import Integral

from ..quantizers import config as qconfig
from .errors import ConfigError

SECTIONS = ("defaults", "types", "patterns", "names")
FIELDS = ("beta", "parallel_factor", "kernel", "output")
# a rule's "output" is resolved under the converters' field name "activation" (its old, deprecated name)
OUTPUT_FIELD, OLD_OUTPUT_FIELD = "output", "activation"


def _library_quantizer_defaults():
    """Default (kernel, activation) quantizer configs from `hgq_rewrite.quantizers.config`."""
    return qconfig.get_default_kq_conf(), qconfig.get_default_paq_conf()


@dataclass
class RewriteConfig:
    """A validated, private copy of the user's config (see the module docstring)."""

    defaults: dict = field(default_factory=dict)
    types: dict = field(default_factory=dict)
    patterns: list = field(default_factory=list)  # [(text, compiled regex, rule)]
    names: dict = field(default_factory=dict)
    kernel_defaults: dict = field(default_factory=dict)
    activation_defaults: dict = field(default_factory=dict)

    def keys(self):
        """Every addressable key, as ``(section, key)``."""
        return (
            [("types", k) for k in self.types]
            + [("patterns", t) for t, _, _ in self.patterns]
            + [("names", k) for k in self.names]
        )


@dataclass
class Resolved:
    """The settings of one layer.

    Attributes:
        values: ``{"beta", "parallel_factor", "kernel": {...}, "activation": {...}}``.
        sources: rule that set each field, keyed ``"beta"``, ``"kernel.init_bw"``, ...
        keep_float: True if the deciding rule is ``None``.
        float_rule: that rule (``"names:dense_1"``), or None.
        matched: every rule that matched the layer, lowest priority first.
    """

    values: dict
    sources: dict
    keep_float: bool = False
    float_rule: str | None = None
    matched: list = field(default_factory=list)


# --------------------------------------------------------------------------- loading


def load_config(config) -> RewriteConfig:
    """Read and validate ``config`` (None, dict, or YAML/JSON file path) into a private copy.

    Raises:
        ConfigError: unreadable file, unknown section or field, bad value, bad regex
            (all problems are listed in one error).
    """
    if isinstance(config, RewriteConfig):
        return config
    if config is None:
        raw = {}
    elif isinstance(config, (str, os.PathLike)):
        raw = _read_file(os.fspath(config))
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise ConfigError(
            f"config must be a dict, a YAML/JSON file path or None, not {type(config).__name__}."
        )
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config must hold a mapping at top level, got {type(raw).__name__}.")

    problems = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"unknown section {key!r}{_suggest(key, SECTIONS)}; sections are {', '.join(SECTIONS)}")
    kq, paq = _library_quantizer_defaults()
    out = RewriteConfig(kernel_defaults=kq, activation_defaults=paq)

    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("section 'defaults' must be a mapping of fields (it cannot be null)")
    else:
        out.defaults = _check_rule(defaults, "defaults", problems)
    for section in ("types", "names", "patterns"):
        body = raw.get(section) or {}
        if not isinstance(body, dict):
            problems.append(f"section {section!r} must be a mapping, got {type(body).__name__}")
            continue
        for key, rule in body.items():
            where = f"{section}:{key}"
            if not isinstance(key, str):
                problems.append(f"{where}: keys must be strings")
                continue
            if rule is not None:
                rule = _check_rule(rule, where, problems)
            if section == "patterns":
                try:
                    out.patterns.append((key, re.compile(key), rule))
                except re.error as e:
                    problems.append(f"{where}: invalid regular expression ({e})")
            else:
                getattr(out, section)[key] = rule
    if problems:
        raise ConfigError("Invalid rewrite config:\n  - " + "\n  - ".join(problems))
    return out


def _read_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path!r} does not exist.")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.lower().endswith(".json"):
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes a ConfigError
        raise ConfigError(f"Cannot parse config file {path!r}: {e}") from e


def _check_rule(rule, where, problems):
    if not isinstance(rule, dict):
        problems.append(f"{where}: a rule must be a mapping of fields or null (keep float), got {rule!r}")
        return {}
    if OLD_OUTPUT_FIELD in rule:
        if OUTPUT_FIELD in rule:
            problems.append(f"{where}: give 'output' only ('activation' is its old name)")
            return {}
        warnings.warn(f"rewrite config {where}: the field 'activation' is deprecated; call it 'output' (the output "
                      "quantizer).", DeprecationWarning, stacklevel=5)
        rule = {OUTPUT_FIELD if k == OLD_OUTPUT_FIELD else k: v for k, v in rule.items()}
    out = {}
    for name, value in rule.items():
        if name not in FIELDS:
            problems.append(f"{where}: unknown field {name!r}{_suggest(name, FIELDS)}; fields are {', '.join(FIELDS)}")
            continue
        if name == "beta":
            try:
                value = qconfig.check_beta(value, where)
            except ValueError as e:
                problems.append(str(e).rstrip("."))
                continue
        elif name == "parallel_factor":
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 1):
                problems.append(f"{where}: parallel_factor must be an integer >= 1 or null, got {value!r}")
                continue
        else:
            if not isinstance(value, dict):
                problems.append(f"{where}: {name} must be a mapping of quantizer fields, got {value!r}")
                continue
            # names, types and ranges of the quantizer fields: checked in one place, the quantizer config
            try:
                value = qconfig.validate_config(value, f"{where}: {name}", role="kernel" if name == "kernel" else "activation")
            except ValueError as e:
                problems.append(str(e).rstrip("."))
                continue
            name = OLD_OUTPUT_FIELD if name == OUTPUT_FIELD else name
        out[name] = value
    return out


def _suggest(word, candidates, n=3):
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=n, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


# --------------------------------------------------------------------------- resolution


def resolve_config(path, class_names, config, beta=None, *, used=None) -> Resolved:
    """Resolve the settings of the layer at ``path`` — the precedence lives here.

    Args:
        path: nested layer path, ``"encoder/dense_1"``.
        class_names: names of the layer's classes, most derived first (its MRO).
        config: a `RewriteConfig` from `load_config`.
        beta: the ``beta`` argument of `quantize` / `explain`, or None.
        used: optional set; every ``(section, key)`` that matched is added to it.

    Returns:
        A `Resolved` (see the module docstring for the order of the levels).
    """
    values = {
        "beta": 0.0,
        "parallel_factor": None,
        "kernel": dict(config.kernel_defaults),
        "activation": dict(config.activation_defaults),
    }
    sources = {"beta": "default", "parallel_factor": "default"}
    sources.update({f"kernel.{k}": "default" for k in values["kernel"]})
    sources.update({f"activation.{k}": "default" for k in values["activation"]})
    res = Resolved(values, sources)

    def apply(rule, source, key=None):
        if key is not None and used is not None:
            used.add(key)
        res.matched.append(source)
        if rule is None:
            res.keep_float, res.float_rule = True, source
            return
        res.keep_float, res.float_rule = False, None
        for name, value in rule.items():
            if name in ("kernel", "activation"):
                for sub, v in value.items():
                    values[name][sub] = v
                    sources[f"{name}.{sub}"] = source
            else:
                values[name] = value
                sources[name] = source

    # 1. library defaults: above.  2. the config's "defaults" section.
    if config.defaults:
        apply(config.defaults, "defaults")
    # 3. the beta= argument.
    if beta is not None:
        apply({"beta": float(beta)}, "beta=")
    # 4. types, base classes first.
    for cname in reversed(list(class_names)):
        if cname in config.types:
            apply(config.types[cname], f"types:{cname}", ("types", cname))
    # 5. patterns: first match wins.
    for text, regex, rule in config.patterns:
        if regex.search(path):
            apply(rule, f"patterns:{text}", ("patterns", text))
            break
    # 6. names: enclosing models outermost first, then bare name, then full path.
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts))] + [parts[-1], path]
    seen = set()
    for cand in candidates:
        if cand in config.names and cand not in seen:
            seen.add(cand)
            apply(config.names[cand], f"names:{cand}", ("names", cand))
    return res


def unmatched_keys(config: RewriteConfig, used, *, class_names=(), paths=()):
    """Config keys that matched no layer, each with close-name suggestions.

    Returns:
        list of ``(section, key, suggestions)``.
    """
    names = set()
    for p in paths:
        names.add(p)
        names.add(p.split("/")[-1])
    out = []
    for section, key in config.keys():
        if (section, key) in used:
            continue
        pool = sorted(class_names) if section == "types" else sorted(names)
        close = difflib.get_close_matches(key, pool, n=3, cutoff=0.6)
        if not close and section == "patterns":
            stripped = re.sub(r"[\^\$\\\.\*\+\?\(\)\[\]\{\}\|]", "", key)
            close = [p for p in sorted(names) if stripped and stripped in p][:3] or difflib.get_close_matches(
                stripped, pool, n=3, cutoff=0.6
            )
        out.append((section, key, close))
    return out


def format_unmatched(misses) -> str:
    lines = []
    for section, key, close in misses:
        hint = f" — did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        lines.append(f"{section}: {key!r} matches no layer{hint}")
    return "\n  - ".join(lines)

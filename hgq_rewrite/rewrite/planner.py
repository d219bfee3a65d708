"""Make the `Plan`: graph → per-layer settings → converter → fusions → quantizer placement.

`make_plan` is what `explain` returns and what `quantize` builds from; it
reads the model and the config and changes neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real

from ..proxy.hls4ml_limits import KNOWN_PROBLEMS
from .errors import ConfigError
from .fusion import plan_fusions
from .graph import build_graph
from .placement import place_quantizers
from .plan import Plan, PlanEntry
from .policy import load_config, resolve_config, unmatched_keys
from .handler import LayerSettings
from .registry import find_converter, find_exporter

QUANTIZER_CLASS = "HQuantize"


@dataclass(eq=False)
class LayerPlan:
    """Everything decided about one float layer (internal; `PlanEntry` is the public view)."""

    layer: object
    path: str
    class_name: str
    graph: object  # the ModelGraph of its first call
    calls: list = field(default_factory=list)  # [(ModelGraph, Call)]
    resolved: object = None
    converter: object = None
    matched_class: object = None
    decision: str = "convert"
    reason: str = ""
    notes: list = field(default_factory=list)
    bn: object = None  # BatchNormalization folded into this layer
    activation: str | None = None  # activation fused into this layer
    tail_call: object = None  # last call absorbed into this layer (its output is ours)
    absorbed_by: "LayerPlan | None" = None
    auto_float: bool = False  # kept float by the rewrite, not by the config

    def fused(self) -> dict:
        """The keywords of what was absorbed into this layer: ``bn=``, ``activation=``."""
        out = {}
        if self.bn is not None:
            out["bn"] = self.bn
        if self.activation is not None:
            out["activation"] = self.activation
        return out

    def settings(self, namer=None) -> LayerSettings:
        v = self.resolved.values
        return LayerSettings(
            path=self.path,
            name=self.layer.name,
            beta=v["beta"],
            parallel_factor=v["parallel_factor"],
            kq_conf=dict(v["kernel"]),
            paq_conf=dict(v["activation"]),
            namer=namer,
        )


@dataclass(eq=False)
class PlanInternals:
    """What `build.build_model` needs besides the public entries."""

    top: object
    plans: dict  # id(layer) -> LayerPlan
    levels: dict  # id(ModelGraph) -> LevelQuant
    namers: dict  # id(ModelGraph) -> name allocator
    beta: object = None


def _namer(taken):
    taken = set(taken)

    def unique(base):
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    return unique


def _class_names(layer):
    return [k.__name__ for k in type(layer).__mro__ if k is not object]


def _field_view(resolved, fields):
    """Flatten the resolved values of the fields a converter uses."""
    values, sources = {}, {}
    v, s = resolved.values, resolved.sources
    for f in ("beta", "parallel_factor"):
        if f in fields:
            values[f] = v[f]
            sources[f] = s.get(f, "default")
    for f in ("kernel", "activation"):
        if f in fields:
            for sub, val in v[f].items():
                values[f"{f}.{sub}"] = val
                sources[f"{f}.{sub}"] = s.get(f"{f}.{sub}", "default")
    return values, sources


def make_plan(model, config=None, beta=None) -> Plan:
    """Plan the rewrite of ``model`` (see `hgq_rewrite.rewrite.explain`)."""
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, Real) or beta < 0):
        raise ConfigError(f"beta must be a number >= 0 or None, got {beta!r}.")
    top = build_graph(model)
    cfg = load_config(config)
    used = set()
    plans, order = {}, []
    for mg, call in top.walk():
        lp = plans.get(id(call.layer))
        if lp is None:
            lp = LayerPlan(call.layer, call.path, type(call.layer).__name__, mg)
            plans[id(call.layer)] = lp
            order.append(lp)
        elif call.path != lp.path and call.path not in lp.notes:
            lp.notes.append(f"also used as {call.path!r} (converted once, shared)")
        lp.calls.append((mg, call))

    for lp in order:
        first = lp.calls[0][1]
        if first.is_input:
            lp.decision = "input"
            continue
        if first.sub is not None:
            lp.decision = "nested"
            continue
        lp.resolved = resolve_config(lp.path, _class_names(lp.layer), cfg, beta, used=used)
        if lp.resolved.keep_float:
            lp.decision, lp.reason = "float", f"by rule {lp.resolved.float_rule}"
            continue
        conv, matched = find_converter(type(lp.layer))
        if conv is None:
            lp.decision, lp.reason = "unsupported", f"no converter for {lp.class_name}"
            continue
        why = conv.check(lp.layer)
        if why:
            lp.decision, lp.reason = "unsupported", f"{lp.class_name}: {why}"
            continue
        lp.converter, lp.matched_class = conv, matched
        lp.notes.extend(conv.notes(lp.layer))

    graphs = top.graphs()
    plan_fusions(graphs, plans)

    namers = {id(mg): _namer(c.layer.name for c in mg.calls) for mg in graphs}
    levels = place_quantizers(top, plans, namers)
    for level in levels.values():
        for q in level.quantizers.values():
            q.resolved = resolve_config(q.path, [QUANTIZER_CLASS], cfg, beta, used=used)

    paths = [lp.path for lp in order] + [q.path for lv in levels.values() for q in lv.quantizers.values()]
    classes = {lp.class_name for lp in order} | {QUANTIZER_CLASS}
    for lp in order:
        classes.update(_class_names(lp.layer))
    unmatched = unmatched_keys(cfg, used, class_names=classes, paths=paths)

    entries = _entries(top, plans, levels)
    internals = PlanInternals(top, plans, levels, namers, beta)
    return Plan(model.name, entries, unmatched, internals)


# --------------------------------------------------------------------------- entries


def _entries(top, plans, levels):
    out, seen_layers, seen_graphs = [], set(), set()

    def visit(mg):
        level = levels[id(mg)]
        for call in mg.calls:
            lp = plans[id(call.layer)]
            if id(call.layer) not in seen_layers:
                seen_layers.add(id(call.layer))
                out.append(_entry(lp, mg, call, level))
            if call.sub is not None and id(call.sub) not in seen_graphs:
                seen_graphs.add(id(call.sub))
                visit(call.sub)
            for t in call.outputs:
                q = level.quantizers.get(id(t))
                if q is not None:
                    out.append(_quantizer_entry(q))

    visit(top)
    return out


def _exports(lp):
    """Whether the layer exports bit-exactly: ``"yes"``, ``"no: <why>; remedy: <remedy>"``, or not known."""
    if lp.decision in ("fold", "fuse"):
        return _exports(lp.absorbed_by)
    if lp.decision == "unsupported":
        known = KNOWN_PROBLEMS.get(lp.class_name)  # a class without a converter that hls4ml 1.3 cannot export
        if known is not None and find_converter(type(lp.layer))[0] is None:
            return f"no: it cannot be converted ({lp.reason}; {known[1]}); remedy: {known[2]}"
        return (f"no: it cannot be converted ({lp.reason}); remedy: change it as the reason says, or register "
                f"a handler for {lp.class_name}")
    if lp.decision == "float":
        exporter = find_exporter(type(lp.layer))
        if exporter is None:
            return (f"no: it is kept float, and the proxy has no rule for a float {lp.class_name}; "
                    "remedy: quantize it, or remove it before export")
        problem = exporter.export_problem(lp.layer)
    elif lp.decision == "convert":
        if not lp.converter.exports_known:
            return "not known before building: to_proxy_model checks the layers this converter builds"
        problem = lp.converter.export_problem(lp.layer, **lp.fused())
    else:  # model inputs and nested models: their layers say
        return "yes"
    return "yes" if problem is None else f"no: {problem}"


def _entry(lp, mg, call, level):
    e = PlanEntry(lp.path, lp.class_name, lp.decision, calls=len(lp.calls), notes=list(lp.notes), reason=lp.reason,
                  exports=_exports(lp))
    if lp.decision == "input":
        q = [level.quantizers[id(t)].name for t in call.outputs if id(t) in level.quantizers]
        if q:
            e.reason = f"model input, quantized by {', '.join(q)}"
        elif mg.prefix:
            e.reason = "input of a nested model (fed by its parent)"
        else:
            e.reason = "model input, no HQuantize (its readers are float or quantize it themselves)"
    elif lp.decision == "nested":
        e.target = type(lp.layer).__name__
    elif lp.decision == "convert":
        conv = lp.converter
        e.target = conv.describe(lp.layer, **lp.fused())
        extra = []
        if lp.matched_class is not type(lp.layer) and conv.note_base_class:
            extra.append(f"via the converter of base class {lp.matched_class.__name__}")
        if lp.bn is not None:
            extra.append(f"BatchNormalization {lp.bn.name!r} folded in")
        if lp.activation is not None:
            extra.append(f"{lp.activation} fused")
        if not conv.builtin:
            extra.append("user converter")
        e.reason = "; ".join(extra)
        e.fields, e.sources = _field_view(lp.resolved, conv.fields)
    elif lp.decision in ("fold", "fuse"):
        e.target = lp.absorbed_by.path
        own = [m for m in lp.resolved.matched if m.split(":")[0] in ("types", "patterns", "names")]
        if own:
            e.notes.append(f"its own rules ({', '.join(own)}) do not apply; {lp.absorbed_by.path!r}'s settings do")
    elif lp.decision == "float" and lp.resolved is not None:
        e.sources = {"keep_float": lp.resolved.float_rule} if lp.resolved.float_rule else {}
    return e


def _quantizer_entry(q):
    e = PlanEntry(q.path, "", "insert", target=QUANTIZER_CLASS, exports="yes")
    what = "model input" if q.source.is_input else "float output"
    e.reason = f"after {what} {q.source.path!r}, feeding {', '.join(repr(p) for p in q.consumers)}"
    e.fields, e.sources = _field_view(q.resolved, ("beta", "activation"))
    if q.resolved.keep_float:
        e.notes.append(f"rule {q.resolved.float_rule} ignored: an inserted quantizer cannot be kept float")
    return e

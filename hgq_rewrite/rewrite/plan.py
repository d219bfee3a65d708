"""The plan: what the rewrite will do to every layer, and why (`explain`'s result)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

from .policy import format_unmatched

DECISIONS = ("input", "convert", "fold", "fuse", "float", "unsupported", "nested", "insert")


@dataclass
class PlanEntry:
    """One layer of the float model (or one inserted quantizer).

    Attributes:
        path: nested layer path (``"encoder/dense_1"``).
        float_class: class name of the float layer ("" for an inserted quantizer).
        decision: one of ``input`` (model input), ``convert`` (converted to
            ``target``), ``fold`` / ``fuse`` (absorbed into the layer at path
            ``target``), ``float`` (kept float), ``unsupported``, ``nested``
            (a nested model, rebuilt with its converted children), ``insert``
            (an HQuantize the rewrite adds; ``reason`` says after what).
        target: the HGQ layer class(es) built, or the path absorbing the layer.
        reason: why (rule keeping it float, why it is unsupported, ...).
        fields: resolved config fields used by the new layer
            (``beta``, ``parallel_factor``, ``kernel.<field>``, ``activation.<field>``).
        sources: rule that set each of ``fields`` (``default``, ``defaults``,
            ``beta=``, ``types:Dense``, ``patterns:^dense``, ``names:x``).
        calls: number of times the layer is called in the model.
        notes: remarks (settings not carried over, fusions not done, ...).
        exports: whether it exports bit-exactly to hls4ml: ``"yes"``, ``"no: <why>; remedy: <remedy>"``,
            or ``"not known before building: ..."`` (a converter without an export rule).
    """

    path: str
    float_class: str
    decision: str
    target: str = ""
    reason: str = ""
    fields: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    calls: int = 1
    notes: list = field(default_factory=list)
    exports: str = ""

    @property
    def summary(self) -> str:
        d = self.decision
        if d == "convert":
            return f"converted to {self.target}" + (f" ({self.reason})" if self.reason else "")
        if d in ("fold", "fuse"):
            return f"{'folded' if d == 'fold' else 'fused'} into {self.target}"
        if d == "float":
            return f"kept float: {self.reason}"
        if d == "unsupported":
            return f"unsupported: {self.reason}"
        if d == "insert":
            return f"inserted HQuantize ({self.reason})"
        if d == "nested":
            return f"nested {self.target}, rebuilt around its converted layers"
        return self.reason or "model input"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["summary"] = self.summary
        return out


class Plan:
    """What `quantize` will do, layer by layer (returned by `explain`).

    Attributes:
        model_name: name of the float model.
        entries: `PlanEntry` per layer path, in graph order; inserted
            quantizers follow the layer whose output they quantize.
        unmatched: config keys that match no layer, ``(section, key, suggestions)``.
    """

    def __init__(self, model_name, entries, unmatched, internal=None):
        self.model_name = model_name
        self.entries = entries
        self.unmatched = unmatched
        self._internal = internal
        self._by_path = {e.path: e for e in entries}

    def __getitem__(self, path) -> PlanEntry:
        return self._by_path[path]

    def __contains__(self, path):
        return path in self._by_path

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    def by_decision(self, decision):
        """Entries with the given decision (see `PlanEntry.decision`)."""
        return [e for e in self.entries if e.decision == decision]

    @property
    def unsupported(self):
        return self.by_decision("unsupported")

    @property
    def not_exportable(self):
        """Entries that convert or stay float but do not export bit-exactly (``exports`` starts with "no")."""
        return [e for e in self.entries
                if e.decision not in ("unsupported", "fold", "fuse") and e.exports.startswith("no")]

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "layers": [e.to_dict() for e in self.entries],
            "unmatched": [{"section": s, "key": k, "suggestions": list(c)} for s, k, c in self.unmatched],
        }

    def __repr__(self):
        counts = {}
        for e in self.entries:
            counts[e.decision] = counts.get(e.decision, 0) + 1
        body = ", ".join(f"{k}={v}" for k, v in counts.items())
        return f"<Plan {self.model_name!r}: {body}>"

    def __str__(self):
        return render(self)


def _settings_text(entry: PlanEntry) -> str:
    parts = []
    for name, value in entry.fields.items():
        src = entry.sources.get(name, "default")
        if src == "default":
            continue
        parts.append(f"{name}={value!r} [{src}]")
    return "\n".join(parts)


def render(plan: Plan, width: int = 140) -> str:
    """The plan as a text table (rich), followed by unmatched config keys."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"hgq_rewrite plan for {plan.model_name!r}"), show_lines=False)
    table.add_column("layer path", overflow="fold")
    table.add_column("float class")
    table.add_column("decision", overflow="fold")
    table.add_column("settings (non-default) [rule that set it]", overflow="fold")
    for e in plan.entries:
        decision = e.summary
        if e.calls > 1:
            decision += f" — shared, {e.calls} calls"
        if e.notes:
            decision += "".join(f"\n  note: {n}" for n in e.notes)
        if e.exports:
            decision += f"\n  exports bit-exactly: {e.exports}"
        cells = (e.path, e.float_class or "-", decision, _settings_text(e))
        table.add_row(*(Text(c) for c in cells))
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    text = buf.getvalue()
    text += "Settings not listed are the library defaults (rule 'default').\n"
    if plan.unmatched:
        text += "Config keys matching no layer:\n  - " + format_unmatched(plan.unmatched) + "\n"
    return text

"""Where HQuantize layers go: on every tensor that is not quantized yet but feeds
a layer needing quantized inputs.

A tensor is *quantized* when an HGQ layer produced it (or a P-layer, whose
inputs are quantized). Model inputs and the outputs of layers kept float are
not. Every HGQ layer (and, for the inputs it passes on, a nested model) needs
quantized inputs, so the rewrite puts one HQuantize after each model input and
after each float layer output that feeds HGQ layers; float consumers of the
same tensor keep reading the unquantized value. The inputs of a nested model
are quantized by its parent (outside), not inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class QuantizerPlan:
    """An HQuantize to insert after one tensor of one model level."""

    graph: object
    tensor: object
    source: object  # the Call producing the tensor
    name: str
    path: str
    resolved: object = None
    consumers: list = field(default_factory=list)  # paths


@dataclass(eq=False)
class LevelQuant:
    """Quantization facts of one `ModelGraph`."""

    inputs_required: list  # per model input: does some consumer need it quantized?
    outputs_quantized: list  # per model output
    quantizers: dict = field(default_factory=dict)  # id(tensor) -> QuantizerPlan
    needs: dict = field(default_factory=dict)  # call key -> set of input positions needing quantized values


def _call_needs(call, plans, levels):
    """Positions of ``call.inputs`` that must be quantized."""
    if call.sub is not None:
        sub = levels[id(call.sub)]
        # the nested model's inputs, flattened, line up with the call's input tensors
        return {i for i, req in enumerate(sub.inputs_required) if req and i < len(call.inputs)}
    lp = plans.get(id(call.layer))
    if lp is None or lp.decision != "convert":
        return set()
    return set(range(len(call.inputs))) if lp.converter.needs_quantized_inputs(lp.layer) else set()


def _call_quantizes_output(call, plans, levels):
    if call.sub is not None:
        return levels[id(call.sub)].outputs_quantized
    lp = plans.get(id(call.layer))
    if lp is None:
        return [False] * len(call.outputs)
    if lp.decision in ("fold", "fuse"):
        lp = lp.absorbed_by
    ok = lp.decision == "convert" and lp.converter.quantized_output
    return [ok] * len(call.outputs)


def place_quantizers(top, plans, namers):
    """Decide every HQuantize to insert. Returns ``{id(ModelGraph): LevelQuant}``.

    Args:
        top: the top-level `ModelGraph`.
        plans: ``id(layer) -> LayerPlan``.
        namers: ``id(ModelGraph) -> unique-name function`` for that level.
    """
    levels = {}

    def visit(mg, is_top):
        if id(mg) in levels:
            return levels[id(mg)]
        for c in mg.calls:
            if c.sub is not None:
                visit(c.sub, False)
        needs = {c.key: _call_needs(c, plans, levels) for c in mg.calls}
        # which model inputs does a consumer need quantized
        req = []
        for t in mg.inputs:
            r = any(
                any(c.inputs[i] is t for i in needs[k])
                for k in mg.consumers.get(id(t), [])
                for c in [mg.call(k)]
            )
            req.append(r)
        quantized = {}
        for i, t in enumerate(mg.inputs):
            quantized[id(t)] = bool(req[i]) and not is_top
        for c in mg.calls:
            if c.is_input:
                continue
            for t, q in zip(c.outputs, _call_quantizes_output(c, plans, levels)):
                quantized[id(t)] = q
        level = LevelQuant(req, [quantized.get(id(t), False) for t in mg.outputs], needs=needs)
        for c in mg.calls:
            for j, t in enumerate(c.outputs):
                if quantized.get(id(t), False):
                    continue
                users = [
                    mg.call(k)
                    for k in mg.consumers.get(id(t), [])
                    if any(mg.call(k).inputs[i] is t for i in needs[k])
                ]
                if not users:
                    continue
                base = c.layer.name
                if c.key != c.layer.name:
                    base = c.key.replace("@", "_")
                if len(c.outputs) > 1:
                    base = f"{base}_{j}"
                name = namers[id(mg)](f"{base}_quantizer")
                path = f"{mg.prefix}/{name}" if mg.prefix else name
                level.quantizers[id(t)] = QuantizerPlan(mg, t, c, name, path, consumers=[u.path for u in users])
        levels[id(mg)] = level
        return level

    visit(top, True)
    return levels

"""Fusions decided before building: BatchNormalization folding and activation fusion.

Both follow capabilities the handlers declare (`handler.LayerHandler`):

* A layer whose handler is ``fold_only`` (``BatchNormalization``) is folded into
  the layer right before it when that layer's handler ``folds_batchnorm`` (Dense,
  Conv1D, Conv2D become ``H*BatchNorm``, holding the BN's statistics), and that
  layer is converted, linear, called once, and feeds only the BN; and the BN
  normalizes the last axis and is called once. Otherwise it is kept float and
  the plan says why.
* An activation layer (its handler's ``fusable_activation``, e.g. ``relu``) is
  fused into the layer right before it (possibly one with a BN folded in) when
  that layer's handler lists the activation in ``fuses_activation``, on the same
  conditions; otherwise it is converted on its own (an ``HActivation``).

Both work on the `LayerPlan`s of `planner`, in topological order, so a relu
after a folded BN sees the folded layer.
"""

from __future__ import annotations

from .registry import fusable_activations


def _single_feed(mg, call, plans):
    """The plan of the layer producing ``call``'s only input, or a reason why there is none."""
    if len(call.inputs) != 1:
        return None, "it has several inputs"
    t = call.inputs[0]
    prod = mg.producer_of(t)
    if prod is None or prod.is_input:
        return None, "its input is a model input"
    if prod.sub is not None:
        return None, f"its input comes from nested model {prod.path!r}"
    head = plans[id(prod.layer)]
    if head.decision in ("fold", "fuse") and head.absorbed_by is not None:
        head = head.absorbed_by
    if len(mg.consumers.get(id(t), [])) != 1:
        return None, f"the output of {prod.path!r} has other consumers"
    if mg.is_output(t):
        return None, f"the output of {prod.path!r} is a model output"
    return head, None


def _head_problem(head, capable, missing):
    """Why ``head`` cannot absorb the layer after it (``capable``: its handler can; ``missing``: else why)."""
    if head.decision != "convert":
        return f"{head.path!r} is not converted ({head.decision})"
    if not capable:
        return f"{head.path!r} ({head.class_name}) {missing}"
    if len(head.calls) != 1:
        return f"{head.path!r} is shared ({len(head.calls)} calls)"
    if head.converter.activation_of(head.layer) != "linear" or head.activation is not None:
        return f"{head.path!r} already applies an activation"
    return None


def plan_fusions(graphs, plans):
    """Mark folded BatchNorms and fused activations in ``plans`` (id(layer) -> LayerPlan)."""
    fusable = fusable_activations()
    for mg in graphs:
        for call in mg.calls:
            lp = plans.get(id(call.layer))
            if lp is None or lp.decision != "convert" or lp.absorbed_by is not None:
                continue
            if lp.converter.fold_only:
                _try_fold(mg, call, lp, plans)
                continue
            act = lp.converter.fusable_activation(lp.layer)
            if act in fusable:
                _try_fuse(mg, call, lp, plans, act)


def _try_fold(mg, call, lp, plans):
    head, why = _single_feed(mg, call, plans)
    if head is not None:
        why = _head_problem(head, head.decision == "convert" and head.converter.folds_batchnorm,
                            "is not a Dense/Conv layer with a BatchNorm variant (its handler does not fold one)")
    if why is None and head.bn is not None:
        why = f"{head.path!r} already has a BatchNormalization folded in"
    if why is None and len(lp.calls) != 1:
        why = f"the BatchNormalization is shared ({len(lp.calls)} calls)"
    if why is None:
        rank = len(call.inputs[0].shape)
        if lp.layer.axis not in (-1, rank - 1):
            why = f"it normalizes axis {lp.layer.axis}, not the last axis"
    if why is not None:
        lp.decision = "float"
        lp.reason = f"BatchNormalization cannot be folded: {why}"
        lp.auto_float = True
        return
    head.bn = lp.layer
    head.tail_call = call
    lp.decision, lp.absorbed_by = "fold", head


def _try_fuse(mg, call, lp, plans, act):
    head, why = _single_feed(mg, call, plans)
    if head is not None:
        why = _head_problem(head, head.decision == "convert" and act in head.converter.fuses_activation,
                            f"is not a Dense/Conv layer (its handler does not fuse {act})")
    if why is None and len(lp.calls) != 1:
        why = f"the activation layer is shared ({len(lp.calls)} calls)"
    if why is not None:
        lp.notes.append(f"{act} not fused: {why}")
        return
    head.activation = act
    head.tail_call = call
    lp.decision, lp.absorbed_by = "fuse", head

"""Fusions decided before building: BatchNormalization folding and ReLU fusion.

* A ``BatchNormalization`` is folded into the Dense/Conv1D/Conv2D right before
  it (that layer becomes ``H*BatchNorm``, holding the BN's statistics) when
  that layer is converted, linear, called once, and feeds only the BN; and the
  BN normalizes the last axis and is called once. Otherwise it is kept float
  and the plan says why.
* A ``relu`` (``Activation('relu')`` or a plain ``ReLU()``) is fused into the
  H-layer with weights right before it (possibly one with a BN folded in) on
  the same conditions; otherwise it becomes an ``HActivation``.

Both work on the `LayerPlan`s of `planner`, in topological order, so a relu
after a folded BN sees the folded layer.
"""

from __future__ import annotations

from .converters._common import activation_name
from .converters.activation import _ActivationConverter
from .converters.core import WeightedConverter


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


def _head_problem(head):
    if head.decision != "convert":
        return f"{head.path!r} is not converted ({head.decision})"
    if not isinstance(head.converter, WeightedConverter):
        return f"{head.path!r} ({head.class_name}) is not a Dense/Conv layer"
    if len(head.calls) != 1:
        return f"{head.path!r} is shared ({len(head.calls)} calls)"
    if activation_name(head.layer.activation) != "linear" or head.activation is not None:
        return f"{head.path!r} already applies an activation"
    return None


def plan_fusions(graphs, plans):
    """Mark folded BatchNorms and fused relus in ``plans`` (id(layer) -> LayerPlan)."""
    for mg in graphs:
        for call in mg.calls:
            lp = plans.get(id(call.layer))
            if lp is None or lp.decision != "convert" or lp.absorbed_by is not None:
                continue
            if lp.converter.fold_only:
                _try_fold(mg, call, lp, plans)
            elif isinstance(lp.converter, _ActivationConverter) and lp.converter.is_relu(lp.layer):
                _try_fuse(mg, call, lp, plans)


def _try_fold(mg, call, lp, plans):
    head, why = _single_feed(mg, call, plans)
    if head is not None:
        why = _head_problem(head)
    if why is None and head.converter.bn_target is None:
        why = f"{head.class_name} has no BatchNorm variant"
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


def _try_fuse(mg, call, lp, plans):
    head, why = _single_feed(mg, call, plans)
    if head is not None:
        why = _head_problem(head)
    if why is None and len(lp.calls) != 1:
        why = f"the activation layer is shared ({len(lp.calls)} calls)"
    if why is not None:
        lp.notes.append(f"relu not fused: {why}")
        return
    head.activation = "relu"
    head.tail_call = call
    lp.decision, lp.absorbed_by = "fuse", head

"""The accuracy-vs-EBOPs Pareto front in memory: points, dominance, members, the member for a budget."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import keras

_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge")


def metric_mode(metric):
    """``"min"`` if lower values of ``metric`` are better (losses, errors), else ``"max"``."""
    name = metric.lower()
    return "min" if any(word in name for word in _LOWER_IS_BETTER) else "max"


@dataclass
class FrontEntry:
    """One epoch on the Pareto front.

    Attributes:
        epoch: 0-based epoch of the fit (file names and printed tables count from 1).
        metric: value of the front's metric at that epoch.
        ebops: EBOPs at that epoch (``ebops`` in the logs).
        path: the saved ``.keras`` file, or None without a folder.
        logs: every logged value of that epoch.
        weights: the model weights of that epoch (only without a folder).
    """

    epoch: int
    metric: float
    ebops: float
    path: str | None = None
    logs: dict = field(default_factory=dict)
    weights: list | None = field(default=None, repr=False)

    def load(self):
        """Load the saved model of this epoch (safe mode)."""
        if self.path is None:
            raise ValueError("This front entry was not saved to a file (finetune ran without pareto_dir).")
        return keras.saving.load_model(self.path, safe_mode=True)

    def restore(self, model):
        """Put this epoch's weights back into ``model`` (the model that was trained)."""
        if self.weights is not None:
            model.set_weights(self.weights)
        else:
            model.set_weights(self.load().get_weights())
        return model

    def to_dict(self):
        out = asdict(self)
        out.pop("weights")
        return out


class Front(list):
    """The front `finetune` returns: a list of `FrontEntry`, fewest EBOPs first.

    With ``target_ebops`` it also tells which member meets the budget:

    Attributes:
        target_ebops: the EBOPs budget, or None.
        chosen: the member with the best metric among those with EBOPs <= ``target_ebops``;
            None without a target or when no epoch reached it.
        reached: True if some member is at or under the target (None without a target).
        message: one line saying which member was chosen, or that the target was not reached.
    """

    target_ebops = None
    chosen = None
    reached = None
    message = ""


def choose_member(entries, target, mode):
    """The entry with the best metric among ``entries`` whose EBOPs are <= ``target`` (None if none)."""
    under = [e for e in entries if e.ebops <= target]
    if not under:
        return None
    sign = 1 if mode == "max" else -1
    return max(under, key=lambda e: (sign * e.metric, -e.ebops, -e.epoch))


def target_result(entries, target, mode, metric, points):
    front = Front(entries)
    front.target_ebops = target
    front.chosen = choose_member(entries, target, mode)
    front.reached = front.chosen is not None
    if front.reached:
        c = front.chosen
        where = f" ({c.path})" if c.path else ""
        front.message = (f"target {target:,.0f} EBOPs reached: epoch {c.epoch + 1}, {metric} {c.metric:.4f}, "
                         f"{c.ebops:,.0f} EBOPs{where}")
    else:
        seen = [b for _, _, b in points if math.isfinite(b)]
        lowest = f"{min(seen):,.0f}" if seen else "none"
        front.message = (f"target {target:,.0f} EBOPs not reached: the lowest EBOPs of an epoch was {lowest}; "
                         "train more epochs or allow a larger beta_max")
    return front


def dominates(a, b, mode):
    """True if point ``a`` = (metric, ebops) is at least as good as ``b`` in both and better in one."""
    (ma, ea), (mb, eb) = a, b
    better_metric = ma >= mb if mode == "max" else ma <= mb
    strictly = (ma > mb if mode == "max" else ma < mb) or ea < eb
    return better_metric and ea <= eb and strictly


_AUTO_METRICS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy", "loss")


def auto_metric(logs):
    """The metric the front uses by default: validation accuracy if logged, else training accuracy, else a loss."""
    for prefix in ("val_", ""):
        for name in _AUTO_METRICS:
            if prefix + name in logs:
                return prefix + name
    return None

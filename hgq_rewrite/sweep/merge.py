"""Merge the Pareto fronts of a sweep's trials into one front, with provenance, and plot it."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field

from ..files import atomic_path, save_figure, write_json
from ..finetune import FRONT_FILE, dominates

MEMBERS_DIR = "members"
PLOT_FILE = "front.png"


@dataclass
class SweepMember:
    """One point of the merged front.

    Attributes:
        trial: id of the trial it comes from (``t003``).
        params: that trial's grid parameters.
        epoch: 0-based epoch of the trial's fit.
        metric / ebops: the point.
        path: the member's ``.keras`` file in the sweep folder (``members/``).
        source: the trial's own file it was copied from (``trials/<id>/epochNNNN.keras``).
        logs: every logged value of that epoch.
    """

    trial: str
    params: dict
    epoch: int
    metric: float
    ebops: float
    path: str | None = None
    source: str | None = None
    logs: dict = field(default_factory=dict)

    def load(self):
        """Load the member's model (safe mode)."""
        import keras

        return keras.saving.load_model(self.path, safe_mode=True)

    def to_dict(self, root=None):
        out = asdict(self)
        if root is not None:
            for key in ("path", "source"):
                if out[key] is not None:
                    out[key] = os.path.relpath(out[key], root)
        return out


def read_trial_front(trial_dir):
    """``front.json`` of a finished trial's folder, as a dict."""
    with open(os.path.join(trial_dir, FRONT_FILE), encoding="utf-8") as f:
        return json.load(f)


def merge_fronts(fronts, mode):
    """The points of several fronts that no point of any front beats on both metric and EBOPs.

    Args:
        fronts: list of ``(trial id, params, trial folder, front.json dict)``.
        mode: ``"max"`` or ``"min"`` (of the metric).

    Returns:
        `SweepMember`s sorted by EBOPs. Equal points keep the first (trial order, then epoch).
    """
    pool = []
    for trial, params, folder, summary in fronts:
        for e in summary.get("front", []):
            source = os.path.join(folder, os.path.basename(e["path"])) if e.get("path") else None
            pool.append(SweepMember(trial, dict(params), int(e["epoch"]), float(e["metric"]), float(e["ebops"]),
                                    source=source, logs=dict(e.get("logs") or {})))
    kept = []
    for i, a in enumerate(pool):
        pa = (a.metric, a.ebops)
        beaten = any(dominates((b.metric, b.ebops), pa, mode) for b in pool)
        duplicate = any((b.metric, b.ebops) == pa for b in pool[:i])
        if not beaten and not duplicate:
            kept.append(a)
    return sorted(kept, key=lambda m: (m.ebops, m.trial, m.epoch))


def place_members(members, directory):
    """Copy each member's file into ``directory/members/`` and drop member files no longer on the front."""
    folder = os.path.join(directory, MEMBERS_DIR)
    os.makedirs(folder, exist_ok=True)
    wanted = set()
    for m in members:
        if m.source is None:
            continue
        name = f"{m.trial}-epoch{m.epoch + 1:04d}.keras"
        target = os.path.join(folder, name)
        wanted.add(name)
        if not os.path.exists(target):
            with atomic_path(target) as tmp:
                shutil.copyfile(m.source, tmp)
        m.path = target
    for name in os.listdir(folder):
        if name.endswith(".keras") and name not in wanted:
            os.remove(os.path.join(folder, name))


def write_front(directory, members, metric, mode, trials, points):
    """Write the merged ``front.json`` of a sweep folder."""
    summary = {
        "metric": metric,
        "mode": mode,
        "ebops_key": "bops",
        "front": [m.to_dict(directory) for m in members],
        "trials": trials,
        "points": points,
    }
    write_json(os.path.join(directory, FRONT_FILE), summary)
    return summary


def plot_front(directory, members, points, metric, trial_labels):
    """Every trial's epochs (faint) and the merged front (line) against EBOPs; ``front.png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    by_trial = {}
    for p in points:
        by_trial.setdefault(p["trial"], []).append(p)
    for trial, pts in by_trial.items():
        pts = [p for p in pts if p["ebops"] == p["ebops"] and p["metric"] == p["metric"]]
        label = f"{trial}: {trial_labels.get(trial, '')}" if len(by_trial) <= 12 else None
        ax.scatter([p["ebops"] for p in pts], [p["metric"] for p in pts], s=10, alpha=0.45, label=label)
    if members:
        ax.step([m.ebops for m in members], [m.metric for m in members], where="post", color="black", lw=1.5)
        ax.scatter([m.ebops for m in members], [m.metric for m in members], s=30, color="black", zorder=3,
                   label=f"merged front ({len(members)})")
    ax.set_xlabel("EBOPs")
    ax.set_ylabel(metric or "metric")
    if any(p["ebops"] > 0 for p in points):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("sweep: merged Pareto front")
    fig.tight_layout()
    return save_figure(fig, os.path.join(directory, PLOT_FILE), dpi=120)

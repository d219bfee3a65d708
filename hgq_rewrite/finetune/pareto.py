"""`ParetoFront`: the callback keeping the epochs no other epoch beats on both the metric and EBOPs."""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from ..files import save_model
from .front import FrontEntry, auto_metric, dominates, metric_mode
from .store import plain, write_summary


class ParetoFront(keras.callbacks.Callback):
    """Keep the epochs no other epoch beats on both ``metric`` and EBOPs.

    Args:
        metric: name of the logged metric (``"val_accuracy"``, ``"val_loss"``, ...);
            None picks one from the first epoch's logs (`auto_metric`).
        directory: folder for the ``.keras`` files of the front members (created
            if needed); None keeps the weights in memory instead.
        mode: ``"max"``, ``"min"`` or ``"auto"`` (from the metric's name).
        ebops_key: name of the logged EBOPs (``FreeBOPs`` / ``CalibratedBOPs`` log ``ebops`` and ``bops``).

    Put it after the callback that logs the EBOPs and before `ResetMinMax`, so the
    saved models keep the activation ranges of their epoch. A point equal to a
    kept one in both values is not kept (the earlier epoch stays).
    """

    def __init__(self, metric, directory=None, mode="auto", ebops_key="bops"):
        super().__init__()
        if mode not in ("auto", "max", "min"):
            raise ValueError(f"ParetoFront: mode must be 'auto', 'max' or 'min', got {mode!r}.")
        self.metric = metric
        self._mode = mode
        self.ebops_key = ebops_key
        self.directory = None if directory is None else os.fspath(directory)
        self.entries = []
        self.points = []  # every epoch: (epoch, metric, ebops)
        self._epoch_offset = 0
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)

    @property
    def mode(self):
        if self._mode != "auto":
            return self._mode
        return metric_mode(self.metric) if self.metric else "max"

    @property
    def front(self):
        """Front members sorted by EBOPs (fewest first)."""
        return sorted(self.entries, key=lambda e: (e.ebops, e.epoch))

    def on_train_begin(self, logs=None):
        # several fits with the same callback continue the epoch count
        self._epoch_offset = 1 + max((p[0] for p in self.points), default=-1)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.metric is None:
            self.metric = auto_metric(logs)
        for key in (self.metric, self.ebops_key):
            if key not in logs:
                raise KeyError(
                    f"ParetoFront: {key!r} is not in the epoch logs (logged: {', '.join(sorted(logs)) or 'nothing'}). "
                    + ("Add FreeBOPs() or CalibratedBOPs(...) before ParetoFront."
                       if key == self.ebops_key else "Pick a logged metric (metric=...).")
                )
        value, ebops = float(logs[self.metric]), float(logs[self.ebops_key])
        epoch = epoch + self._epoch_offset
        self.points.append((epoch, value, ebops))
        if not (math.isfinite(value) and math.isfinite(ebops)):
            return
        self.add(epoch, value, ebops, logs)

    def add(self, epoch, value, ebops, logs=None):
        """Offer a point; return True if it joined the front."""
        point = (value, ebops)
        for entry in self.entries:
            kept = (entry.metric, entry.ebops)
            if kept == point or dominates(kept, point, self.mode):
                return False
        beaten = [e for e in self.entries if dominates(point, (e.metric, e.ebops), self.mode)]
        for entry in beaten:
            self.entries.remove(entry)
            if entry.path and os.path.exists(entry.path):
                os.remove(entry.path)
        entry = FrontEntry(epoch, value, ebops, logs={k: plain(v) for k, v in (logs or {}).items()})
        if self.model is not None:
            if self.directory is not None:
                entry.path = os.path.join(self.directory, f"epoch{epoch + 1:04d}.keras")
                save_model(self.model, entry.path)
            else:
                entry.weights = [np.array(w) for w in self.model.get_weights()]
        self.entries.append(entry)
        self.write_summary()
        return True

    def write_summary(self, history=None):
        """Write ``front.json`` (and ``history.json`` if given) into the folder."""
        if self.directory is None:
            return
        summary = {
            "metric": self.metric,
            "mode": self.mode,
            "ebops_key": self.ebops_key,
            "front": [e.to_dict() for e in self.front],
            "points": [{"epoch": e, "metric": m, "ebops": b} for e, m, b in self.points],
        }
        write_summary(self.directory, summary, history)

"""What finetune shows while it trains: a `rich` progress bar (``verbose=1``) or one line per epoch (``2``)."""

from __future__ import annotations

import threading
import time

import keras


class RichProgress(keras.callbacks.Callback):
    """A `rich` progress bar over all training steps, and one line per epoch (``verbose=1``).

    Its batch updates run beside training (Keras dispatches them asynchronously: reading the loss
    would otherwise make every step wait), so they may arrive out of order: the bar only moves forward.
    """

    async_safe = True

    def __init__(self, front=None, console=None):
        super().__init__()
        self.front = front
        self.console = console
        self.progress = None
        self._completed = 0
        self._lock = threading.Lock()

    def on_train_begin(self, logs=None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        params = self.params or {}
        self.epochs = params.get("epochs") or 1
        self.steps = params.get("steps") or 0
        self._completed = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console or Console(),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("finetune", total=self.epochs * self.steps or self.epochs, info="")
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.progress.update(self.task, description=f"epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        if not self.steps:
            return
        done = self.epoch * self.steps + batch + 1
        with self._lock:
            if done <= self._completed:
                return
            self._completed = done
            self.progress.update(self.task, completed=done, info=format_logs(logs, ("loss",)))

    def on_epoch_end(self, epoch, logs=None):
        if self.steps:
            self.progress.update(self.task, completed=(epoch + 1) * self.steps)
        else:
            self.progress.update(self.task, completed=epoch + 1)
        mark = ""
        if self.front is not None and any(e.epoch == epoch + self.front._epoch_offset for e in self.front.entries):
            mark = "  [green]+front[/green]"
        self.progress.console.print(f"epoch {epoch + 1:>3}/{self.epochs}  {format_logs(logs)}{mark}", soft_wrap=True)

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()


class EpochLines(keras.callbacks.Callback):
    """One plain line per epoch (``verbose=2``)."""

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}/{(self.params or {}).get('epochs')}  {format_logs(logs)}", flush=True)


def format_logs(logs, keys=None):
    logs = logs or {}
    out = []
    for k, v in logs.items():
        if keys is not None and k not in keys:
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if k in ("bops", "val_bops") and k.replace("bops", "ebops") in logs:
            continue  # the seed's name of the same value
        if k in ("ebops", "val_ebops", "bops", "val_bops"):
            out.append(f"{k} {v:,.0f}")
        elif k == "beta" or (v != 0 and abs(v) < 1e-3):
            out.append(f"{k} {v:.2e}")
        else:
            out.append(f"{k} {v:.4f}")
    return "  ".join(out)


def stop_progress(callbacks):
    """Close a progress bar that an interrupted fit left running (Keras skips on_train_end)."""
    for cb in callbacks:
        if isinstance(cb, RichProgress) and cb.progress is not None:
            cb.progress.stop()

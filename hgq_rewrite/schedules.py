"""Beta schedules: how the EBOPs penalty ``beta`` changes from epoch to epoch.

A schedule maps ``(epoch, epochs)`` (0-based epoch, number of epochs of the
``fit`` call) to a beta value. Three kinds exist:

- `Constant(value)`: the same beta every epoch;
- `Linear(start, end, start_epoch=0, end_epoch=None)`: straight line from
  ``start`` to ``end`` between the two epochs;
- `Log(start, end, start_epoch=0, end_epoch=None)`: geometric ramp (straight in
  log10(beta)), ``start`` and ``end`` > 0.

Before ``start_epoch`` a ramp holds ``start``, after ``end_epoch`` it holds
``end``; ``end_epoch=None`` means the last epoch of the fit. `BetaScheduler`
is the Keras callback that applies a schedule to every H-layer of the model
(nested models included) at the start of each epoch and logs the value as
``beta``. `parse_schedule` reads the text form used on the command line::

    3e-5                      constant
    linear:1e-6:1e-4          linear ramp over the whole fit
    log:1e-7:1e-4:5:30        log ramp from epoch 5 to epoch 30
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import keras

from .layers.links import link_model
from .quantizers.config import check_beta
from .trace import h_layers


def _check_beta(value, what):
    return check_beta(value, what)


def _check_epoch(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0 (0-based epoch), got {value!r}.")
    return value


@dataclass(frozen=True)
class Constant:
    """The same beta every epoch."""

    value: float

    def __post_init__(self):
        object.__setattr__(self, "value", _check_beta(self.value, "Constant"))

    def __call__(self, epoch, epochs=None):
        return self.value

    def __str__(self):
        return f"{self.value:g}"


@dataclass(frozen=True)
class _Ramp:
    start: float
    end: float
    start_epoch: int = 0
    end_epoch: int | None = None

    kind = "?"

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "start", _check_beta(self.start, f"{name}: start"))
        object.__setattr__(self, "end", _check_beta(self.end, f"{name}: end"))
        _check_epoch(self.start_epoch, f"{name}: start_epoch")
        _check_epoch(self.end_epoch, f"{name}: end_epoch")
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"{name}: end_epoch ({self.end_epoch}) is before start_epoch ({self.start_epoch}).")

    def fraction(self, epoch, epochs):
        """Position of ``epoch`` on the ramp, 0 at ``start_epoch`` and 1 at the end."""
        last = self.end_epoch
        if last is None:
            last = max((epochs or 1) - 1, self.start_epoch)
        if epoch <= self.start_epoch:
            return 0.0
        if epoch >= last:
            return 1.0
        return (epoch - self.start_epoch) / (last - self.start_epoch)

    def __str__(self):
        text = f"{self.kind}:{self.start:g}:{self.end:g}"
        if self.start_epoch or self.end_epoch is not None:
            text += f":{self.start_epoch}"
        if self.end_epoch is not None:
            text += f":{self.end_epoch}"
        return text


@dataclass(frozen=True)
class Linear(_Ramp):
    """Linear ramp from ``start`` (up to ``start_epoch``) to ``end`` (from ``end_epoch`` on)."""

    kind = "linear"

    def __call__(self, epoch, epochs=None):
        t = self.fraction(epoch, epochs)
        return self.start + (self.end - self.start) * t


@dataclass(frozen=True)
class Log(_Ramp):
    """Geometric ramp: log10(beta) moves linearly from log10(start) to log10(end)."""

    kind = "log"

    def __post_init__(self):
        super().__post_init__()
        if self.start <= 0 or self.end <= 0:
            raise ValueError(f"Log: start and end must be > 0 for a log ramp, got {self.start:g} and {self.end:g}.")

    def __call__(self, epoch, epochs=None):
        t = self.fraction(epoch, epochs)
        return math.exp(math.log(self.start) + (math.log(self.end) - math.log(self.start)) * t)


_KINDS = {"constant": Constant, "linear": Linear, "log": Log}


def parse_schedule(text):
    """Read a schedule from text: ``B``, ``constant:B``, ``linear:A:B[:E0[:E1]]``, ``log:A:B[:E0[:E1]]``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"beta schedule must be a non-empty string, got {text!r}.")
    parts = [p.strip() for p in text.strip().split(":")]
    usage = "use B, constant:B, linear:START:END[:FROM_EPOCH[:TO_EPOCH]] or log:START:END[:FROM_EPOCH[:TO_EPOCH]]"
    try:
        if len(parts) == 1:
            return Constant(float(parts[0]))
        kind = parts[0].lower()
        if kind not in _KINDS:
            raise ValueError(f"unknown schedule kind {parts[0]!r}")
        if kind == "constant":
            if len(parts) != 2:
                raise ValueError("constant takes one value")
            return Constant(float(parts[1]))
        if not 3 <= len(parts) <= 5:
            raise ValueError(f"{kind} takes a start, an end and up to two epochs")
        start, end = float(parts[1]), float(parts[2])
        epochs = [int(p) for p in parts[3:]]
        return _KINDS[kind](start, end, *epochs)
    except ValueError as e:
        raise ValueError(f"bad beta schedule {text!r}: {e}; {usage}.") from None


def as_schedule(beta):
    """A schedule from a number, a text form, a schedule object or a function ``f(epoch) -> beta``."""
    if isinstance(beta, (Constant, _Ramp)):
        return beta
    if isinstance(beta, str):
        return parse_schedule(beta)
    if isinstance(beta, Real) and not isinstance(beta, bool):
        return Constant(beta)
    if callable(beta):
        return _Function(beta)
    raise TypeError(
        f"beta must be a number, a schedule (Constant, Linear, Log), a text form like 'log:1e-7:1e-4' "
        f"or a function epoch -> beta, got {type(beta).__name__}."
    )


@dataclass(frozen=True)
class _Function:
    fn: object

    def __call__(self, epoch, epochs=None):
        return _check_beta(self.fn(epoch), f"beta schedule function at epoch {epoch}")

    def __str__(self):
        return getattr(self.fn, "__name__", "function")


def set_beta(model, value):
    """Set ``beta`` on every H-layer of ``model`` (nested models included); return how many."""
    value = _check_beta(value, "set_beta")
    layers = h_layers(model)
    for layer in layers:
        layer.beta = value
    return len(layers)


class BetaScheduler(keras.callbacks.Callback):
    """Set ``beta`` of every H-layer from a schedule at the start of each epoch.

    Args:
        schedule: a number, a `Constant` / `Linear` / `Log`, a text form
            (see `parse_schedule`) or a function ``epoch -> beta``.
        verbose: print the value at each epoch.

    The value applied is logged as ``beta`` and kept in ``values`` (epoch -> beta).
    """

    def __init__(self, schedule, verbose=False):
        super().__init__()
        self.schedule = as_schedule(schedule)
        self.verbose = verbose
        self.values = {}

    @classmethod
    def constant(cls, value):
        return cls(Constant(value))

    @classmethod
    def linear(cls, start, end, start_epoch=0, end_epoch=None):
        return cls(Linear(start, end, start_epoch, end_epoch))

    @classmethod
    def log(cls, start, end, start_epoch=0, end_epoch=None):
        return cls(Log(start, end, start_epoch, end_epoch))

    def set_model(self, model):
        super().set_model(model)
        link_model(model)
        if not h_layers(model):
            raise ValueError(f"BetaScheduler: model {model.name!r} has no H-layers whose beta could be set.")

    def value_at(self, epoch):
        epochs = (self.params or {}).get("epochs")
        return float(self.schedule(epoch, epochs))

    def on_epoch_begin(self, epoch, logs=None):
        value = self.value_at(epoch)
        set_beta(self.model, value)
        self.values[epoch] = value
        if self.verbose:
            print(f"epoch {epoch}: beta = {value:.3g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and epoch in self.values:
            logs["beta"] = self.values[epoch]

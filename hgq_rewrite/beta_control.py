"""Aim at an EBOPs budget: a controller that sets ``beta`` from the EBOPs of each epoch.

`BetaController(target)` is a Keras callback. It works in log space:

- **warm-up** (epochs ``0 .. warmup-1``): beta ramps geometrically from ``beta_min`` up to
  ``beta_init`` (the model first recovers accuracy at a small penalty); no control yet.
  ``beta_init=None`` (default) picks it from the model's scale: after each epoch
  ``beta_init = init_fraction * loss / EBOPs``, so that when control starts the penalty is about
  ``init_fraction`` (5 %) of the loss (1e-6 until an epoch has been seen);
- **control** (from epoch ``warmup`` on): at the end of each epoch, with ``e = log(EBOPs) -
  log(target)`` (EBOPs as logged under ``bops`` by `FreeBOPs` / `CalibratedBOPs`)::

      log_beta <- clip(log_beta + gain * e, log(beta_min), log(beta_max))      # integral part
      beta     =  clip(exp(log_beta + kp * e), beta_min, beta_max)             # above the target (e >= 0)
      beta     =  clip(exp(log_beta) * (1 + e / band), beta_min, beta_max)     # below it (e < 0)

  Above the target (``e > 0``) beta grows; below it (``e < 0``) beta shrinks. With ``gain=1``
  EBOPs twice the target double beta. Clipping the integral state keeps it from winding up.
  Below the target beta falls linearly, to ``beta_min`` at ``band`` (20 %) under it: bits grow
  back only from the task loss, which a slowly shrinking penalty holds down for many epochs
  (the budget was left 10-15 % unspent); ``band=None`` keeps the log-space rule on both sides.
  ``band=0`` switches the penalty off (beta 0) for every epoch after one that ended under the target.
  ``band="auto"`` (default) is 0 for a model with a convolution and 0.2 otherwise: a model that fits
  its training set (the benchmarks' two CNNs) gets no bits back from its task loss, and under any
  beta > 0 its EBOPs kept falling 10-18 % under the budget, while an MLP whose loss still asks for
  bits grows them back within an epoch at beta 0 and swings around the budget
  (``benchmarks/controller_rules.py``, docs/training_engine.md).

The rule is deterministic: the same EBOPs give the same betas. Defaults (`DEFAULTS`):
``beta_init=None`` (auto, ``init_fraction=0.05``), ``beta_min=1e-9``, ``beta_max=1e-2``, ``gain=1.0``, ``kp=0.5``,
``band="auto"``, ``warmup=2`` epochs (capped at a quarter of the fit's epochs, so a 7-epoch fit has one and a
3-epoch fit none; 5 left the rewrite of mnist1d 3 pp less accurate at a tight budget: every warm-up epoch is
one fewer at the budget, ``benchmarks/results/warmup.md``),
``lead=0`` (``lead > 0`` acts on ``e + lead * (e - e_previous)``, the error expected that many epochs ahead).
The value applied in each epoch is logged as ``beta`` and kept in ``values``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import keras

from .layers.conv import has_convolution
from .layers.links import link_model
from .schedules import set_beta
from .trace import h_layers

_FALLBACK_INIT = 1e-6
DEFAULTS = {"beta_init": None, "init_fraction": 0.05, "beta_min": 1e-9, "beta_max": 1e-2, "gain": 1.0, "kp": 0.5,
            "band": "auto", "warmup": 2, "lead": 0.0}
AUTO_BAND = 0.2  # band="auto" for a model without a convolution (one with a convolution: 0)


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}.")
    return float(value)


def check_target(value, what="target_ebops"):
    """``value`` as a float if it is a finite number > 0, else ValueError naming ``what``."""
    return _positive(value, what)


def log_error(ebops, target):
    """``log(EBOPs / target)``; ``ebops`` <= 0 counts as 1 EBOP (a fully pruned model asks for the smallest beta)."""
    return math.log(max(float(ebops), 1.0)) - math.log(target)


def control_step(log_beta, ebops, target, *, gain=DEFAULTS["gain"], kp=DEFAULTS["kp"],
                 beta_min=DEFAULTS["beta_min"], beta_max=DEFAULTS["beta_max"], band=AUTO_BAND,
                 lead=DEFAULTS["lead"], previous_error=None):
    """One control step: ``(new integral state log_beta, beta for the next epoch)``.

    ``lead`` > 0 acts on the error expected ``lead`` epochs ahead, ``e + lead * (e - previous_error)``,
    instead of ``e``: falling EBOPs ease beta off before they cross the target. ``band`` is a number
    (0: beta 0 under the target) or None, not ``"auto"`` (`resolve_band`).
    """
    lo, hi = math.log(beta_min), math.log(beta_max)
    error = log_error(ebops, target)
    if previous_error is not None:
        error += lead * (error - previous_error)
    log_beta = min(max(log_beta + gain * error, lo), hi)
    if error < 0 and band == 0:
        return log_beta, 0.0
    if error < 0 and band is not None:
        beta = math.exp(log_beta) * max(1.0 + error / band, 0.0)
    else:
        beta = math.exp(log_beta + kp * error)
    return log_beta, min(max(beta, beta_min), beta_max)


def resolve_band(band, model):
    """``band`` as `control_step` takes it: ``"auto"`` is 0 for a model with a convolution, else `AUTO_BAND`."""
    if band != "auto":
        return band
    return 0.0 if has_convolution(model) else AUTO_BAND


def check_band(band, what="band"):
    """``band`` if it is ``"auto"``, None or a finite number >= 0, else ValueError naming ``what``."""
    if band is None or band == "auto":
        return band
    if isinstance(band, bool) or not isinstance(band, Real) or not math.isfinite(band) or band < 0:
        raise ValueError(f"{what} must be 'auto', None or a finite number >= 0, got {band!r}.")
    return float(band)


def warmup_epochs(warmup, epochs):
    """Warm-up epochs actually used: ``warmup`` capped at a quarter of ``epochs``."""
    if epochs is None:
        return warmup
    return min(warmup, int(epochs) // 4)


class BetaController(keras.callbacks.Callback):
    """Set ``beta`` of every H-layer each epoch so that EBOPs approach ``target``.

    Args:
        target: the EBOPs budget (> 0).
        beta_init: beta at the end of the warm-up, where control starts; None: from the model's
            scale, ``init_fraction * loss / EBOPs`` of the latest epoch.
        init_fraction: with ``beta_init=None``, the share of the loss the penalty starts at.
        beta_min, beta_max: beta stays in ``[beta_min, beta_max]``; the warm-up starts at ``beta_min``.
        gain: integral gain on ``log(EBOPs / target)`` per epoch.
        kp: proportional gain (0 for a pure integral controller) above the target.
        band: below the target, beta falls linearly to ``beta_min`` at this fraction under it
            (log scale); 0: beta 0 under the target; None: ``kp`` on both sides; ``"auto"``: 0 for a
            model with a convolution, else 0.2.
        warmup: warm-up epochs (capped at a quarter of the fit's epochs).
        lead: act on the error expected this many epochs ahead from its last change (0: the error now).
        ebops_key: the logged EBOPs (``bops``).

    Put it after the callback that logs ``bops`` (`FreeBOPs` / `CalibratedBOPs`).
    """

    def __init__(self, target, *, beta_init=DEFAULTS["beta_init"], init_fraction=DEFAULTS["init_fraction"],
                 beta_min=DEFAULTS["beta_min"],
                 beta_max=DEFAULTS["beta_max"], gain=DEFAULTS["gain"], kp=DEFAULTS["kp"],
                 band=DEFAULTS["band"], warmup=DEFAULTS["warmup"], lead=DEFAULTS["lead"], ebops_key="bops"):
        super().__init__()
        self.target = check_target(target, "BetaController: target")
        self.beta_min = _positive(beta_min, "BetaController: beta_min")
        self.beta_max = _positive(beta_max, "BetaController: beta_max")
        if self.beta_min >= self.beta_max:
            raise ValueError(f"BetaController: beta_min ({beta_min:g}) must be below beta_max ({beta_max:g}).")
        self.auto_init = beta_init is None
        self.init_fraction = _positive(init_fraction, "BetaController: init_fraction")
        first = _FALLBACK_INIT if beta_init is None else _positive(beta_init, "BetaController: beta_init")
        self.beta_init = self._clip(first)
        self._given_init = self.beta_init
        for name, value in (("gain", gain), ("kp", kp), ("lead", lead)):
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"BetaController: {name} must be a finite number >= 0, got {value!r}.")
        self.gain, self.kp, self.lead = float(gain), float(kp), float(lead)
        self.band = check_band(band, "BetaController: band")
        self._band = AUTO_BAND if self.band == "auto" else self.band  # resolved for the model in set_model
        if isinstance(warmup, bool) or not isinstance(warmup, Integral) or warmup < 0:
            raise ValueError(f"BetaController: warmup must be an integer >= 0, got {warmup!r}.")
        self.warmup = int(warmup)
        self.ebops_key = ebops_key
        self.values = {}
        self.log_beta = math.log(self.beta_init)
        self.next_beta = self.beta_init
        self.previous_error = None

    def _clip(self, beta):
        return min(max(beta, self.beta_min), self.beta_max)

    def set_model(self, model):
        super().set_model(model)
        link_model(model)
        if not h_layers(model):
            raise ValueError(f"BetaController: model {model.name!r} has no H-layers whose beta could be set.")
        self._band = resolve_band(self.band, model)

    def on_train_begin(self, logs=None):
        self.beta_init = self._given_init
        self.log_beta = math.log(self.beta_init)
        self.next_beta = self.beta_init
        self.previous_error = None
        self.values = {}

    def beta_at(self, epoch):
        """The beta applied in ``epoch``: the warm-up ramp, then the controller's value."""
        w = warmup_epochs(self.warmup, (self.params or {}).get("epochs"))
        if epoch < w:  # geometric ramp beta_min -> beta_init, reaching beta_init at epoch w
            t = epoch / w
            return math.exp(math.log(self.beta_min) + (math.log(self.beta_init) - math.log(self.beta_min)) * t)
        return self.next_beta

    def on_epoch_begin(self, epoch, logs=None):
        value = self.beta_at(epoch)
        set_beta(self.model, value)
        self.values[epoch] = value

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if epoch in self.values:
            logs["beta"] = self.values[epoch]
        w = warmup_epochs(self.warmup, (self.params or {}).get("epochs"))
        if self.ebops_key not in logs:
            raise KeyError(f"BetaController: {self.ebops_key!r} is not in the epoch logs; put FreeBOPs() or "
                           "CalibratedBOPs(...) before BetaController.")
        ebops = float(logs[self.ebops_key])
        if not math.isfinite(ebops):
            return
        if self.auto_init and epoch + 1 <= max(w, 1):
            loss = logs.get("loss")
            if loss is not None and math.isfinite(float(loss)) and float(loss) > 0 and ebops > 0:
                self.beta_init = self._clip(self.init_fraction * float(loss) / ebops)
        if epoch + 1 < w:
            return  # still warming up: the next epoch's beta comes from the ramp
        if epoch + 1 == w or (w == 0 and epoch == 0):  # first control step after the warm-up starts from beta_init
            self.log_beta = math.log(self.beta_init)
            self.next_beta = self.beta_init
        self.log_beta, self.next_beta = control_step(
            self.log_beta, ebops, self.target, gain=self.gain, kp=self.kp, beta_min=self.beta_min,
            beta_max=self.beta_max, band=self._band, lead=self.lead, previous_error=self.previous_error,
        )
        self.previous_error = log_error(ebops, self.target)

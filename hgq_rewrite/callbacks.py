"""Training callbacks: range reset each epoch, EBOPs in the logs, and a stop on a NaN loss."""

import math
import threading
from numbers import Integral

import keras

from .layers.links import link_model
from .trace import h_layers, trace_minmax


class _HGQCallback(keras.callbacks.Callback):
    def set_model(self, model):
        super().set_model(model)
        link_model(model)


class ResetMinMax(_HGQCallback):
    """Reset every activation range at the end of each epoch (put it last in the callbacks)."""

    def on_epoch_end(self, epoch, logs=None):
        for layer in h_layers(self.model):
            layer.reset_minmax()


class FreeBOPs(_HGQCallback):
    """Log ``ebops`` (and ``bops``, the seed's name): the EBOPs estimate of the last training step."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["ebops"] = logs["bops"] = sum(layer.ebops for layer in h_layers(self.model))


class CalibratedBOPs(_HGQCallback):
    """Log ``ebops`` (and ``bops``, the seed's name): exact EBOPs from ``trace_minmax`` on ``calibration_data``."""

    def __init__(self, calibration_data, bsz=None):
        super().__init__()
        if bsz is not None and (isinstance(bsz, bool) or not isinstance(bsz, Integral) or bsz < 1):
            raise ValueError(f"CalibratedBOPs: bsz must be an integer >= 1 or None, got {bsz!r}.")
        self.calibration_data = calibration_data
        self.bsz = None if bsz is None else int(bsz)

    def on_epoch_end(self, epoch, logs=None):
        data = self.calibration_data
        n = len(data[0] if isinstance(data, (list, tuple)) else data)
        value = trace_minmax(self.model, data, bsz=self.bsz or n)
        if logs is not None:
            logs["ebops"] = logs["bops"] = value


class NonFiniteLossError(FloatingPointError):
    """The training loss turned NaN or inf (raised by `StopOnNonFiniteLoss`)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with `NonFiniteLossError` when a batch's loss turns NaN or inf.

    Keras' ``TerminateOnNaN`` stops silently; this names the epoch and the first bad batch, so a
    run that diverged cannot pass for one that finished. The check runs beside training (Keras
    dispatches it asynchronously: reading the loss would otherwise wait for every step to finish);
    it stops the epoch within a step or two of the batches it sees (every ``steps_per_execution``-th:
    the epoch's running loss stays non-finite once it was) and raises at its end.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self._bad = None  # (epoch, batch, loss) of the first non-finite loss
        self._lock = threading.Lock()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            with self._lock:
                if self._bad is None or (self.epoch, batch) < self._bad[:2]:
                    self._bad = (self.epoch, batch, value)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self._bad is not None:
            bad_epoch, batch, value = self._bad
            self._bad = None
            raise NonFiniteLossError(
                f"the loss became {value} at epoch {bad_epoch + 1}, batch {batch + 1}: training stopped"
            )

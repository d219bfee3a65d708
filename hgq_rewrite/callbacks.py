"""Training callbacks: range reset each epoch, and EBOPs in the logs."""

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
    """Add ``bops``: the EBOPs estimate of the last training step (no extra computation)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["bops"] = sum(layer.ebops for layer in h_layers(self.model))


class CalibratedBOPs(_HGQCallback):
    """Add ``bops``: exact EBOPs from ``trace_minmax`` on ``calibration_data`` after each epoch."""

    def __init__(self, calibration_data, bsz=None):
        super().__init__()
        self.calibration_data = calibration_data
        self.bsz = bsz

    def on_epoch_end(self, epoch, logs=None):
        data = self.calibration_data
        n = len(data[0] if isinstance(data, (list, tuple)) else data)
        value = trace_minmax(self.model, data, bsz=self.bsz or n)
        if logs is not None:
            logs["bops"] = value

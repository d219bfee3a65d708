"""The trainable heterogeneous quantizer (one per kernel or activation tensor)."""

import math

import keras
import numpy as np
from keras import ops

from .config import activation_config, check_granularity_rank, kernel_config
from .exact_bits import TINY, integer_bits, range_integer_bits, significant_bits
from .fixed_point import exp2, floor_log2, quantize, remove_periods, round_to_integer
from .replicas import REPLICATED, replica_max, replica_min
from .saved_layouts import load_older_state

LN2 = math.log(2.0)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class BitsL1(keras.regularizers.Regularizer):
    """``l1 * sum(f)``: keeps pushing the fractional bits down (no absolute value)."""

    def __init__(self, l1=1e-6):
        self.l1 = float(l1)

    def __call__(self, x):
        return ops.cast(self.l1 * ops.sum(x), keras.config.floatx())  # float64 layers add float32 losses too

    def get_config(self):
        return {"l1": self.l1}


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class ClipBits(keras.constraints.Constraint):
    """Projects the fractional bits into ``[low, high]`` after every update."""

    def __init__(self, low=-23, high=23):
        self.low, self.high = float(low), float(high)

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)

    def get_config(self):
        return {"low": self.low, "high": self.high}


class Filled(keras.initializers.Initializer):
    """Every element ``value``, or ``value[j]`` in row ``j`` of a packed variable given a list; made in
    numpy: no backend op per variable (``quantize`` creates thousands)."""

    def __init__(self, value=0.0):
        self.value = [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)

    def __call__(self, shape, dtype=None):
        rows = np.asarray(self.value, dtype=keras.backend.standardize_dtype(dtype or keras.config.floatx()))
        return np.broadcast_to(rows.reshape(rows.shape + (1,) * (len(shape) - rows.ndim)), shape).copy()

    def get_config(self):
        return {"value": self.value}


class NotTracedError(RuntimeError):
    """Raised when exact formats are asked for before ``trace_minmax``."""


def shared_axes(granularity, rank, is_activation, channel_axes=(-1,)):
    """Axes (of a rank-``rank`` tensor) along which one bitwidth is shared.

    ``channel_axes`` are the axes that index an output channel (a depthwise kernel's
    channels are its last two axes, input channel x depth multiplier).
    """
    if granularity == "element":
        axes = ()
    elif granularity == "channel":
        kept = {a % rank for a in channel_axes}
        axes = tuple(a for a in range(rank) if a not in kept)
    elif granularity == "tensor":
        axes = tuple(range(rank))
    else:
        axes = tuple(a % rank for a in granularity)
    if is_activation:
        axes = tuple(sorted(set(axes) | {0}))  # the batch always shares
    return axes


def read(variable):
    """The value of ``variable`` as one tensor. On TensorFlow every use of a variable in a traced step is a
    read op of its own, and the ops of a step, not their arithmetic, are what a small model's step costs."""
    return ops.copy(variable)


def as_shape(x, shape):
    """``x`` broadcast to ``shape`` (no op when it has that shape already)."""
    return x if tuple(x.shape) == tuple(shape) else ops.broadcast_to(x, shape)


def all_set(flags):
    """True when every element of a 0/1 state row (``calibrated``, ``saturate``) is 1 (eager)."""
    return bool(np.all(ops.convert_to_numpy(flags) > 0))


def custom_gradient(forward):
    """``keras.ops.custom_gradient`` for a ``forward(*tensors) -> (value, gradient)`` whose ``gradient`` takes
    the upstream gradient as its one argument (Keras hands it over positionally on TensorFlow and by
    keyword on JAX)."""

    @ops.custom_gradient
    def wrapped(*tensors):
        value, gradient = forward(*tensors)

        def keras_gradient(*args, upstream=None):
            return gradient(args[0] if upstream is None else upstream)

        return value, keras_gradient

    return wrapped


def ste_round(x):
    """round(x) forward, identity gradient (``x`` a tensor or a variable)."""
    x = read(x)
    return x + ops.stop_gradient(ops.round(x) - x)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class HQuantizer(keras.layers.Layer):
    """Rounds a tensor onto a per-element (or per-group) trainable fixed-point grid.

    Args:
        config: quantizer config dict (see ``hgq_rewrite.quantizers.config``).
        role: ``"kernel"`` (bits adapted to the weight values) or ``"activation"``
            (records min/max of its output for the integer bits).
        owner: name of the owning layer, used in error messages.
    """

    has_firmware_state = False  # activation quantizers with known feature dims set it in build

    def __init__(self, config=None, role="activation", owner=None, channel_axes=(-1,), **kwargs):
        super().__init__(**kwargs)
        if role not in ("kernel", "activation"):
            raise ValueError(f"role must be 'kernel' or 'activation', got {role!r}")
        self.role = role
        self.channel_axes = tuple(int(a) for a in channel_axes)
        self.owner = owner or self.name
        where = f"{'kq_conf' if role == 'kernel' else 'paq_conf'} of layer {self.owner!r}"
        merge = kernel_config if role == "kernel" else activation_config
        self.config = merge(config, where)
        self.record_minmax = False

    @property
    def is_activation(self):
        return self.role == "activation"

    def build(self, shape):
        shape = tuple(shape)
        check_granularity_rank(self.config["granularity"], shape, f"{self.role} quantizer of layer {self.owner!r}")
        axes = shared_axes(self.config["granularity"], len(shape), self.is_activation, self.channel_axes)
        unknown = [a for a in range(len(shape)) if a not in axes and shape[a] is None]
        if unknown:
            raise ValueError(
                f"Layer {self.owner!r}: a {self.config['granularity']!r}-granularity quantizer needs a known "
                f"shape, but axes {unknown} of {shape} are unknown. Give the model an Input with a full shape, "
                f"or use granularity 'tensor'."
            )
        self.axes = axes
        self.bw_shape = tuple(1 if a in axes else shape[a] for a in range(len(shape)))
        self.fbw = self.add_weight(
            name="fbw",
            shape=self.bw_shape,
            initializer=Filled(self.config["init_bw"]),
            trainable=bool(self.config["trainable"]),
            constraint=ClipBits(*self.config["bw_clip"]),
        )
        if self.is_activation:
            # [min, max, calibrated]: the range, reduced over all replicas in _record, so every replica holds
            # the same value; it starts empty (+inf / -inf, as after reset_minmax). calibrated (every element
            # alike) is 1 after trace_minmax, and 0 again once a training step records a range: one variable
            # written once per step (each variable is a state array Keras hands in and out of every JAX step)
            self.minmax = self.add_weight(name="minmax", shape=(3, *self.bw_shape), trainable=False,
                                          initializer=Filled([np.inf, -np.inf, 0.0]), aggregation=REPLICATED)
            self._build_firmware_state(shape)

    def _build_firmware_state(self, shape):
        """Variables of the calibrated inference path (see :meth:`set_firmware_format`)."""
        fw_shape = (1, *shape[1:])
        self.has_firmware_state = all(s is not None for s in fw_shape)
        if not self.has_firmware_state:
            return  # unknown feature dims: no per-element formats, so no firmware emulation (nor export)
        # [k, i, f, saturate]: the format, and its overflow (every element alike: 0 WRAP, 1 SAT)
        self.fw_kif = self.add_weight(name="fw_kif", shape=(4, *fw_shape), trainable=False, aggregation=REPLICATED,
                                      initializer=Filled(0.0))

    # read-only views of the packed state (tensors)
    min = property(lambda self: self.minmax[0], doc="Smallest recorded output (per bitwidth group).")
    max = property(lambda self: self.minmax[1], doc="Largest recorded output (per bitwidth group).")
    calibrated = property(lambda self: self.minmax[2], doc="1 (per group) while the firmware format is in use, else 0.")
    saturate = property(lambda self: self.fw_kif[3], doc="Firmware overflow (per element): 1 SAT, 0 WRAP.")
    fw_k = property(lambda self: self.fw_kif[0], doc="Sign bits of the firmware format.")
    fw_i = property(lambda self: self.fw_kif[1], doc="Integer bits of the firmware format.")
    fw_f = property(lambda self: self.fw_kif[2], doc="Fractional bits of the firmware format.")

    def load_own_variables(self, store):
        """Also load the layouts earlier versions saved (see `load_older_state`); any other layout is refused
        naming the owning layer."""
        if self.is_activation and load_older_state(self, store):
            return
        try:
            super().load_own_variables(store)
        except ValueError as e:
            raise ValueError(
                f"Layer {self.owner!r} ({self.role} quantizer): {e}. The file does not match this layer's "
                "quantizer; load it with the model code that saved it, or quantize the float model again."
            ) from None

    # -- forward ---------------------------------------------------------------------------------
    def call(self, x, training=None, fbw=None):
        """``fbw``: the bitwidths as the owning layer read them once for its call (its other uses of them
        share that read: on TensorFlow each read is an op of the step); default: the variable itself."""
        if fbw is None:
            fbw = read(self.fbw) if training else self.fbw  # custom gradients take tensors, not variables
        if training:
            xq, out = self._train_quantize(x, fbw)
        else:
            xq = out = self._grid_quantize(x, ops.round(fbw))
        if not training and self.is_activation and self.has_firmware_state and not self.record_minmax:
            out = ops.where(self.calibrated > 0, self.firmware_quantize(x), xq)
        if self.is_activation and (training or self.record_minmax):
            self._record(xq)  # drops the calibration: ranges from training are not one
        return out

    def _train_quantize(self, x, fbw):
        """``(xq, out)``: ``x`` on its grid (no gradient), and the same value with the training gradients:
        d/dx = 1 (straight through), d/dfbw = -ln2 * (xq - x) summed over the shared axes, plus ``l1`` (the
        gradient of the bit-count penalty ``l1 * sum(f)``, added here rather than as a loss term: a
        regulariser costs a read, a sum and a product of every bitwidth variable per step, and is the same
        constant). One op with a gradient of its own: the same arithmetic written with stop_gradient costs
        several ops per step."""
        axes, l1 = self.axes, self.config["l1"]

        @custom_gradient
        def quantize_with_bit_gradient(x, fbw):
            xq = self._grid_quantize(x, ops.round(fbw))

            def gradient(upstream):
                g_fbw = upstream * (xq - x) * -LN2
                g_fbw = ops.sum(g_fbw, axis=axes, keepdims=True) if axes else g_fbw
                return upstream, g_fbw + l1 if l1 else g_fbw

            return xq, gradient

        out = quantize_with_bit_gradient(read(x), fbw)  # tensors: TF's custom gradients refuse variables
        return ops.stop_gradient(out), out

    def _grid_quantize(self, x, f):
        """``x`` rounded onto the grid ``2**-f`` (no gradient)."""
        scale = exp2(f, per_element=tuple(f.shape) == tuple(x.shape))
        return ops.stop_gradient(round_to_integer(x * scale, self.config["rounding"]) / scale)

    def firmware_quantize(self, x):
        """What the exported firmware computes: the calibrated format, its rounding and overflow."""
        k, i, f = (ops.cast(v, x.dtype) for v in (self.fw_k, self.fw_i, self.fw_f))
        mode = self.config["rounding"]
        # whole periods of the wrap off first (exact; rounding commutes with whole periods): a huge x would
        # overflow to inf in x * 2**f and come out NaN
        wrap = quantize(remove_periods(x, exp2(k + i)), k, i, f, mode, "WRAP")
        sat = quantize(x, k, i, f, mode, "SAT")
        return ops.where(self.saturate > 0, sat, wrap)

    def set_firmware_format(self, kif, saturate):
        """Freeze the exported per-element format ``kif`` (arrays of shape ``(1, *features)``) and the
        overflow mode (SAT if ``saturate`` else WRAP); inference then computes exactly like the firmware."""
        if not self.has_firmware_state:
            raise NotTracedError(
                f"Layer {self.owner!r}: its output has unknown dimensions, so no per-element format can be "
                "calibrated. Give the model an Input with a full shape."
            )
        fw_shape = self.fw_kif.shape[1:]
        rows = [*kif, 1.0 if saturate else 0.0]
        self.fw_kif.assign(np.stack([np.broadcast_to(np.asarray(v, dtype="float32"), fw_shape) for v in rows]))
        minmax = np.array(ops.convert_to_numpy(self.minmax))
        minmax[2] = 1.0
        self.minmax.assign(minmax)

    def saturates(self):
        """True when the firmware format saturates on overflow (SAT), False when it wraps."""
        return all_set(self.saturate)

    def emulates(self, kif, saturate):
        """True when the calibrated inference uses format ``kif`` and this overflow mode."""
        if not self.is_traced():
            return False
        same_mode = self.saturates() == bool(saturate)
        stored = (ops.convert_to_numpy(v) for v in (self.fw_k, self.fw_i, self.fw_f))
        return same_mode and all(np.array_equal(a, np.broadcast_to(b, a.shape)) for a, b in zip(stored, kif))

    def _record(self, xq):
        lo = replica_min(ops.min(xq, axis=self.axes, keepdims=True))
        hi = replica_max(ops.max(xq, axis=self.axes, keepdims=True))
        old = read(self.minmax)
        self.set_range(ops.minimum(old[0], ops.cast(lo, old.dtype)), ops.maximum(old[1], ops.cast(hi, old.dtype)))

    def set_range(self, lo, hi):
        """Set the recorded range to ``[lo, hi]`` (broadcast to ``bw_shape``; graph-safe), uncalibrated."""
        lo, hi = (as_shape(ops.cast(v, self.minmax.dtype), self.bw_shape) for v in (lo, hi))
        self.minmax.assign(ops.stack([lo, hi, ops.zeros(self.bw_shape, self.minmax.dtype)]))

    def reset_minmax(self):
        """Forget the recorded range (+inf / -inf) and any calibration (eager: from numpy, one assign, as
        `ResetMinMax` runs it after every epoch)."""
        empty = np.stack([np.full(self.bw_shape, np.inf), np.full(self.bw_shape, -np.inf), np.zeros(self.bw_shape)])
        self.minmax.assign(empty.astype(self.minmax.dtype))

    def adapt_to(self, values):
        """Kernels: set f so every weight group keeps ``init_bw`` significant bits (eager).

        In numpy, exact (`integer_bits`): a backend op costs far more than the arithmetic when ``quantize``
        builds thousands of layers.
        """
        a = np.abs(np.asarray(ops.convert_to_numpy(values), "float32"))
        m = a.max(axis=self.axes, keepdims=True) if self.axes else a
        int_bits = integer_bits(m)
        lo, hi = self.config["bw_clip"]
        self.fbw.assign(np.clip(self.config["init_bw"] - int_bits, lo, hi).reshape(self.bw_shape))

    # -- bitwidths ---------------------------------------------------------------------------------
    def has_ranges(self):
        """True when every element has a recorded range (from training or from ``trace_minmax``)."""
        return bool(np.all(ops.convert_to_numpy(self.min) <= ops.convert_to_numpy(self.max)))

    def is_traced(self):
        """True after ``trace_minmax``, until a training step records new ranges."""
        return self.has_firmware_state and all_set(self.calibrated) and self.has_ranges()

    def activation_kif(self, exact=False):
        """(k, i, f) tensors of shape ``bw_shape`` for the recorded range.

        ``exact=False``: differentiable estimate used in training (f through STE rounding).
        ``exact=True``: after ``trace_minmax`` the firmware's format (shape ``(1, *features)``);
        before it, the smallest format holding every recorded value.
        """
        if exact and self.is_traced():
            return tuple(ops.convert_to_tensor(v) for v in (self.fw_k, self.fw_i, self.fw_f))
        return self.range_kif(exact)

    def range_kif(self, exact=False):
        """(k, i, f) from the recorded range (see :meth:`activation_kif`)."""
        # tensors, not Variables: jax.numpy functions (ops.where) refuse Variables under jit
        minmax = ops.cast(read(self.minmax), "float32")
        lo, hi = minmax[0], minmax[1]
        fbw = ops.cast(self.fbw, "float32")  # formats are small integers: float32 whatever the layer's dtype
        if exact:
            if not self.has_ranges():
                raise NotTracedError(
                    f"Layer {self.owner!r} has no recorded activation range: call "
                    "hgq_rewrite.trace_minmax(model, calibration_data) first."
                )
            lo, hi, f = ops.convert_to_numpy(lo), ops.convert_to_numpy(hi), np.round(ops.convert_to_numpy(fbw))
            k = (lo < 0).astype("float32")
            i = np.maximum(range_integer_bits(lo, hi, f), -f - k)
            return tuple(ops.convert_to_tensor(v.astype("float32")) for v in (k, i, f))
        k = ops.stop_gradient(ops.cast(lo < 0, "float32"))
        # max(|lo|, |hi|) as lo <= hi; an empty range (+inf, -inf) gives -inf, so the smallest i, as a zero range
        mag = ops.maximum(-lo, hi)
        i = ops.stop_gradient(floor_log2(ops.maximum(mag, TINY)) + 1.0)
        return k, i, ste_round(fbw)

    def kernel_bits(self, q, exact=False, values=None, fbw=None):
        """Bits of each (quantized) weight, no sign bit: differentiable estimate or exact span.

        ``values``: the float weights ``q`` was quantized from. With them, the estimate keeps its
        value but its gradient keeps pushing a weight's fractional bits down until they are
        ``prune_margin`` bits below its float magnitude (see `_int_bits`), so a weight that has just
        rounded to zero is pushed on past the rounding threshold instead of flickering back.
        ``fbw``: the bitwidths as read for the training call (see `call`).
        """
        if exact:
            return ops.convert_to_tensor(significant_bits(ops.convert_to_numpy(q)).astype("float32"))
        int_bits = self._int_bits(q)
        margin = self.config["prune_margin"]
        # the gradient reaches f while the bits, or with the float values the bits down to the margin, are > 0
        reach = self._int_bits(values) + margin if values is not None and margin > 0 else int_bits

        @custom_gradient
        def estimate(fbw):
            f = ops.round(fbw)
            pushed = ops.cast(reach + f > 0, fbw.dtype)
            return ops.relu(int_bits + f), lambda upstream: upstream * pushed

        bits = estimate(read(self.fbw) if fbw is None else fbw)
        return bits if tuple(bits.shape) == tuple(q.shape) else bits * ops.ones_like(q)

    def _int_bits(self, w):
        """Integer bits ``floor(log2 |w|) + 1`` of each weight group's largest magnitude (no gradient)."""
        a = ops.abs(w)
        if self.axes:
            a = ops.max(a, axis=self.axes, keepdims=True)
        return ops.stop_gradient(floor_log2(ops.maximum(a, TINY)) + 1.0)

    def max_fraction_bits(self, keep_axis=-1, fbw=None):
        """round(f) maximised over every axis but ``keep_axis`` (bias grids follow this); ``fbw`` as in `call`."""
        f = ops.round(self.fbw if fbw is None else fbw)
        rank = len(self.bw_shape)
        axes = tuple(a for a in range(rank) if a != keep_axis % rank)
        return ops.max(f, axis=axes)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(config=dict(self.config), role=self.role, owner=self.owner, channel_axes=list(self.channel_axes))
        return cfg

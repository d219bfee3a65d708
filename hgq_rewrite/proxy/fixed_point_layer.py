"""Fixed-point quantizer layer used in proxy models.

A proxy model is a plain Keras model whose float layers carry on-grid weights,
with a :class:`FixedPointQuantizer` wherever the firmware rounds or overflows.
The layer stores the format in hls4ml's convention: per element ``k`` (sign
bit), ``B = k + i + f`` (total bits) and ``I = k + i`` (integer bits including
the sign), as **integer** non-trainable weights named ``keep_negative``,
``bits`` and ``integers``. hls4ml's bit-exact flow needs integer arrays; float
masks make its bit manipulation fail.
"""

import warnings

import numpy as np
import keras
from keras import ops

from hgq_rewrite.quantizers.fixed_point import OVERFLOW_MODES, ROUNDING_MODES, quantize

from .registration import register_hls4ml_handlers

MASK_DTYPE = "int16"
MAX_BITS = np.iinfo(np.int16).max


def _as_int_array(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers, got non-integer values {arr.ravel()[:5]}...")
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < -MAX_BITS or arr.max() > MAX_BITS):
        raise ValueError(f"{name} does not fit in int16: range [{arr.min()}, {arr.max()}].")
    return arr


def normalize_kbi(keep_negative, bits, integers):
    """Broadcast (k, B, I) together, clamp ``B >= 0`` and zero ``k``/``I`` where ``B == 0``.

    Returns three int16 numpy arrays of one common shape.
    """
    k = _as_int_array(keep_negative, "keep_negative")
    b = _as_int_array(bits, "bits")
    i = _as_int_array(integers, "integers")
    if np.any((k != 0) & (k != 1)):
        raise ValueError("keep_negative must be 0 or 1.")
    k, b, i = np.broadcast_arrays(k, b, i)
    b = np.maximum(b, 0)
    pruned = b == 0
    k = np.where(pruned, 0, k)
    i = np.where(pruned, 0, i)
    return k.astype(MASK_DTYPE), b.astype(MASK_DTYPE), i.astype(MASK_DTYPE)


def kif_to_mask(k, i, f):
    """(k, i, f) -> normalized int16 (k, B, I) arrays (see :func:`normalize_kbi`)."""
    k, i, f = (_as_int_array(v, n) for v, n in ((k, "k"), (i, "i"), (f, "f")))
    k, i, f = np.broadcast_arrays(k, i, f)
    return normalize_kbi(k, k + i + f, k + i)


def check_float64(layer_name, dtype):
    """Refuse a float64 proxy layer on JAX with float64 off (JAX would compute it in float32, inexactly)."""
    if dtype != "float64" or keras.backend.backend() != "jax":
        return
    import jax

    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"proxy layer {layer_name!r} computes in float64, which JAX has switched off: call "
            'jax.config.update("jax_enable_x64", True) at the start of the program (before building models).'
        )


def overflow_argument(overflow, SAT, where):
    """The overflow mode from ``overflow=`` or the deprecated ``SAT=`` (default WRAP)."""
    if SAT is not None:
        warnings.warn(f"{where}: SAT= is deprecated (it is the overflow mode); use overflow={SAT!r}.",
                      DeprecationWarning, stacklevel=3)
        if overflow is not None and overflow != SAT:
            raise ValueError(f"{where}: overflow={overflow!r} and SAT={SAT!r} disagree; give overflow= only.")
        overflow = SAT
    return "WRAP" if overflow is None else overflow


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class FixedPointQuantizer(keras.layers.Layer):
    """Emulate a cast to ``ap_(u)fixed<B, I, RND, SAT>``, per element.

    Args:
        keep_negative: sign bit ``k`` (0/1); scalar or array broadcastable to
            ``(1, *feature_shape)``.
        bits: total bits ``B = k + i + f``. Elements with ``B <= 0`` output 0.
        integers: integer bits including the sign, ``I = k + i``.
        RND: rounding mode, ``"RND"``, ``"TRN"`` or ``"RND_CONV"``.
        overflow: overflow mode, ``"WRAP"`` (default), ``"SAT"`` or ``"SAT_SYM"``.
        overrides: hls4ml per-layer settings carried to the firmware, e.g.
            ``{"layers": {"dense_1": {"parallelization_factor": 4}}}``.
        fusible: kept for compatibility with HGQ v1 proxies; hls4ml decides
            fusion itself.
        shape: shape of the mask arrays; only needed when the masks are not
            given (deserialization). ``(1,)`` is a homogeneous quantizer.
        SAT: deprecated name of ``overflow`` (HGQ v1's); warns.

    The layer computes in its own dtype (``float64`` by default) so that sums
    of fixed-point numbers stay exact. Masks of size 1 are stored with shape
    ``(1,)``; others are broadcast to ``(1, *feature_shape)`` at build time.
    On JAX, float64 needs ``jax.config.update("jax_enable_x64", True)``; without it the
    constructor raises. Making the first one registers the proxy layers with hls4ml
    (see ``hgq_rewrite.proxy.registration``).
    """

    def __init__(
        self,
        keep_negative=None,
        bits=None,
        integers=None,
        RND="RND",
        overflow=None,
        overrides=None,
        fusible=None,
        shape=None,
        SAT=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float64")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_float64(self.name, self.compute_dtype)
        overflow = overflow_argument(overflow, SAT, "FixedPointQuantizer")
        if RND not in ROUNDING_MODES:
            raise ValueError(f"Unknown rounding mode RND={RND!r}; use one of {ROUNDING_MODES}.")
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"Unknown overflow mode overflow={overflow!r}; use one of {OVERFLOW_MODES}.")
        given = [v is not None for v in (keep_negative, bits, integers)]
        if any(given) and not all(given):
            raise ValueError("Give all of keep_negative, bits and integers, or none of them.")
        if not any(given) and shape is None:
            raise ValueError("FixedPointQuantizer needs either the (keep_negative, bits, integers) masks or `shape`.")
        self.RND = RND
        self.overflow = overflow
        self.overrides = dict(overrides) if overrides else {}
        self.fusible = fusible
        self._initial_mask = normalize_kbi(keep_negative, bits, integers) if all(given) else None
        if self._initial_mask is not None and self._initial_mask[0].size == 1:
            self._initial_mask = tuple(m.reshape(1) for m in self._initial_mask)
        self._mask_shape = tuple(shape) if shape is not None else None
        register_hls4ml_handlers()

    @property
    def SAT(self):
        """Deprecated name of ``overflow``."""
        warnings.warn("FixedPointQuantizer.SAT is deprecated; use .overflow.", DeprecationWarning, stacklevel=2)
        return self.overflow

    @classmethod
    def from_kif(cls, k, i, f, RND="RND", overflow=None, **kwargs):
        """Build from a (k, i, f) format (sign, integer bits without sign, fractional bits)."""
        return cls(*kif_to_mask(k, i, f), RND=RND, overflow=overflow, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "SAT" in config:  # saved before overflow= existed
            config["overflow"] = config.pop("SAT")
        return cls(**config)

    def build(self, input_shape):
        feature_shape = tuple(input_shape[1:])
        if self._initial_mask is not None:
            k, b, i = self._initial_mask
            if k.shape != (1,):
                target = (1, *feature_shape)
                try:
                    shape = np.broadcast_shapes(k.shape, target)
                except ValueError:
                    shape = None
                if shape != target:
                    raise ValueError(
                        f"{self.name}: mask shape {k.shape} does not broadcast to the input's (1, *features) = {target}."
                    )
                k, b, i = (np.broadcast_to(m, target) for m in (k, b, i))
            shape = k.shape
        else:
            shape = self._mask_shape
            if shape != (1,) and tuple(shape) != (1, *feature_shape):
                raise ValueError(f"{self.name}: saved mask shape {shape} does not match input features {feature_shape}.")
        self._mask_shape = tuple(int(s) for s in shape)
        self.keep_negative = self.add_weight(
            name="keep_negative", shape=self._mask_shape, dtype=MASK_DTYPE, initializer="zeros", trainable=False
        )
        self.bits = self.add_weight(
            name="bits", shape=self._mask_shape, dtype=MASK_DTYPE, initializer="zeros", trainable=False
        )
        self.integers = self.add_weight(
            name="integers", shape=self._mask_shape, dtype=MASK_DTYPE, initializer="zeros", trainable=False
        )
        if self._initial_mask is not None:
            self.set_mask(k, b, i)
        self._initial_mask = None

    def set_mask(self, keep_negative, bits, integers):
        """Assign new (k, B, I) values (same shape as the stored masks)."""
        k, b, i = normalize_kbi(keep_negative, bits, integers)
        k, b, i = (np.broadcast_to(m, self._mask_shape) for m in (k, b, i))
        self.keep_negative.assign(k)
        self.bits.assign(b)
        self.integers.assign(i)

    @property
    def mask_kbi(self):
        """(k, B, I) as int16 numpy arrays."""
        return tuple(ops.convert_to_numpy(v).astype(np.int16) for v in (self.keep_negative, self.bits, self.integers))

    @property
    def kif(self):
        """(k, i, f) as int numpy arrays; pruned elements (B = 0) read (0, 0, 0)."""
        k, b, i = (m.astype(np.int64) for m in self.mask_kbi)
        return k, i - k, b - i

    @property
    def homogeneous(self):
        """True when every element has the same format."""
        return all(np.unique(m).size == 1 for m in self.mask_kbi)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        k = ops.cast(self.keep_negative, x.dtype)
        b = ops.cast(self.bits, x.dtype)
        i_with_sign = ops.cast(self.integers, x.dtype)
        # a 1-element mask (1,) broadcasts against any input rank
        i, f = i_with_sign - k, b - i_with_sign
        y = quantize(x, k, i, f, self.RND, self.overflow)
        if self.overflow == "SAT_SYM":
            # ap_fixed<1, I, *, AP_SAT_SYM> (signed, one bit) has no symmetric range and saturates like AP_SAT
            # to {-2**(I-1), 0}; checked against the ap_types headers shipped with hls4ml.
            one_bit_signed = ops.logical_and(k > 0, b == 1)
            y = ops.where(one_bit_signed, quantize(x, k, i, f, self.RND, "SAT"), y)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "RND": self.RND,
                "overflow": self.overflow,
                "overrides": self.overrides,
                "fusible": self.fusible,
                "shape": list(self._mask_shape) if self._mask_shape is not None else None,
            }
        )
        return config

"""Lookup-table activation for proxy models.

A :class:`UnaryLUT` follows a *homogeneous* :class:`FixedPointQuantizer` of
format ``(k, i, f)`` with ``B = k + i + f`` bits. Its table has ``2**B``
entries indexed by the raw two's-complement bit pattern of the input: codes
``0 .. 2**(B-k)-1`` are the non-negative values ``code * 2**-f``, and (when
``k == 1``) codes ``2**(B-1) .. 2**B-1`` are the negative values
``(code - 2**B) * 2**-f``. This is the order hls4ml's ``unary_lut`` reads.
"""

import numpy as np
import keras
from keras import ops

from hgq_rewrite.quantizers.fixed_point import quantize

from .fixed_point_layer import check_float64
from .registration import register_hls4ml_handlers

MAX_TABLE_BITS = 20


def _check_kif(kif, name):
    try:
        k, i, f = (int(v) for v in kif)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three integers (k, i, f), got {kif!r}.") from None
    if k not in (0, 1):
        raise ValueError(f"{name}: k must be 0 or 1, got {k}.")
    return k, i, f


def lut_inputs(kif_in):
    """All input values a ``kif_in`` quantizer can output, in table (bit pattern) order."""
    k, i, f = _check_kif(kif_in, "kif_in")
    bits = max(k + i + f, 0)
    if bits > MAX_TABLE_BITS:
        raise ValueError(f"A {bits}-bit input needs a 2**{bits} table; the limit is 2**{MAX_TABLE_BITS}.")
    n = 2**bits
    codes = np.arange(n, dtype=np.int64)
    if k and bits > 0:
        codes = np.where(codes >= n // 2, codes - n, codes)
    return codes.astype(np.float64) * 2.0 ** (-f)


def _resolve_function(fn):
    if isinstance(fn, str):
        return keras.activations.get(fn)
    if callable(fn):
        return fn
    raise TypeError(f"Expected an activation name or a callable, got {type(fn).__name__}.")


def build_table(fn, kif_in, kif_out, round_mode="RND", overflow_mode="SAT"):
    """Evaluate ``fn`` on every ``kif_in`` value and quantize the results to ``kif_out``.

    Args:
        fn: activation name (``"tanh"``, ``"sigmoid"``, ...) or a unary callable
            accepting a float64 tensor (or numpy array).
        kif_in: (k, i, f) of the homogeneous quantizer before the table.
        kif_out: (k, i, f) of the table values.
        round_mode, overflow_mode: how values are put on the ``kif_out`` grid.

    Returns:
        float64 numpy array of length ``2**(k_in + i_in + f_in)`` in table order.
    """
    func = _resolve_function(fn)
    x = lut_inputs(kif_in)
    y = func(ops.convert_to_tensor(x, dtype="float64"))
    y = ops.cast(ops.convert_to_tensor(y), "float64")
    if tuple(y.shape) != x.shape:
        raise ValueError(f"The function must be element-wise: {x.shape} inputs gave {tuple(y.shape)} outputs.")
    k, i, f = _check_kif(kif_out, "kif_out")
    return ops.convert_to_numpy(quantize(y, k, i, f, round_mode, overflow_mode)).astype(np.float64)


@keras.saving.register_keras_serializable(package="hgq_rewrite")
class UnaryLUT(keras.layers.Layer):
    """Element-wise function as a table over all codes of a homogeneous input format.

    Args:
        table: ``2**(k+i+f)`` values in bit-pattern order (see :func:`lut_inputs`).
            May be omitted only when loading (the saved weight restores it).
        kif_in: (k, i, f) of the homogeneous quantizer feeding this layer.
        kif_out: (k, i, f) the table values lie on (sets hls4ml's ``table_t``).

    Use :meth:`from_function` to build the table from an activation.
    The input must already be on the ``kif_in`` grid and inside its range
    (put a :class:`FixedPointQuantizer` with that format right before). Like
    :class:`FixedPointQuantizer`, it needs float64 on JAX and registers with hls4ml.
    """

    def __init__(self, table=None, kif_in=None, kif_out=None, **kwargs):
        kwargs.setdefault("dtype", "float64")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_float64(self.name, self.compute_dtype)
        if kif_in is None or kif_out is None:
            raise ValueError("UnaryLUT needs kif_in and kif_out.")
        self.kif_in = _check_kif(kif_in, "kif_in")
        self.kif_out = _check_kif(kif_out, "kif_out")
        k, i, f = self.kif_in
        self.table_size = 2 ** max(k + i + f, 0)
        if self.table_size > 2**MAX_TABLE_BITS:
            raise ValueError(f"kif_in {self.kif_in} needs a table of {self.table_size} entries; too large.")
        self._initial_table = None
        if table is not None:
            table = np.asarray(table, dtype=np.float64).ravel()
            if table.size != self.table_size:
                raise ValueError(
                    f"kif_in {self.kif_in} has {self.table_size} codes, but the table has {table.size} entries."
                )
            ko, io, fo = self.kif_out
            on_grid = quantize(ops.convert_to_tensor(table, "float64"), ko, io, fo, "TRN", "WRAP")
            if not np.array_equal(ops.convert_to_numpy(on_grid), table):
                raise ValueError(f"Table values do not lie on the kif_out {self.kif_out} grid and range.")
            self._initial_table = table
        register_hls4ml_handlers()

    @classmethod
    def from_function(cls, fn, kif_in, kif_out, round_mode="RND", overflow_mode="SAT", **kwargs):
        """Tabulate ``fn`` (name or callable) over ``kif_in`` with outputs quantized to ``kif_out``."""
        table = build_table(fn, kif_in, kif_out, round_mode, overflow_mode)
        return cls(table=table, kif_in=kif_in, kif_out=kif_out, **kwargs)

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table", shape=(self.table_size,), dtype="float64", initializer="zeros", trainable=False
        )
        if self._initial_table is not None:
            self.table.assign(self._initial_table)
        self._initial_table = None

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        k, i, f = self.kif_in
        codes = ops.floor(x * (2.0**f) + 0.5)
        index = ops.cast(ops.mod(codes, float(self.table_size)), "int32")
        return ops.cast(ops.take(ops.cast(self.table, self.compute_dtype), index), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kif_in": list(self.kif_in), "kif_out": list(self.kif_out)})
        return config

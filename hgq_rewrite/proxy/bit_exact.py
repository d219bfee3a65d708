"""Bit-exactness harness: proxy model vs hls4ml's C simulation.

:func:`check_bit_exact` converts a proxy with hls4ml, compiles the C++ model
(g++ only) and compares ``proxy.predict(x)`` with ``hls_model.predict(x)``
on float64 inputs, sample by sample. Before calling hls4ml it refuses what
``export_problems`` (``hgq_rewrite.proxy.preflight``) finds with an
``UnsupportedLayerError``, and it turns hls4ml's own errors into the same kind
of message (``hgq_rewrite.proxy.hls4ml_errors``).
"""

import contextlib
import io
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import keras

from ..inputs import model_inputs
from .hls4ml_errors import explain_hls4ml_error
from .hls4ml_limits import unsupported
from .preflight import export_problems


@dataclass
class BitExactReport:
    """Result of :func:`check_bit_exact`."""

    n_samples: int
    n_mismatching: int
    mismatching_samples: np.ndarray
    max_abs_diff: float
    convert_seconds: float
    compile_seconds: float
    predict_seconds: float
    backend: str
    io_type: str
    output_dir: str | None
    proxy_output: np.ndarray = field(repr=False)
    hls_output: np.ndarray = field(repr=False)
    notes: list = field(default_factory=list)
    hls_model: object = field(default=None, repr=False)
    log: str = field(default="", repr=False)

    @property
    def ok(self):
        """True when every sample matches bit for bit."""
        return self.n_mismatching == 0

    @property
    def convert_compile_seconds(self):
        return self.convert_seconds + self.compile_seconds

    def __str__(self):
        head = (f"{self.backend}/{self.io_type}: {self.n_mismatching}/{self.n_samples} samples mismatch"
                f" (max |diff| {self.max_abs_diff:g}); convert {self.convert_seconds:.1f}s,"
                f" compile {self.compile_seconds:.1f}s, predict {self.predict_seconds:.1f}s")
        if self.n_mismatching:
            head += f"; first mismatching samples: {self.mismatching_samples[:10].tolist()}"
        for note in self.notes:
            head += f"\n  note: {note}"
        return head


def proxy_inputs(model, x, caller):
    """``x`` checked against ``model``'s inputs, as float64 contiguous arrays; returns ``(arrays, n_samples)``."""
    xs = [np.ascontiguousarray(a, dtype=np.float64) for a in model_inputs(model, x, "x", caller)]
    return xs, len(xs[0])


def flat_outputs(y, n):
    """Every output of ``n`` samples as one float64 array of shape ``(n, features)``."""
    if isinstance(y, (list, tuple)):
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(n, -1) for v in y], axis=1)
    return np.asarray(y, dtype=np.float64).reshape(n, -1)


def compare_samples(a, b):
    """Indices of the samples (rows) where the flat outputs ``a`` and ``b`` differ, and the largest |a - b|."""
    if a.shape != b.shape:
        raise RuntimeError(f"Output shapes differ: {a.shape} vs {b.shape}.")
    bad = np.nonzero(np.any(a != b, axis=1))[0]
    return bad, float(np.max(np.abs(a - b))) if a.size else 0.0


def predict_float64(model, x, batch_size=2048):
    """Run ``model`` on ``x`` in float64, batch by batch.

    ``model.predict`` is not used on purpose: Keras 3's data adapters cast float64
    numpy inputs to ``keras.config.floatx()`` (float32) before the first layer, which
    moves inputs with more than 24 significant bits across rounding boundaries.
    """
    single = not isinstance(x, (list, tuple))
    xs = [np.asarray(v, dtype=np.float64) for v in ([x] if single else x)]
    n = len(xs[0])
    chunks = []
    for start in range(0, n, batch_size):
        batch = [keras.ops.convert_to_tensor(v[start : start + batch_size], dtype="float64") for v in xs]
        y = model(batch[0] if single else batch, training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        chunks.append([keras.ops.convert_to_numpy(v) for v in ys])
    outs = [np.concatenate([c[j] for c in chunks], axis=0) for j in range(len(chunks[0]))]
    return outs[0] if len(outs) == 1 else outs


def convert_proxy(proxy, backend="Vitis", output_dir=None, io_type="io_parallel", **kwargs):
    """``hls4ml.converters.convert_from_keras_model`` with this package's errors for unsupported layers."""
    import hls4ml

    try:
        return hls4ml.converters.convert_from_keras_model(
            proxy, backend=backend, output_dir=output_dir, io_type=io_type, **kwargs
        )
    except Exception as exc:
        explained = explain_hls4ml_error(proxy, exc)
        if explained is not None:
            raise explained from exc
        raise


def check_bit_exact(proxy, x, backend="Vitis", output_dir=None, io_type="io_parallel", strict=True, **convert_kwargs):
    """Convert ``proxy`` with hls4ml, compile it and compare predictions on ``x`` bit for bit.

    Args:
        proxy: a proxy model (plain Keras layers, FixedPointQuantizer, UnaryLUT).
        x: input array (or list of arrays for several inputs); cast to float64.
        backend: hls4ml backend; ``Vitis`` and ``Vivado`` compile with g++ only.
        output_dir: hls4ml project directory. ``None`` uses a temporary
            directory that is removed afterwards (the loaded model keeps working).
        io_type: ``io_parallel`` (needed for heterogeneous quantizers) or ``io_stream``.
        strict: raise ``UnsupportedLayerError`` also for layers that convert
            but are known not to be bit-exact; with ``False`` they are listed
            in ``report.notes`` and the comparison runs.
        **convert_kwargs: passed to ``convert_from_keras_model`` (``part``, ``hls_config``, ...).

    Returns:
        :class:`BitExactReport` (``report.ok`` is True for zero mismatches).
    """
    if not isinstance(proxy, keras.Model):
        raise TypeError(f"Expected a keras.Model proxy, got {type(proxy).__name__}.")
    xs, n = proxy_inputs(proxy, x, "check_bit_exact")
    problems = export_problems(proxy)
    blocking = [p for p in problems if p.fatal or strict]
    if blocking:
        raise unsupported(blocking)
    notes = [str(p) for p in problems]

    tmp = None
    if output_dir is None:
        tmp = output_dir = tempfile.mkdtemp(prefix="hgq_rewrite_hls_")
    log = io.StringIO()
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(log):
            hls_model = convert_proxy(proxy, backend=backend, output_dir=output_dir, io_type=io_type, **convert_kwargs)
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(log):
            hls_model.compile()
        t2 = time.perf_counter()
        y_hls = hls_model.predict(xs[0] if len(xs) == 1 else xs)
        t3 = time.perf_counter()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    y_proxy = predict_float64(proxy, xs[0] if len(xs) == 1 else xs)
    a, b = flat_outputs(y_proxy, n), flat_outputs(y_hls, n)
    bad, diff = compare_samples(a, b)
    return BitExactReport(
        n_samples=n,
        n_mismatching=int(bad.size),
        mismatching_samples=bad,
        max_abs_diff=diff,
        convert_seconds=t1 - t0,
        compile_seconds=t2 - t1,
        predict_seconds=t3 - t2,
        backend=backend,
        io_type=io_type,
        output_dir=None if tmp is not None else output_dir,
        proxy_output=a,
        hls_output=b,
        notes=notes,
        hls_model=hls_model,
        log=log.getvalue(),
    )

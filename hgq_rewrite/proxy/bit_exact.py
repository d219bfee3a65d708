"""Bit-exactness harness: proxy model vs hls4ml's C simulation.

:func:`check_bit_exact` converts a proxy with hls4ml, compiles the C++ model
(g++ only) and compares ``proxy.predict(x)`` with ``hls_model.predict(x)``
on float64 inputs, sample by sample. :func:`export_problems` lists the layers
hls4ml 1.3 cannot convert, or cannot convert bit-exactly, with the remedy;
:func:`check_bit_exact` raises :class:`UnsupportedLayerError` for them before
calling hls4ml, and turns hls4ml's own errors into the same kind of message.
"""

import contextlib
import io
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import keras

from .fixed_point_layer import FixedPointQuantizer
from .unary_lut import UnaryLUT

SUPPORTED_ACTIVATIONS = ("linear", "relu")
# hls4ml 1.3 bit-exact flow: element-wise activations it handles, but only exactly under conditions
CONDITIONAL_ACTIVATIONS = ("tanh", "sigmoid")
PASS_THROUGH_TO_QUANTIZER = ("Reshape", "Flatten", "Permute", "Concatenate")

LUT_REMEDY = "tabulate it as a UnaryLUT after a homogeneous FixedPointQuantizer (to_proxy_model does this)"

# class name -> (fatal, reason, remedy). fatal: hls4ml 1.3 cannot convert it at all.
KNOWN_PROBLEMS = {
    "Softmax": (False, "hls4ml's softmax rebuilds its exp and 1/x tables in C++ and is not bit-exact",
                "drop the softmax from the exported model (argmax is unchanged) and apply it after the firmware"),
    "SeparableConv1D": (True, "hls4ml's Keras-3 handler reads a `kernel` attribute this layer does not have",
                        "split it into DepthwiseConv1D followed by a 1-wide Conv1D"),
    "SeparableConv2D": (True, "hls4ml's Keras-3 handler reads a `kernel` attribute this layer does not have",
                        "split it into DepthwiseConv2D followed by a 1x1 Conv2D"),
    "GlobalMaxPooling1D": (True, "hls4ml's bit-exact pass fails on global max pooling",
                           "use MaxPooling1D over the whole length followed by Flatten"),
    "GlobalMaxPooling2D": (True, "hls4ml's bit-exact pass fails on global max pooling",
                           "use MaxPooling2D over the whole image followed by Flatten"),
    "PReLU": (True, "hls4ml's bit-exact pass has no exact rule for PReLU", LUT_REMEDY),
    "BatchNormalization": (False, "the scale gamma/sqrt(var+eps) is generally not a binary fraction",
                           "fold it into the preceding Dense/Conv kernel and bias"),
    "LayerNormalization": (True, "hls4ml 1.3 has no bit-exact rule for it", "remove it or replace it before export"),
    "Embedding": (True, "hls4ml 1.3 has no bit-exact rule for it", "replace it by a one-hot input and a Dense"),
    "Lambda": (True, "hls4ml cannot convert arbitrary Python code", "replace it with standard layers"),
    # hls4ml 1.3's ReLU handler falls through to a ThresholdedReLU node, which loses bit-exactness
    "ReLU": (False, "hls4ml 1.3 converts it to a ThresholdedReLU node whose C simulation lets negative values through",
             "use keras.layers.Activation('relu') instead"),
}
MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")
for _name in ("ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3's bit-exact pass has no rule for it",
                             "use padding='same' in the convolution, or pad/crop/resize the data outside the firmware")
for _name in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3's bit-exact pass has no rule for recurrent layers",
                             "unroll the recurrence into Dense layers, or export it without bit-exact checking")
for _name in ("MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D", "Conv3D"):
    KNOWN_PROBLEMS[_name] = (True, "hls4ml 1.3 has no bit-exact rule for 3D layers", "reshape the problem to 1D/2D")


@dataclass
class Problem:
    """A layer hls4ml cannot convert (``fatal``) or cannot convert bit-exactly."""

    layer: str
    class_name: str
    reason: str
    remedy: str
    fatal: bool = True

    def __str__(self):
        kind = "cannot be converted" if self.fatal else "is not bit-exact"
        return f"layer '{self.layer}' ({self.class_name}) {kind} by hls4ml: {self.reason}. Remedy: {self.remedy}."


class UnsupportedLayerError(ValueError):
    """A proxy layer cannot be exported (bit-exactly) to hls4ml; the message names it and the remedy."""

    def __init__(self, problems, cause=None):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        msg = f"The proxy model cannot be exported bit-exactly to hls4ml:\n{lines}"
        if cause is not None:
            msg += f"\n(hls4ml said: {type(cause).__name__}: {cause})"
        super().__init__(msg)


def _registry():
    try:
        from hls4ml.converters.keras_v3 import layer_handlers
    except Exception:  # hls4ml missing: nothing can be checked against the registry
        return None
    return layer_handlers


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    if isinstance(act, str):
        return act
    return getattr(act, "__name__", type(act).__name__)


def _activation_problem(layer, name):
    if name in SUPPORTED_ACTIVATIONS or name is None:
        return None
    cls = type(layer).__name__
    if name == "softmax":
        fatal, reason, remedy = KNOWN_PROBLEMS["Softmax"]
        return Problem(layer.name, cls, reason, remedy, fatal)
    if name in CONDITIONAL_ACTIVATIONS:
        reason = f"hls4ml's built-in {name} table covers a fixed input range and resolution"
        return Problem(layer.name, cls, reason, LUT_REMEDY, fatal=False)
    reason = f"hls4ml 1.3's bit-exact pass has no rule for the activation {name!r}"
    return Problem(layer.name, cls, reason, LUT_REMEDY, fatal=True)


def _is_dyadic(values, max_frac_bits=32):
    v = np.asarray(values, dtype=np.float64) * 2.0**max_frac_bits
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _layer_problems(layer, registry):
    cls = type(layer).__name__
    problems = []
    if cls in KNOWN_PROBLEMS:
        fatal, reason, remedy = KNOWN_PROBLEMS[cls]
        problems.append(Problem(layer.name, cls, reason, remedy, fatal))
        return problems
    if isinstance(layer, keras.Model):
        problems.append(Problem(layer.name, cls, "nested models are not supported by hls4ml's Keras-3 parser",
                                "flatten the nested model into the outer functional model"))
        return problems
    key = f"{type(layer).__module__}.{cls}"
    if registry is not None and key not in registry and cls not in registry:
        problems.append(Problem(layer.name, cls, "hls4ml has no Keras-3 handler for this class",
                                "replace it with a supported layer (Dense, Conv1D/2D, DepthwiseConv2D, pooling, "
                                "Reshape/Flatten/Permute, Add, Concatenate, Activation('relu'), UnaryLUT)"))
        return problems
    if cls in MERGE_LAYERS:
        n_inputs = max((len(node.arguments.keras_tensors) for node in layer._inbound_nodes), default=2)
        if n_inputs > 2:
            problems.append(Problem(layer.name, cls, f"hls4ml merge layers take exactly two inputs, it has {n_inputs}",
                                    f"chain {n_inputs - 1} two-input {cls} layers"))
    problem = _activation_problem(layer, _activation_name(layer))
    if problem is not None:
        problems.append(problem)
    for weight in layer.weights:
        if isinstance(layer, (FixedPointQuantizer, UnaryLUT)):
            break
        if not _is_dyadic(keras.ops.convert_to_numpy(weight)):
            problems.append(Problem(layer.name, cls, f"weight '{weight.name}' is not a binary fraction with at most "
                                    "32 fractional bits, so hls4ml rounds it",
                                    "quantize the weights onto a fixed-point grid first", fatal=False))
            break
    if not isinstance(layer, keras.layers.InputLayer) and layer.compute_dtype != "float64":
        problems.append(Problem(layer.name, cls, f"it computes in {layer.compute_dtype}, so wide sums can round",
                                "build the proxy with dtype='float64'", fatal=False))
    return problems


def _consumers(model, tensor):
    """(layer, node) pairs in ``model`` that read ``tensor``."""
    found = []
    for layer in model.layers:
        for node in layer._inbound_nodes:
            if any(x is tensor for x in node.arguments.keras_tensors):
                found.append((layer, node))
    return found


def _global_pooling_2d_problems(model):
    """hls4ml 1.3's bit-exact pass gives GlobalAveragePooling2D an output of the wrong rank; a Reshape or
    Flatten right after it restores the rank, anything else fails inside hls4ml."""
    problems = []
    for layer in model.layers:
        if type(layer).__name__ != "GlobalAveragePooling2D" or getattr(layer, "keepdims", False):
            continue
        for node in layer._inbound_nodes:
            for out in node.outputs:
                for consumer, _ in _consumers(model, out):
                    if type(consumer).__name__ not in ("Flatten", "Reshape"):
                        problems.append(Problem(
                            layer.name, "GlobalAveragePooling2D",
                            "hls4ml 1.3's bit-exact pass gives its output the wrong rank, which breaks the next layer "
                            f"('{consumer.name}')", "put a Flatten() right after it"))
    return problems


def _input_chain_problems(model):
    problems = []
    for tensor in model.inputs:
        frontier = [tensor]
        while frontier:
            t = frontier.pop()
            history = getattr(t, "_keras_history", None)
            for layer, node in _consumers(model, t):
                if isinstance(layer, FixedPointQuantizer):
                    continue
                if type(layer).__name__ in PASS_THROUGH_TO_QUANTIZER:
                    frontier.extend(node.outputs)
                    continue
                name = history.operation.name if history else "input"
                problems.append(Problem(layer.name, type(layer).__name__,
                                        f"it reads the model input '{name}' without a FixedPointQuantizer in between",
                                        "put a FixedPointQuantizer right after every Input"))
    return problems


def export_problems(model):
    """List the :class:`Problem` s that keep ``model`` from a bit-exact hls4ml export.

    Checks each layer class against hls4ml 1.3's handlers and its known gaps,
    activations, weights off the fixed-point grid, float32 compute, and that
    every Input is followed by a :class:`FixedPointQuantizer`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    registry = _registry()
    problems = []
    for layer in model.layers:
        problems.extend(_layer_problems(layer, registry))
    problems.extend(_global_pooling_2d_problems(model))
    problems.extend(_input_chain_problems(model))
    return problems


_RE_CLASS = re.compile(r"<class '([\w.]+)'>")
_RE_PRODUCE = re.compile(r"No implementation of produce_kif for .*\((\w+)\)")


def _explain_hls4ml_error(model, exc):
    """Map an exception raised inside hls4ml to the proxy layer(s) it is about."""
    text = str(exc)
    names = set()
    m = _RE_CLASS.search(text)
    if m:
        names.add(m.group(1).rsplit(".", 1)[-1])
    m = _RE_PRODUCE.search(text)
    if m:
        names.add(m.group(1))
    layers = [layer for layer in model.layers if type(layer).__name__ in names or layer.name in text]
    if "Heterogenous quantization" in text:
        return UnsupportedLayerError(
            [Problem(layer.name, type(layer).__name__, "heterogeneous activation quantizers need io_parallel",
                     "convert with io_type='io_parallel' (Vivado or Vitis backend)")
             for layer in model.layers if isinstance(layer, FixedPointQuantizer) and not layer.homogeneous],
            cause=exc,
        )
    if not layers:
        return None
    problems = []
    for layer in layers:
        cls = type(layer).__name__
        fatal, reason, remedy = KNOWN_PROBLEMS.get(
            cls, (True, "hls4ml failed on it", "replace it with a layer listed in docs/bit_exactness.md")
        )
        problems.append(Problem(layer.name, cls, reason, remedy, True))
    return UnsupportedLayerError(problems, cause=exc)


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


def _as_inputs(model, x):
    if isinstance(x, (list, tuple)):
        xs = [np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for v in x]
    else:
        xs = [np.ascontiguousarray(np.asarray(x, dtype=np.float64))]
    if len(xs) != len(model.inputs):
        raise ValueError(f"The model has {len(model.inputs)} inputs, got {len(xs)} arrays.")
    n = {len(v) for v in xs}
    if len(n) != 1:
        raise ValueError(f"All input arrays need the same number of samples, got {sorted(n)}.")
    n = n.pop()
    if n == 0:
        raise ValueError("x has no samples.")
    for v, t in zip(xs, model.inputs):
        if tuple(v.shape[1:]) != tuple(t.shape[1:]):
            raise ValueError(f"Input '{t.name}' expects samples of shape {tuple(t.shape[1:])}, got {v.shape[1:]}.")
    return xs, n


def _flat_outputs(y, n):
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
        explained = _explain_hls4ml_error(proxy, exc)
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
        strict: raise :class:`UnsupportedLayerError` also for layers that convert
            but are known not to be bit-exact; with ``False`` they are listed
            in ``report.notes`` and the comparison runs.
        **convert_kwargs: passed to ``convert_from_keras_model`` (``part``, ``hls_config``, ...).

    Returns:
        :class:`BitExactReport` (``report.ok`` is True for zero mismatches).
    """
    if not isinstance(proxy, keras.Model):
        raise TypeError(f"Expected a keras.Model proxy, got {type(proxy).__name__}.")
    xs, n = _as_inputs(proxy, x)
    problems = export_problems(proxy)
    blocking = [p for p in problems if p.fatal or strict]
    if blocking:
        raise UnsupportedLayerError(blocking)
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
    a, b = _flat_outputs(y_proxy, n), _flat_outputs(y_hls, n)
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

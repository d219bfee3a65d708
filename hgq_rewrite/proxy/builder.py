"""The proxy rebuild: walk the HGQ model and let each layer's handler emit its proxy layers.

`ProxyBuilder` is the ``ctx`` a handler's ``emit(layer, inputs, ctx)`` receives. It keeps, per
proxy tensor, the fractional bits its values carry (`frac`) and the rounding/overflow of the
last quantizer before it (`modes`), names layers uniquely, and builds the quantizers
(`quantize`, `quantize_output`). Nested models are flattened.
"""

import numpy as np
import keras

from ..compat.keras_private import functional_graph
from ..rewrite.registry import find_exporter
from ..walker import model_calls
from .errors import ProxyConversionError
from .fixed_point_layer import FixedPointQuantizer
from .frac import full

F64 = "float64"


# attributes of an hls4ml layer, and C/POSIX type names ``<name>_t`` that a layer's type would clash with
HLS4ML_TAKEN_NAMES = frozenset({
    "activation", "table", "weight", "bias", "scale", "n_in", "n_out",
    "key", "time", "size", "ssize", "off", "pid", "uid", "gid", "id", "mode", "dev", "ino", "nlink", "blksize",
    "blkcnt", "clock", "clockid", "timer", "wchar", "ptrdiff", "intptr", "uintptr", "fpos", "sigset", "suseconds",
    "useconds", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "intmax", "uintmax",
})


class Namer:
    """Unique layer names: the HGQ name when free, else prefixed by the nested model, else numbered.

    hls4ml stores a layer's output variable as an attribute named like the layer, so a layer named
    after one of its attributes (an ``Activation`` layer is named ``activation`` by default) would
    overwrite it; and it declares a C++ type ``<name>_t`` per layer, so a layer named like a
    system type (``key`` -> ``key_t``, ``time`` -> ``time_t``) would not compile. Those names are
    taken from the start.
    """

    def __init__(self):
        self.used = set(HLS4ML_TAKEN_NAMES)

    def __call__(self, name, prefix=None):
        base = name if name not in self.used or prefix is None else f"{prefix}_{name}"
        candidate, n = base, 1
        while candidate in self.used:
            candidate = f"{base}_{n}"
            n += 1
        self.used.add(candidate)
        return candidate


class ProxyBuilder:
    """Builds the proxy of an HGQ model; the ``ctx`` of the handlers' ``emit``.

    Attributes:
        dtype: ``"float64"``, the dtype of every proxy layer.
        overflow: ``"WRAP"`` or ``"SAT"``, the overflow mode of the quantizers.
        max_table_bits: largest input width of a lookup table.
        call: the `hgq_rewrite.walker.Call` being emitted.
        graph_outputs: ids of the output tensors of the (nested) model ``call`` belongs to.
        formats: ``id(HQuantizer) -> (quantizer, (k, i, f))``, the format its firmware cast uses.
        float32_inexact: names of layers whose float32 sums may need more than 24 significant bits.
    """

    dtype = F64

    def __init__(self, aggressive, max_table_bits):
        self.overflow = "WRAP" if aggressive else "SAT"
        self.max_table_bits = int(max_table_bits)
        self.name = Namer()
        self.call = None
        self.graph_outputs = set()  # ids of the output tensors of the graph level ``call`` belongs to
        self.prefix = None
        self.frac = {}  # id(proxy tensor) -> fractional bits its values carry, shape (1, *features), -inf = zero
        self.modes = {}  # id(proxy tensor) -> (rounding, overflow) of the last quantizer before it
        self.formats = {}
        self.float32_inexact = []

    # -- for the handlers ------------------------------------------------------------------------------
    def layer_name(self, layer):
        """A unique proxy name for ``layer`` (its own name when free)."""
        return self.name(layer.name, self.prefix)

    def frac_of(self, tensor):
        """Fractional bits the values of a proxy tensor carry, shape ``(1, *features)`` (inf: unknown)."""
        return self.frac.get(id(tensor), np.full((1, *tensor.shape[1:]), np.inf))

    def pass_on(self, y, x, f):
        """Record that ``y`` carries ``f`` fractional bits and came from ``x`` without a quantizer."""
        self.frac[id(y)] = f
        if id(x) in self.modes:
            self.modes[id(y)] = self.modes[id(x)]

    def quantize(self, x, kif, f_available, round_mode, name, overrides=None, overflow=None, paq=None):
        """FixedPointQuantizer with format ``kif`` (never more fractional bits than ``f_available``).

        ``name`` is made unique; ``paq``: the HGQ quantizer this one exports (its final format
        is recorded in ``formats``).
        """
        shape = (1, *x.shape[1:])
        k, i, f = (full(m, shape) for m in kif)
        f = np.minimum(f, f_available)
        f = np.where(np.isfinite(f), f, -(k + i))  # the input is always 0: zero bits
        k, i, f = (m.astype(np.int64) for m in (k, i, f))
        if paq is not None:
            self.formats[id(paq)] = (paq, (k, i, f))
        carried = np.where(k + i + f > 0, f, -np.inf).astype(np.float64)
        if all(np.unique(m).size == 1 for m in (k, i, f)):
            k, i, f = (m.reshape(-1)[:1] for m in (k, i, f))
        layer = FixedPointQuantizer.from_kif(
            k, i, f, RND=round_mode, overflow=overflow or self.overflow, overrides=overrides,
            name=name, dtype=F64,
        )
        y = layer(x)
        self.frac[id(y)] = carried
        self.modes[id(y)] = (round_mode, overflow or self.overflow)
        return y

    def quantize_output(self, layer, y, f_available, name, overrides=None):
        """The quantizer of an H-layer's output: its traced format and its rounding (``name`` made unique)."""
        return self.quantize(y, layer.output_kif(), f_available, layer.paq.config["rounding"], self.name(name),
                             overrides, paq=layer.paq)

    # -- graph walk ------------------------------------------------------------------------------------
    def run(self, model, inputs, prefix=None):
        """Rebuild ``model`` on the proxy tensors ``inputs``; return the proxy output tensors."""
        if functional_graph(model) is None:
            raise ProxyConversionError(
                f"Sequential model {model.name!r} is not built: call it on data or build it with an input shape."
            )
        level = model_calls(model)
        tmap = {id(t): new for t, new in zip(level.inputs, inputs)}
        for call in level.calls:
            if call.is_input:
                continue
            args = [tmap[id(t)] for t in call.inputs]
            if isinstance(call.layer, keras.Model):
                outs = self.run(call.layer, args, prefix=call.layer.name)
            else:
                self.call, self.prefix = call, prefix
                self.graph_outputs = {id(t) for t in level.outputs}
                outs = self.emit(call.layer, args)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for t, new in zip(call.outputs, outs):
                tmap[id(t)] = new
        return [tmap[id(t)] for t in level.outputs]

    def emit(self, layer, args):
        """The proxy of one layer call, by the handler registered for its class."""
        handler = find_exporter(type(layer))
        if handler is None:
            raise ProxyConversionError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no proxy equivalent. Remedy: use the H-/P-layer "
                "for it (hgq_rewrite.quantize does this), register a handler for its class "
                "(hgq_rewrite.register_handler), or remove it before export."
            )
        problem = handler.export_problem(layer)
        if problem is not None:
            raise ProxyConversionError(f"Layer {layer.name!r} ({type(layer).__name__}): {problem.why}. "
                                       f"Remedy: {problem.remedy}.")
        return handler.emit(layer, args, self)

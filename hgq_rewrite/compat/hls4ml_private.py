"""hls4ml (1.3.x) internals used by the proxy bridge; no public API offers them.

- the Keras-3 handler registry (``hls4ml.converters.keras_v3._base.registry``) and the handler
  base class: our handlers are registered under our own class paths;
- the optimizer-pass registry (``optimizer_map``), to remove the pass we registered;
- the internal ``UnaryLUT`` node class and its ``table`` ``WeightVariable``, whose data we re-index;
- the text of hls4ml's error messages, to name the layer an error is about.

hls4ml is imported inside the functions: importing this module imports nothing.
"""

import re

# the one text that names the io_type problem of heterogeneous activation quantizers
HETEROGENEOUS_IO_TEXT = "Heterogenous quantization"
_RE_CLASS = re.compile(r"<class '([\w.]+)'>")
_RE_PRODUCE = re.compile(r"No implementation of produce_kif for .*\((\w+)\)")


def handler_registry():
    """hls4ml's Keras-3 handler registry: ``{"module.ClassName" or "ClassName": handler}``."""
    from hls4ml.converters.keras_v3._base import registry

    return registry


def handler_base():
    """hls4ml's Keras-3 handler base class (subclasses implement ``handle``)."""
    from hls4ml.converters.keras_v3._base import KerasV3LayerHandler

    return KerasV3LayerHandler


def unregister_pass(name):
    """Remove the optimizer pass ``name`` from hls4ml's pass registry (hls4ml has no public way)."""
    from hls4ml.model.optimizer import optimizer

    optimizer.optimizer_map.pop(name, None)


def unary_lut_node_class():
    """The class of hls4ml's internal ``UnaryLUT`` node."""
    from hls4ml.model.optimizer.passes.hgq_proxy_model import UnaryLUT

    return UnaryLUT


def set_weight_data(var, data):
    """Replace the values of an hls4ml ``WeightVariable`` and the fields derived from them."""
    var.data = data
    var.shape = list(data.shape)
    var.data_length = int(data.size)
    var.nonzeros = int((data != 0).sum())
    var.nzeros = var.data_length - var.nonzeros
    var.min, var.max = data.min(), data.max()


def error_subjects(text):
    """``(class names, heterogeneous_io)`` that an hls4ml error message is about."""
    names = set()
    for regex in (_RE_CLASS, _RE_PRODUCE):
        m = regex.search(text)
        if m:
            names.add(m.group(1).rsplit(".", 1)[-1])
    return names, HETEROGENEOUS_IO_TEXT in text

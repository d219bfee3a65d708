"""Keras 3 internals this package reads; no public API offers them.

- a model's call graph: ``Sequential._functional``, ``Functional._nodes_by_depth``,
  ``Functional._inputs_struct`` / ``_outputs_struct``, ``Layer._inbound_nodes`` / ``_outbound_nodes`` and
  ``KerasTensor._keras_history``;
- the ``Functional`` class (``keras.src.models.functional``);
- the class of the operation ``keras.ops.einsum`` records in a functional graph (``EinsumOp``);
- a built ``MultiHeadAttention``'s einsum equations, and a tensor's Keras mask;
- the attributes ``Model.compile`` sets, to put a model's compile state back after a failed fit.

``hgq_rewrite.layers.base`` also overrides ``Layer._get_own_losses`` / ``Layer._clear_losses``
(per-replica loss lists under ``tf.distribute``); ``LOSS_HOOKS`` names them for the compat test.
"""

import keras
from keras.src.models.functional import Functional  # the class of functional models
from keras.src.ops.numpy import Einsum as EinsumOp  # what keras.ops.einsum records in a functional graph

__all__ = ["Functional", "EinsumOp", "LOSS_HOOKS", "COMPILE_ATTRS", "functional_graph", "graph_io", "calls_in_order",
           "attention_equations", "keras_mask",
           "inbound_nodes",
           "outbound_nodes",
           "keras_history", "compile_state", "restore_compile_state"]

LOSS_HOOKS = ("_get_own_losses", "_clear_losses")

# what Model.compile (and fit) set on a model
COMPILE_ATTRS = (
    "compiled", "optimizer", "loss", "_compile_loss", "_compile_metrics", "_loss_tracker", "_compile_config",
    "_compiled_trainable_state", "_jit_compile", "_run_eagerly", "steps_per_execution", "stop_training",
    "train_function", "test_function", "predict_function", "history",
)


def functional_graph(model):
    """The functional model behind ``model``: a Sequential's inner one (None until built), else ``model``."""
    if isinstance(model, keras.Sequential):
        return model._functional
    return model


def graph_io(model):
    """``(inputs, outputs)`` of a functional model as the nested structures it was built with."""
    return model._inputs_struct, model._outputs_struct


def calls_in_order(model):
    """The nodes (layer calls) of a functional model, inputs first."""
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def inbound_nodes(layer):
    """Every call of ``layer`` (a list of nodes, in call order)."""
    return layer._inbound_nodes


def outbound_nodes(layer):
    """Every call reading an output of ``layer`` (a list of nodes; ``node.operation`` is the reader)."""
    return layer._outbound_nodes


def keras_history(tensor):
    """``(operation, node_index, tensor_index)`` that produced a symbolic ``tensor``, or None."""
    return getattr(tensor, "_keras_history", None)


def compile_state(model):
    """The compile attributes ``model`` holds (a dict, see :func:`restore_compile_state`)."""
    return {k: model.__dict__[k] for k in COMPILE_ATTRS if k in model.__dict__}


def restore_compile_state(model, state):
    """Put back the compile attributes saved by :func:`compile_state` (and drop ones set since)."""
    for key in COMPILE_ATTRS:
        if key in state:
            object.__setattr__(model, key, state[key])
        elif key in model.__dict__:
            object.__delattr__(model, key)


def attention_equations(layer):
    """``(scores, combine)``: the einsum equations a built ``MultiHeadAttention`` computes with."""
    return layer._dot_product_equation, layer._combine_equation


def keras_mask(tensor):
    """The Keras mask a (symbolic) tensor carries, or None."""
    return getattr(tensor, "_keras_mask", None)

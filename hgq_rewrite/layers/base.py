"""Shared machinery of H-layers (arithmetic, own quantizers, EBOPs) and P-layers (pass bitwidths on)."""

import keras
import numpy as np
from keras import ops

from ..compat.keras_private import inbound_nodes
from ..quantizers import HQuantizer
from ..quantizers.hquantizer import Filled, as_shape, read
from ..quantizers.config import check_beta
from ..quantizers.replicas import REPLICATED, replica_context, replica_losses
from ..quantizers.saved_layouts import load_older_layout
from .links import graph_node_indices, input_producers, input_shapes


def bits_of(kif):
    """Total bits k + i + f (never negative) of a (k, i, f) map."""
    k, i, f = kif
    return ops.relu(k + i + f)


class BitMapMixin:
    """Gives a layer ``input_kif_maps`` / ``output_kif``; subclasses define ``output_kif_map``."""

    def output_kif_map(self, exact=False):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def input_kif_maps(self, exact=False, node_index=None):
        """(k, i, f) maps of every input of one call (default: the first call of the model graph),
        broadcast to the full input shape ``(1, ...)``."""
        if node_index is None:
            node_index = graph_node_indices(self)[0]
        maps = []
        producers = input_producers(self, node_index)
        for (op, _), shape in zip(producers, input_shapes(self, node_index)):
            if not isinstance(op, BitMapMixin):
                raise ValueError(
                    f"Layer {self.name!r} takes its input from {op.name!r} ({type(op).__name__}), which has no "
                    "fixed-point format. Put HQuantize (or Signature, for inputs already in fixed point) "
                    "between them."
                )
            full = (1,) + tuple(shape[1:])
            maps.append(tuple(as_shape(ops.cast(m, "float32"), full) for m in op.output_kif_map(exact)))
        return maps

    def output_kif(self):
        """Exact (k, i, f) of the output as int numpy arrays broadcastable to ``(1, *output_shape[1:])``."""
        return tuple(np.asarray(ops.convert_to_numpy(m)).astype(np.int32) for m in self.output_kif_map(exact=True))


class Given(keras.initializers.Initializer):
    """The value a variable starts from, given before ``build`` (see `HLayerBase.set_initial_weights`)."""

    def __init__(self, value, where):
        self.value, self.where = value, where

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ValueError(f"{self.where}: the initial value has shape {self.value.shape}, the variable "
                             f"{tuple(shape)}.")
        return np.asarray(self.value, dtype=keras.backend.standardize_dtype(dtype or keras.config.floatx()))


class HLayerBase(BitMapMixin, keras.layers.Layer):
    """An H-layer: owns an output quantizer ``paq`` and a ``beta`` weighting its EBOPs in the loss.

    Args:
        beta: weight of this layer's EBOPs in the loss; assign ``layer.beta = x`` any time.
        paq_conf: config of the output (activation) quantizer; defaults from
            ``get_default_paq_conf()``.
    """

    _initial_weights = None  # {variable name: array} (see set_initial_weights), emptied by build

    def __init__(self, beta=0.0, paq_conf=None, **kwargs):
        super().__init__(**kwargs)
        self._beta_init = check_beta(beta, f"layer {self.name!r}")
        self.paq_conf = paq_conf
        self.paq = HQuantizer(paq_conf, "activation", owner=self.name, name=f"{self.name}_paq", dtype=self.dtype_policy)
        self.record_minmax = False

    def set_initial_weights(self, **values):
        """Start the named variables (``kernel=...``, ``bias=...``; None: skipped) from copies of ``values``
        instead of their initializers when the layer is built: a converter's weight transfer without an
        assign per weight (kernel layers adapt their bits to them in ``build``). Copies: on JAX a variable
        made from another's array would share its buffer, and training would delete the float weights."""
        if self.built:
            raise RuntimeError(f"Layer {self.name!r} is built already: assign its variables instead.")
        self._initial_weights = {k: np.array(ops.convert_to_numpy(v)) for k, v in values.items() if v is not None}

    def _initializer(self, name, default):
        """The initializer of variable ``name``: its value given by `set_initial_weights`, else ``default``."""
        value = (self._initial_weights or {}).pop(name, None)
        return default if value is None else Given(value, f"Layer {self.name!r}, variable {name!r}")

    def _build_state(self, output_shape):
        """The output quantizer and the EBOPs state; ends every H-layer's ``build``."""
        if self._initial_weights:
            raise ValueError(f"Layer {self.name!r}: set_initial_weights named {sorted(self._initial_weights)}, which "
                             "are not among its variables; give only the names of its variables.")
        self.paq.build(output_shape)
        # [beta, EBOPs]: the same value on every data-parallel replica (see quantizers.replicas)
        self._beta_ebops = self.add_weight(
            name="beta_ebops", shape=(2,), initializer=Filled([self._beta_init, 0.0]), trainable=False,
            aggregation=REPLICATED,
        )

    def load_own_variables(self, store):
        """Also load files saved with beta and EBOPs as two variables."""
        if not (self.built and load_older_layout(self, store, [[(self._beta_ebops, 2)]])):
            super().load_own_variables(store)

    def _set_ebops(self, value):
        """Store ``value`` as this layer's EBOPs (graph-safe); returns beta (a tensor)."""
        beta = read(self._beta_ebops)[0]
        self._beta_ebops.assign(ops.stack([beta, ops.cast(value, self._beta_ebops.dtype)]))
        return beta

    @property
    def beta(self):
        return float(ops.convert_to_numpy(self._beta_ebops)[0]) if self.built else self._beta_init

    @beta.setter
    def beta(self, value):
        value = check_beta(value, f"layer {self.name!r}")
        if self.built:
            self._beta_ebops.assign([float(value), self.ebops])
        else:
            self._beta_init = float(value)

    @property
    def ebops(self):
        """EBOPs of the last training step (estimate) or of ``trace_minmax`` (exact)."""
        return float(ops.convert_to_numpy(self._beta_ebops)[1]) if self.built else 0.0

    def output_kif_map(self, exact=False):
        return self.paq.activation_kif(exact)

    # -- EBOPs -------------------------------------------------------------------------------------
    def ebops_of_call(self, input_maps, exact, **known):  # noqa: ARG002 - layers without multiplies cost 0
        """EBOPs of one call; ``known``: values the training call computed already (see `_train_ebops`)."""
        return ops.convert_to_tensor(0.0)

    def compute_ebops(self, exact=False, **known):
        """EBOPs summed over every call of this layer in the model graph (a shared layer is
        instantiated once per call)."""
        terms = [self.ebops_of_call(self.input_kif_maps(exact, n), exact, **known) for n in graph_node_indices(self)]
        if len(terms) == 1:
            return terms[0]
        total = ops.convert_to_tensor(0.0)
        for term in terms:
            total = total + term
        return total

    def has_cost(self):
        return False

    def _train_ebops(self, training, **known):
        """In training: record the EBOPs estimate and add ``beta * EBOPs`` to the loss (``known``: values
        of this call that the estimate reuses, passed on to `ebops_of_call`)."""
        if not (training and self.has_cost()):
            return
        if not inbound_nodes(self):
            raise ValueError(
                f"Layer {self.name!r} is trained outside a functional or Sequential model graph (e.g. inside a "
                "subclassed keras.Model), so the inputs of its multiplies and its EBOPs are unknown and beta would "
                "silently do nothing. Build the model with the functional API or keras.Sequential."
            )
        ebops = self.compute_ebops(exact=False, **known)
        beta = self._set_ebops(ops.stop_gradient(ebops))
        calls = len(graph_node_indices(self))
        loss = beta * ebops if calls == 1 else beta * ebops / calls
        self.add_loss(ops.cast(loss, keras.config.floatx()))  # float64 layers too

    # tf.distribute: one list of loss terms per replica thread, not one shared by all (see replica_losses)
    def add_loss(self, loss):
        if replica_context() is None:
            return super().add_loss(loss)
        replica_losses(self).append(loss)

    def _get_own_losses(self):
        return super()._get_own_losses() + list(replica_losses(self))

    def _clear_losses(self):
        super()._clear_losses()
        replica_losses(self).clear()

    def set_exact_ebops(self):
        """Store and return exact EBOPs from traced ranges (called by ``trace_minmax``)."""
        value = float(ops.convert_to_numpy(self.compute_ebops(exact=True))) if self.has_cost() else 0.0
        self._set_ebops(value)
        return value

    def reset_minmax(self):
        self.paq.reset_minmax()

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta=self.beta, paq_conf=self.paq_conf)
        return cfg


class PLayerMixin(BitMapMixin):
    """A passive layer: moves data, and maps its input's bitwidths the same way."""

    def transform_kif(self, maps, exact):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def output_kif_map(self, exact=False):
        return self.transform_kif(self.input_kif_maps(exact), exact)

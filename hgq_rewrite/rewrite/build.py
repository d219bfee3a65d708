"""Build the HGQ model from a `Plan`, level by level, then copy the weights.

Each float layer becomes its new layer(s) once, even when it is called several
times or appears in several nested models, so sharing is kept. Nested models
are rebuilt as models of the same kind (Functional or Sequential) and called
by their parent. Layers kept float are copies (``from_config`` + weights):
nothing of the user's model is reused, so training the result never touches it.
"""

from __future__ import annotations

import inspect

import keras

from ..compat.keras_private import functional_graph, graph_io
from ..layers import HQuantize
from ..layers.links import link_model
from .errors import RewriteError
from .graph import count_calls, recursion_room
from .handler import as_conversion


class _Builder:
    def __init__(self, internals):
        self.x = internals
        self.new_layers = {}  # id(float layer) -> [new layers]
        self.new_models = {}  # id(ModelGraph) -> new model
        self.transfers = []
        self.call_inputs = {}  # id(float layer) -> Conversion.call_inputs

    # ------------------------------------------------------------------ per layer
    def layers_for(self, lp, mg):
        """New layer(s) standing for float layer ``lp`` (created once)."""
        key = id(lp.layer)
        if key in self.new_layers:
            return self.new_layers[key]
        if lp.decision == "convert":
            settings = lp.settings(self.x.namers[id(mg)])
            try:
                conv = as_conversion(lp.converter.convert(lp.layer, settings, **lp.fused()))
            except RewriteError:
                raise
            except Exception as e:
                raise RewriteError(f"Converting {lp.path!r} ({lp.class_name}) failed: {type(e).__name__}: {e}") from e
            layers = list(conv.layers)
            if not layers:
                raise RewriteError(f"The converter of {lp.path!r} returned no layer.")
            if not getattr(lp.layer, "trainable", True):  # an operation (keras.ops.einsum) has no such flag
                for layer in layers:
                    layer.trainable = False
            if conv.transfer is not None:
                self.transfers.append((lp, conv.transfer))
            if conv.call_inputs is not None:
                self.call_inputs[key] = conv.call_inputs
        else:  # kept float: an independent copy
            layers = [self.copy_float(lp)]
        self.new_layers[key] = layers
        return layers

    def copy_float(self, lp):
        layer = lp.layer
        try:
            new = type(layer).from_config(layer.get_config())
        except Exception as e:
            raise RewriteError(
                f"Cannot copy float layer {lp.path!r} ({lp.class_name}) with from_config(get_config()): {e}. "
                "Give the layer a complete get_config(), or register a converter for it."
            ) from e
        if isinstance(layer, keras.layers.Layer) and layer.weights:
            self.transfers.append((lp, lambda: new.set_weights(layer.get_weights())))
        return new

    def quantizer(self, q):
        v = q.resolved.values
        kwargs = {"beta": v["beta"]}
        if v["activation"]:
            kwargs["paq_conf"] = dict(v["activation"])
        return HQuantize(name=q.name, **kwargs)

    # ------------------------------------------------------------------ per model level
    def model_for(self, mg):
        if id(mg) not in self.new_models:
            build = self.build_sequential if mg.kind == "sequential" else self.build_functional
            self.new_models[id(mg)] = build(mg)
        return self.new_models[id(mg)]

    def ops_for_call(self, mg, call):
        """Layers to apply for ``call`` (empty if absorbed into another call)."""
        if call.sub is not None:
            return [self.model_for(call.sub)]
        lp = self.x.plans[id(call.layer)]
        if lp.decision in ("fold", "fuse"):
            return []
        if lp.decision == "unsupported":
            raise RewriteError(f"{lp.path!r} is unsupported: {lp.reason}")
        return self.layers_for(lp, mg)

    def output_tensor(self, call):
        """The float tensor the new layers of ``call`` stand for (after absorbed layers)."""
        lp = self.x.plans.get(id(call.layer))
        if lp is not None and lp.tail_call is not None:
            return lp.tail_call.outputs
        return call.outputs

    def build_functional(self, mg):
        level = self.x.levels[id(mg)]
        plain, quant = {}, {}

        def record(old_tensors, new_tensors):
            for t, n in zip(old_tensors, new_tensors):
                plain[id(t)] = n
                q = level.quantizers.get(id(t))
                if q is not None:
                    quant[id(t)] = self.quantizer(q)(n)

        for call in mg.calls:
            if call.is_input:
                t = call.outputs[0]
                new = keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, sparse=t.sparse, name=call.layer.name)
                record(call.outputs, [new])
                continue
            ops = self.ops_for_call(mg, call)
            if not ops:
                continue
            needs = level.needs.get(call.key, set())
            lookup = {}
            for i, t in enumerate(call.inputs):
                lookup[id(t)] = quant[id(t)] if (i in needs and id(t) in quant) else plain[id(t)]
            args, kwargs = call.node.arguments.fill_in(lookup)
            adapt = self.call_inputs.get(id(call.layer)) if call.sub is None else None
            if adapt is not None:
                args, kwargs = (adapt(args, kwargs),), {}
            elif call.sub is None and self.x.plans[id(call.layer)].decision == "convert":
                kwargs = _accepted_kwargs(ops[0], kwargs)
            out = ops[0](*args, **kwargs)
            for op in ops[1:]:
                out = op(out)
            record(self.output_tensor(call), keras.tree.flatten(out))

        in_struct, out_struct = graph_io(functional_graph(mg.model))
        inputs = keras.tree.map_structure(lambda t: plain[id(t)], in_struct)
        outputs = keras.tree.map_structure(lambda t: plain[id(t)], out_struct)
        return keras.Model(inputs=inputs, outputs=outputs, name=mg.model.name)

    def build_sequential(self, mg):
        level = self.x.levels[id(mg)]
        layers, first = [], None
        for call in mg.calls:
            if call.is_input:
                first = call
            else:
                layers.extend(self.ops_for_call(mg, call))
            for t in call.outputs:
                q = level.quantizers.get(id(t))
                if q is not None:
                    layers.append(self.quantizer(q))
        t = first.outputs[0]
        inp = keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=first.layer.name)
        return keras.Sequential([inp, *layers], name=mg.model.name)


def _accepted_kwargs(layer, kwargs):
    """The recorded call keywords the new layer's ``call`` accepts (None values dropped).

    A converted layer may not take every keyword of the float layer (``mask``...).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if not kwargs:
        return kwargs
    params = inspect.signature(layer.call).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def build_model(internals):
    """Build the HGQ model described by a plan's internals and copy the weights.

    Python's recursion limit is raised for the duration of the build as deep models need
    (Keras maps a Functional graph recursively), and restored afterwards.
    """
    with recursion_room(2 * count_calls(internals.top)):  # inserted quantizers may double the calls
        builder = _Builder(internals)
        model = builder.model_for(internals.top)
        for lp, transfer in builder.transfers:
            try:
                transfer()
            except Exception as e:
                raise RewriteError(f"Copying the weights of {lp.path!r} failed: {type(e).__name__}: {e}") from e
        link_model(model)
    return model



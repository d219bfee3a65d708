"""Reductions across data-parallel replicas: the only backend-specific code of the core.

HGQ keeps non-trainable state that every replica must agree on: the activation
ranges (``min``/``max`` of each activation quantizer) and, in the BatchNorm-folded
layers, the batch statistics. How a batch is seen depends on the engine:

- JAX (``keras.distribution.DataParallel``) compiles one program over the *global*
  batch, sharded across devices; ``ops.min``/``ops.mean`` over the batch axis are
  already global, so these helpers return their input unchanged.
- TensorFlow (``tf.distribute.MirroredStrategy``) runs the model once per replica
  on its share of the batch. ``tf.distribute`` all-reduces only SUM and MEAN, so
  minima and maxima are all-gathered and reduced locally; moments are summed.

Every replica then holds the same value and assigns it to a variable created with
``aggregation="only_first_replica"`` (see `REPLICATED`), which keeps the mirrored
copies identical. Outside a replica context (one device, eager calls, callbacks)
every helper is the identity.
"""

import contextlib
import threading
import weakref

from keras import backend, ops

REPLICATED = "only_first_replica"
"""``aggregation`` of variables whose value is the same on every replica (ranges, EBOPs, beta, BN statistics)."""


def replica_context():
    """The ``tf.distribute`` replica context when more than one replica runs, else None."""
    if backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def in_strategy_scope():
    """True inside a ``tf.distribute`` strategy's scope, where TensorFlow applies optimizer updates one
    variable (and device) at a time."""
    if backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


def has_value(x):
    """False while ``x`` is traced (a TensorFlow graph, a JAX tracer: Keras' symbolic build of a subclassed
    model, a ``tf.function``), when it holds no number yet."""
    if backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend.backend() == "jax":
        import jax

        return not isinstance(ops.convert_to_tensor(x), jax.core.Tracer)
    return True


_thread = threading.local()


def replica_losses(layer):
    """The ``add_loss`` terms ``layer`` added in this replica's thread (a list to append to or clear).

    ``tf.distribute`` runs the replicas of a step in parallel threads that share the layer
    objects, while Keras keeps one ``add_loss`` list per layer. Once the replicas synchronise
    (the gathers and all-reduces here), every replica would read every replica's EBOPs term:
    the logged loss would count it once per replica (gradient tapes are per thread, so the
    gradients stay right). H-layers keep their terms per thread instead (`HLayerBase.add_loss`).
    """
    store = getattr(_thread, "losses", None)
    if store is None:
        store = _thread.losses = weakref.WeakKeyDictionary()
    return store.setdefault(layer, [])


def _gather(x):
    """Stack ``x`` of every replica along a new leading axis."""
    return replica_context().all_gather(ops.expand_dims(x, 0), axis=0)


def replica_min(x):
    """Element-wise minimum of ``x`` over all replicas (``x`` itself on one replica)."""
    if replica_context() is None:
        return x
    return ops.min(_gather(x), axis=0)


def replica_max(x):
    """Element-wise maximum of ``x`` over all replicas (``x`` itself on one replica)."""
    if replica_context() is None:
        return x
    return ops.max(_gather(x), axis=0)


def moments(x, axes):
    """Per-channel mean and variance of ``x`` over ``axes`` (every axis but the last), all replicas' batches.

    JAX: ``ops.mean`` / ``ops.var`` (already global under ``DataParallel``). TensorFlow: its float32
    reductions over the batch axes accumulate in sequence (relative error ~1e-4 for 10k values),
    enough to move a folded kernel across a rounding boundary and different for one and two
    replicas; the sums are taken in float64 (SUM all-reduced across replicas: sum and count, then
    squared deviations) and rounded once, so one device and several agree. A replica with an empty
    share of a short last batch adds nothing.
    """
    if backend.backend() != "tensorflow":
        return ops.mean(x, axis=axes), ops.var(x, axis=axes)
    import tensorflow as tf

    ctx = replica_context()

    def total(v):
        v = tf.reduce_sum(v, axis=axes)
        return v if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, v)

    x64 = tf.cast(x, tf.float64)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), list(axes))), tf.float64)
    if ctx is not None:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
    mean = tf.math.divide_no_nan(total(x64), count)
    var = tf.math.divide_no_nan(total(tf.square(x64 - mean)), count)
    return tf.cast(mean, x.dtype), tf.cast(var, x.dtype)


def built_under(model, distribution):
    """True if every variable of ``model`` was created for ``distribution``.

    ``distribution`` is a ``tf.distribute.Strategy`` (TensorFlow) or a
    ``keras.distribution.Distribution`` (JAX).
    """
    if backend.backend() == "tensorflow":
        extended = getattr(distribution, "extended", None)
        return extended is not None and all(extended.variable_created_in_scope(v.value) for v in model.variables)
    if backend.backend() == "jax":
        n_devices = distribution.device_mesh.devices.size
        return all(len(v.value.sharding.device_set) == n_devices for v in model.variables)
    return False


@contextlib.contextmanager
def distributed(model, distribution):
    """Inside ``distribution``'s scope, yield a model to train data-parallel; None yields ``model``.

    A model whose variables were made outside the scope (the usual case: ``quantize`` ran
    before) is copied into the scope with its weights and compile settings; the trained
    weights (ranges, beta and BatchNorm statistics included) go back into ``model`` at the end.
    """
    if distribution is None:
        yield model
        return
    with distribution.scope():
        if built_under(model, distribution):
            yield model
            return
        import keras

        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        if model.compiled:
            copy.compile_from_config(model.get_compile_config())
        try:
            yield copy
        finally:
            model.set_weights(copy.get_weights())

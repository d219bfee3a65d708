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

    On one replica: ``ops.mean`` / ``ops.var``. On several: two passes of SUM all-reduces
    (sum and count, then squared deviations), so every replica gets the moments of the
    global batch; a replica with an empty share of a short last batch adds nothing.
    """
    ctx = replica_context()
    if ctx is None:
        return ops.mean(x, axis=axes), ops.var(x, axis=axes)
    import tensorflow as tf

    total = tf.reduce_sum(x, axis=axes)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), list(axes))), x.dtype)
    packed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.concat([total, count[None]], axis=0))
    count = packed[-1]
    mean = tf.math.divide_no_nan(packed[:-1], count)
    squares = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(x - mean), axis=axes))
    return mean, tf.math.divide_no_nan(squares, count)

"""TensorFlow internals this package reads; no public API offers them.

- whether the graph being traced is compiled by XLA (inside a ``tf.function(jit_compile=True)``, such as
  the train step of a model compiled with ``jit_compile=True``): ``control_flow_util``'s test of the
  graph and its outer graphs.

TensorFlow is imported inside the functions: importing this module imports nothing.
"""


def in_xla_function():
    """True while tracing a function TensorFlow compiles with XLA; False eagerly and in plain graphs."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))

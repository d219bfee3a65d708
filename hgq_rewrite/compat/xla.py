"""Whether the operations a layer builds now are compiled by XLA: always on JAX; on TensorFlow inside a
function compiled with ``jit_compile=True`` (the train step of a model compiled so, as `finetune` does
for long runs). Some computations have a cheaper form for XLA on CPU than for TensorFlow's executor
(`pool_gradient`, `conv_gradient`, the powers of two in `fixed_point`)."""

from keras import backend

from .tensorflow_private import in_xla_function


def compiled_by_xla():
    """True when the operations being built now run as XLA code."""
    name = backend.backend()
    return name == "jax" or (name == "tensorflow" and in_xla_function())

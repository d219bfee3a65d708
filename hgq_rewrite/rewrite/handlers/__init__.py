"""Built-in handlers, one module per layer family; importing this package registers them."""

from . import activation, attention, batchnorm, core, conv, einsum, hgq, merge, normalization, passive, softmax  # noqa: F401

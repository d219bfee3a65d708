"""Built-in handlers, one module per layer family; importing this package registers them."""

from . import activation, batchnorm, core, conv, einsum, hgq, merge, passive, softmax  # noqa: F401

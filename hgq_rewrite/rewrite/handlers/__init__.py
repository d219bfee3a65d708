"""Built-in handlers, one module per layer family; importing this package registers them."""

from . import (  # noqa: F401
    activation, attention, batchnorm, core, conv, einsum, hgq, merge, normalization, passive, prelu, softmax,
)

"""Built-in converters; importing this package registers them."""

from . import activation, batchnorm, core, hgq, merge, passive  # noqa: F401

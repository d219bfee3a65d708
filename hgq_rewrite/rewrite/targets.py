"""Access to the HGQ layer classes the converters build (`hgq_rewrite.layers`)."""

import importlib

from .errors import RewriteError

# Tests may substitute stand-in classes here: {class name: class}.
OVERRIDES: dict = {}


def hgq_layer(name):
    """Return the class ``name`` from `hgq_rewrite.layers`."""
    if name in OVERRIDES:
        return OVERRIDES[name]
    module = importlib.import_module("hgq_rewrite.layers")
    cls = getattr(module, name, None)
    if cls is None:
        raise RewriteError(f"hgq_rewrite.layers does not provide {name}, which the rewrite needs.")
    return cls

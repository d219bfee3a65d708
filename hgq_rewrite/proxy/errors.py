"""The error of the proxy conversion (its own module: the handlers raise it too)."""


class ProxyConversionError(ValueError):
    """A layer of the HGQ model cannot be turned into a proxy; the message names it and the remedy."""

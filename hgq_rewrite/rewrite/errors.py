"""Exceptions raised by the rewrite (one class per kind of user mistake)."""

from ..errors import UnsupportedLayerError  # noqa: F401  (one class for the rewrite and the export)


class RewriteError(ValueError):
    """Base class of every error raised by `hgq_rewrite.rewrite`."""


class UnsupportedModelError(RewriteError, TypeError):
    """The model is not a Functional or Sequential model, or is not built."""


class ConfigError(RewriteError):
    """The rewrite config is malformed, or some of its keys match no layer."""

"""Exceptions raised by the rewrite (one class per kind of user mistake)."""


class RewriteError(ValueError):
    """Base class of every error raised by `hgq_rewrite.rewrite`."""


class UnsupportedModelError(RewriteError, TypeError):
    """The model is not a Functional or Sequential model, or is not built."""


class ConfigError(RewriteError):
    """The rewrite config is malformed, or some of its keys match no layer."""


class UnsupportedLayerError(RewriteError):
    """Some layers have no converter and are not kept float by the config."""

"""Optional dependencies of the export routes, imported lazily with a one-line install hint."""

import importlib

EXTRAS = {"qonnx": ("onnx", "qonnx", "onnxruntime"), "da": ("da4ml",)}


class MissingExtraError(ImportError):
    """An optional dependency of an export route is not installed."""


def require(extra, *modules):
    """Import ``modules`` (default: every module of ``extra``) and return them; raise a one-line hint if missing."""
    names = modules or EXTRAS[extra]
    loaded = []
    for name in names:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            raise MissingExtraError(
                f"{name} is not installed ({exc.__class__.__name__}: {exc}); install with pip install 'hgq_rewrite[{extra}]'"
            ) from exc
    return loaded[0] if len(loaded) == 1 else loaded


def available(extra):
    """True when every module of ``extra`` imports."""
    try:
        require(extra)
    except MissingExtraError:
        return False
    return True

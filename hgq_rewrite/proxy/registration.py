"""Registering the proxy layers with hls4ml: explicit, idempotent, undoable.

Importing ``hgq_rewrite`` changes nothing in hls4ml. The first ``FixedPointQuantizer``,
``UnaryLUT`` or ``FixedPointSoftmax`` made in a process (by ``to_proxy_model``, by hand, or by loading
a saved proxy) calls :func:`register_hls4ml_handlers`, which adds three Keras-3 layer handlers under this
package's class paths and one optimizer pass to hls4ml's ``convert`` flow (it re-indexes
lookup tables, and touches only tables made by this package). So
``hls4ml.converters.convert_from_keras_model(proxy, ...)`` works as usual.
:func:`unregister_hls4ml_handlers` puts hls4ml back as it was.
"""

HLS4ML_HANDLERS_ERROR = None  # why the last registration failed (hls4ml missing or incompatible), else None
_changes = {}  # what the registration changed in hls4ml; empty when nothing is registered


def register_hls4ml_handlers():
    """Register the proxy layers' handlers and pass with hls4ml (once); return True on success.

    Never raises: without a usable hls4ml the proxy layers still work in Keras, and the
    reason is kept in ``HLS4ML_HANDLERS_ERROR``.
    """
    global HLS4ML_HANDLERS_ERROR
    if _changes:
        return True
    try:
        from .hls4ml_handlers import install

        _changes.update(install())
    except Exception as exc:  # noqa: BLE001 - hls4ml missing or incompatible
        HLS4ML_HANDLERS_ERROR = exc
        return False
    HLS4ML_HANDLERS_ERROR = None
    return True


def unregister_hls4ml_handlers():
    """Undo :func:`register_hls4ml_handlers`: hls4ml's handler registry and ``convert`` flow as before."""
    if not _changes:
        return
    from .hls4ml_handlers import uninstall

    uninstall(_changes)
    _changes.clear()


def hls4ml_handlers_registered():
    """True while this package's handlers are registered with hls4ml."""
    return bool(_changes)

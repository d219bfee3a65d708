"""Atomic file writes: every file the library writes is complete, or the previous one is kept.

Each writer writes a temporary file in the target's folder and renames it over
the target (``os.replace``, atomic on POSIX and Windows) only once it is
complete. A failed write (disk full, file-size limit, interrupted process)
removes the temporary file and leaves any earlier file at that path intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

TEMP_PREFIX = ".hgq-tmp-"


def _default_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    Args:
        path: the final file path (its folder is created if needed).
        suffix: ending of the temporary name (default: ``path``'s extension, so that
            writers that check the extension, like ``keras.Model.save``, accept it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else _default_mode()
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def save_model(model, path, **kwargs):
    """``model.save(path)`` through a temporary ``.keras`` file in the same folder."""
    with atomic_path(path) as tmp:
        model.save(tmp, **kwargs)
    return os.fspath(path)


def write_json(path, data, indent=1):
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
    return os.fspath(path)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return os.fspath(path)


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path)`` (matplotlib) atomically; the format follows ``path``'s extension."""
    fmt = kwargs.pop("format", None) or os.path.splitext(os.fspath(path))[1].lstrip(".") or None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return os.fspath(path)


def is_temporary(name):
    """True for the name of a temporary file written by this module."""
    return os.path.basename(name).startswith(TEMP_PREFIX)

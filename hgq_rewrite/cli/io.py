"""Reading the command line's inputs: .keras models (safe mode), YAML configs (safe loader), .npz data."""

from __future__ import annotations

import os
import warnings
import zipfile

import numpy as np

from ..files import save_model
from ..inputs import model_inputs, pack


class CLIError(Exception):
    """An error shown to the user as one line (exit code 2)."""


def one_line(text):
    """Collapse a (possibly multi-line) message into one line; list items are joined with '; '."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    out = lines[0]
    for line in lines[1:]:
        if line.startswith("- "):
            line = line[2:]
            sep = " " if out.endswith(":") else "; "
        else:
            sep = " "
        out += sep + line
    return out


def load_keras(path, what="model"):
    """Load a ``.keras`` file with Keras' safe mode (no arbitrary code is run)."""
    import keras

    if not os.path.exists(path):
        raise CLIError(f"{what} file {path!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path!r} is a folder; expected a .keras file.")
    if not path.endswith(".keras"):
        raise CLIError(f"{what} {path!r} is not a .keras file (save models with model.save('name.keras')).")
    if not _is_keras_archive(path):
        raise CLIError(f"{what} {path!r} is not a valid .keras archive (truncated or corrupt?): save the model "
                       "again with model.save('name.keras').")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any load failure becomes one line
        raise CLIError(f"cannot load {what} {path!r}: {one_line(e)}") from e


def _is_keras_archive(path):
    """True if ``path`` is a readable zip holding a Keras ``config.json``."""
    try:
        with zipfile.ZipFile(path) as z:
            return "config.json" in z.namelist() and z.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def same_file(a, b):
    """True if paths ``a`` and ``b`` name the same file (same resolved path, or the same inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def load_hgq(path):
    """Load an HGQ model (a .keras file holding H-layers)."""
    from ..trace import h_layers

    model = load_keras(path, "HGQ model")
    if not h_layers(model):
        raise CLIError(f"{path!r} holds no HGQ layers; run 'hgq-rewrite quantize' on it first.")
    return model


def save_keras(model, path):
    """Save ``model`` to ``path`` atomically (the previous file survives a failed save)."""
    if not str(path).endswith(".keras"):
        raise CLIError(f"output {path!r} must end with .keras.")
    if os.path.isdir(path):
        raise CLIError(f"output {path!r} is a folder; give a .keras file name.")
    try:
        save_model(model, path)
    except OSError as e:
        raise CLIError(f"cannot write {path!r}: {e.strerror or e}; any earlier file there is unchanged.") from e


def load_npz(path, need_y=False, what="data"):
    """Arrays from an ``.npz``: inputs ``x`` (or ``x0``, ``x1``, ... for several inputs), targets ``y``.

    Returns:
        ``(xs, y)``: a list of input arrays and the targets (None when absent).
    """
    if not os.path.isfile(path):
        raise CLIError(f"{what} file {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"cannot read {what} file {path!r} as .npz: {one_line(e)}") from e
    keys = sorted(arrays)
    if "x" in arrays:
        xs = [arrays["x"]]
    else:
        xs = []
        while f"x{len(xs)}" in arrays:
            xs.append(arrays[f"x{len(xs)}"])
    if not xs:
        raise CLIError(f"{what} file {path!r} has no input array: expected key 'x' (or 'x0', 'x1', ... for several "
                       f"inputs), found {keys}.")
    y = arrays.get("y")
    if need_y and y is None:
        raise CLIError(f"{what} file {path!r} has no targets: expected key 'y', found {keys}.")
    n = {a.shape[0] if a.ndim else 0 for a in xs + ([y] if y is not None else [])}
    if len(n) != 1 or 0 in n:
        raise CLIError(f"{what} file {path!r}: arrays are empty or have different numbers of samples.")
    for a in xs:
        if not np.issubdtype(a.dtype, np.number):
            raise CLIError(f"{what} file {path!r}: inputs must be numeric, got dtype {a.dtype}.")
    return xs, y


def load_training_data(model, data_path, val_path=None):
    """``(xs, y, validation_data)`` from ``--data`` (and ``--val``), each checked against ``model``'s inputs."""
    xs, y = load_npz(data_path, need_y=True, what="training data")
    xs = model_inputs(model, xs, "training data", data_path)
    if not val_path:
        return xs, y, None
    xv, yv = load_npz(val_path, need_y=True, what="validation data")
    return xs, y, (pack(model_inputs(model, xv, "validation data", val_path)), yv)

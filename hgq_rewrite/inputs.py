"""The one check of the data a user hands over: arrays, one per model input.

`model_inputs` is used by ``trace_minmax``, ``finetune``, ``check_bit_exact`` (and the other
export checks) and the command line; `as_arrays` by the checks of targets and of data for
models not yet known. Every error is an `InputDataError`: one line naming the argument (and
the model input) at fault and what to pass instead. The arrays passed in are never modified.
"""

import inspect

import numpy as np


class InputDataError(TypeError, ValueError):
    """Data that cannot be a model's input; a ``TypeError`` and a ``ValueError`` at once."""


def _streaming_kind(data):
    """'a Dataset', 'a generator', ... for data that is not an array, else None."""
    kind = type(data).__name__
    module = type(data).__module__ or ""
    if "Dataset" in kind or "DataLoader" in kind:
        return "a Dataset"
    if module.startswith(("tensorflow.python.data", "torch.utils.data", "keras.src.trainers.data_adapters")):
        return f"a {kind}"
    if inspect.isgenerator(data):
        return "a generator"
    if hasattr(data, "__next__"):
        return "an iterator"
    return None


def _namer(what, count, numbered):
    if numbered:
        return lambda i: f"{what} {i}"
    return lambda i: what if count == 1 else f"{what}[{i}]"


def as_arrays(data, what, caller, numbered=False, float32=False):
    """``data`` (an array or a list of arrays) as a list of numeric, finite numpy arrays with samples.

    Args:
        data: the user's array or list/tuple of arrays.
        what: the argument's name in errors (``"x"``, ``"calibration data"``).
        caller: the function named first in errors (``"finetune"``).
        numbered: name every array ``"<what> <i>"`` (else ``what``, or ``what[i]`` for several).
        float32: also refuse values beyond float32's range (data a float32 model computes on).

    Raises:
        InputDataError: one line naming the array at fault and the fix.
    """
    return _checked(_items(data, what, caller), what, caller, numbered, float32)


def _items(data, what, caller):
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise InputDataError(f"{caller}: {what} is empty; pass one array per model input.")
    return items


def _checked(items, what, caller, numbered, float32):
    name = _namer(what, len(items), numbered)
    out = [_as_array(item, name(idx), caller, float32) for idx, item in enumerate(items)]
    counts = [a.shape[0] for a in out]
    if len(set(counts)) > 1:
        raise InputDataError(f"{caller}: the arrays of {what} have different numbers of samples {counts}; "
                             "give every input the same samples.")
    return out


def _as_array(item, name, caller, float32):
    if item is None:
        raise InputDataError(f"{caller}: {name} is None; pass a numpy array.")
    kind = _streaming_kind(item)
    if kind is not None:
        raise InputDataError(f"{caller}: {name} is {kind}; pass numpy arrays (one per model input), e.g. "
                             "np.concatenate([x for x, _ in dataset]).")
    try:
        a = np.asarray(item)
    except Exception as e:  # noqa: BLE001 - whatever numpy says, in one line
        raise InputDataError(f"{caller}: {name} cannot be read as an array ({e}).") from None
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputDataError(f"{caller}: {name} is not numeric (dtype {a.dtype}); pass numbers.")
    if a.ndim == 0 or a.shape[0] == 0:
        raise InputDataError(f"{caller}: {name} is empty: no samples (shape {a.shape}); pass at least one sample.")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise InputDataError(f"{caller}: {name} contains NaN or inf values; remove or replace them.")
    if float32 and a.size and np.max(np.abs(a)) > np.finfo(np.float32).max:
        raise InputDataError(f"{caller}: {name} holds values beyond float32's range (|x| up to "
                             f"{np.max(np.abs(a)):.3g}), which the model computes in; rescale the data.")
    return a


def model_inputs(model, data, what, caller, numbered=False, float32=False):
    """`as_arrays`, then one array per input of ``model``, each with that input's sample shape.

    Returns:
        The list of arrays, in the order of ``model.inputs``.
    """
    items = _items(data, what, caller)
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # a model not built yet: Keras checks when it is called
        inputs = []
    if inputs and len(items) != len(inputs):
        raise InputDataError(f"{caller}: the model has {len(inputs)} input(s) but {what} has {len(items)} "
                             "array(s); pass one array per model input, in the order of model.inputs.")
    arrays = _checked(items, what, caller, numbered, float32)
    name = _namer(what, len(arrays), numbered)
    for idx, (a, t) in enumerate(zip(arrays, inputs)):
        want, got = tuple(t.shape[1:]), tuple(a.shape[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise InputDataError(
                f"{caller}: input {idx} expects samples of shape {want}, got {got} ({name(idx)} of shape "
                f"{a.shape}); pass data shaped like the model input {t.name!r}."
            )
    return arrays


def pack(arrays):
    """What a model is called on: the one array of a single-input model, else the list of arrays."""
    return arrays[0] if len(arrays) == 1 else list(arrays)

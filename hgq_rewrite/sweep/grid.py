"""The trials of a sweep: every combination of the grid's values.

A grid is a dict of lists (a single value stands for a list of one)::

    {"beta": [1e-6, 1e-5], "seed": [0, 1], "init": [None, 0.1], "learning_rate": [1e-3]}

- ``beta``: EBOPs penalty of every HGQ layer (a number >= 0, or a schedule text such as
  ``"log:1e-7:1e-4"``, as `finetune` takes it).
- ``seed``: integer seed (`keras.utils.set_random_seed`) of the trial: weight init of new
  variables, shuffling, dropout.
- ``init``: bit-width init policy. ``None`` keeps the configured ``init_bw`` (the model as
  given); a number > 0 runs `init_bits` with that tolerance on the training data; ``"bw:N"``
  (float model only) quantizes with ``init_bw = N`` for activations and kernels.
- ``learning_rate``: Adam's learning rate (``lr`` is accepted as a synonym).
- ``target_ebops``: an EBOPs budget; beta is then controlled during training
  (`finetune(target_ebops=...)`). A grid gives either ``beta`` or ``target_ebops`` values.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from numbers import Integral, Real

GRID_KEYS = ("beta", "seed", "init", "learning_rate", "target_ebops")
DEFAULTS = {"beta": None, "seed": 0, "init": None, "learning_rate": 1e-3, "target_ebops": None}
_SYNONYMS = {"lr": "learning_rate"}
_BW = re.compile(r"^bw:(\d+)$")


@dataclass
class Trial:
    """One combination of the grid.

    Attributes:
        id: folder name of the trial in the sweep folder (``t000``, ``t001``, ...).
        params: ``{"beta", "seed", "init", "learning_rate", "target_ebops"}``.
    """

    id: str
    params: dict = field(default_factory=dict)

    def label(self):
        """A short text of the parameters (for the progress display)."""
        parts = []
        for key in GRID_KEYS:
            value = self.params[key]
            if key == "learning_rate":
                key = "lr"
            if isinstance(value, float):
                value = f"{value:.3g}"
            parts.append(f"{key}={value}")
        return " ".join(parts)


def _check_value(key, value):
    where = f"sweep: grid[{key!r}]"
    if key == "beta":
        if value is None:
            return None
        if isinstance(value, str):
            from ..schedules import as_schedule

            try:
                as_schedule(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: {e}") from None
            return value
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: beta must be a finite number >= 0 or a schedule text, got {value!r}.")
        return float(value)
    if key == "target_ebops":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where}: an EBOPs target must be a finite number > 0, got {value!r}.")
        return float(value)
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise ValueError(f"{where}: a seed must be an integer >= 0, got {value!r}.")
        return int(value)
    if key == "learning_rate":
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where}: a learning rate must be a finite number > 0, got {value!r}.")
        return float(value)
    # init
    if value is None or (isinstance(value, str) and value.lower() in ("none", "config", "configured")):
        return None
    if isinstance(value, str) and _BW.match(value):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{where}: an init policy is None (configured init_bw), a tolerance > 0 for init_bits, or 'bw:N' "
            f"(init_bw N), got {value!r}."
        )
    return float(value)


def normalize_grid(grid):
    """Check a grid and return it as ``{key: [values]}`` over `GRID_KEYS` (defaults filled in).

    Raises:
        TypeError / ValueError: naming the key or value that is wrong.
    """
    if not isinstance(grid, dict):
        raise TypeError(f"sweep: grid must be a dict such as {{'beta': [1e-6, 1e-5], 'seed': [0, 1]}}, "
                        f"got {type(grid).__name__}.")
    out = {}
    for raw_key, values in grid.items():
        key = _SYNONYMS.get(raw_key, raw_key)
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(str(raw_key), GRID_KEYS + tuple(_SYNONYMS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"sweep: unknown grid key {raw_key!r}{hint}; the keys are {', '.join(GRID_KEYS)}.")
        if key in out:
            raise ValueError(f"sweep: grid key {key!r} is given twice ({raw_key!r} is a synonym).")
        if isinstance(values, (list, tuple)):
            values = list(values)
        else:
            values = [values]
        if not values:
            raise ValueError(f"sweep: grid[{raw_key!r}] is empty; give at least one value.")
        checked = [_check_value(key, v) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise ValueError(f"sweep: grid[{raw_key!r}] repeats a value: {values!r}.")
        out[key] = checked
    for key in GRID_KEYS:
        out.setdefault(key, [DEFAULTS[key]])
    if any(v is not None for v in out["beta"]) and any(v is not None for v in out["target_ebops"]):
        raise ValueError("sweep: give either 'beta' or 'target_ebops' values (beta is controlled towards the "
                         "target), not both.")
    return {key: out[key] for key in GRID_KEYS}


def expand_grid(grid):
    """The `Trial` of every combination of a grid (checked by `normalize_grid`), in a fixed order."""
    grid = normalize_grid(grid)
    combos = itertools.product(*(grid[k] for k in GRID_KEYS))
    return [Trial(f"t{i:03d}", dict(zip(GRID_KEYS, combo))) for i, combo in enumerate(combos)]

"""The files of a finetune run: the folder check, ``front.json`` / ``history.json``, reading a front back.

Every file is written to a temporary file in the folder and renamed into place once complete.
"""

from __future__ import annotations

import json
import os
import re

from ..files import is_temporary, write_json
from .front import FrontEntry

FRONT_FILE = "front.json"
HISTORY_FILE = "history.json"


def plain(value):
    """``value`` as a float for JSON, or its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def write_summary(directory, summary, history=None):
    """Write ``summary`` to ``front.json`` (and the Keras ``history`` dict to ``history.json``) in ``directory``."""
    write_json(os.path.join(directory, FRONT_FILE), summary)
    if history is not None:
        write_json(os.path.join(directory, HISTORY_FILE), {k: [plain(x) for x in v] for k, v in history.items()})


_RUN_FILE = re.compile(r"^(epoch\d{4,}\.keras|last\.keras|front\.json|history\.json)$")


def is_run_file(name):
    """True for the names of the files a finetune run writes into its folder."""
    return bool(_RUN_FILE.match(name)) or is_temporary(name)


def check_run_dir(directory, overwrite=False, what="pareto_dir"):
    """Check a finetune folder before training; return the files ``overwrite`` will delete.

    Raises:
        ValueError: the path is a file; or the folder is not empty and ``overwrite`` is False;
            or it holds files that a finetune run does not write (never deleted).
    """
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"finetune: {what} {directory!r} is a file; give a folder (new or empty) for the front.")
    if not os.path.isdir(directory):
        return []
    names = sorted(os.listdir(directory))
    if not names:
        return []
    foreign = [n for n in names if not (is_run_file(n) and os.path.isfile(os.path.join(directory, n)))]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"finetune: {what} {directory!r} holds files not written by finetune ({shown}); "
            "choose a new or empty folder (overwrite only deletes an earlier run's files)."
        )
    if not overwrite:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(
            f"finetune: {what} {directory!r} holds an earlier run ({shown}); choose a new folder, or pass "
            "overwrite=True (command line: --overwrite) to delete that run first."
        )
    return [os.path.join(directory, n) for n in names]


def load_front(directory):
    """Read ``front.json`` of a finetune folder: ``(summary dict, [FrontEntry, ...])``."""
    path = os.path.join(os.fspath(directory), FRONT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} is not a finetune folder: it has no {FRONT_FILE}.")
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    entries = [FrontEntry(**{k: v for k, v in e.items() if k != "weights"}) for e in summary.get("front", [])]
    return summary, entries

"""Argument types and help texts shared by the ``hgq-rewrite`` subcommands (``sweep`` included)."""

import argparse

NPZ_HELP = "npz file: inputs under 'x' (or 'x0', 'x1', ... for several inputs), targets under 'y'"


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def steps_per_execution(text):
    """``auto`` or an integer >= 1 (finetune's ``steps_per_execution``)."""
    return text if text == "auto" else positive_int(text)


def nonneg_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text):
    value = nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value

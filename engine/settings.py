"""Settings read from the environment (``RUNLEDGER_*``), each checked once, in one way: numbers, and where
an organization's declared folders are.

A mistyped setting must stop the process with a sentence naming the variable, what it must be and how to
fall back to the default — not with ``could not convert string to float`` from deep inside a page or job.
"""

from __future__ import annotations

import os
from pathlib import Path


def declared_folder(explicit: str | Path | None, env: str, definitions_dir: str | Path, name: str) -> Path:
    """Where a folder of declarations is: the command line's ``explicit`` wins, then ``$env``, then ``name/``
    beside the definitions folder (an organization keeps its registers, integrations and definitions
    together)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(env):
        return Path(os.environ[env])
    return Path(definitions_dir).resolve().parent / name


def number_from_env(name: str, default: float, unit: str, *, allow_zero: bool = False,
                    whole: bool = False) -> float:
    """``$name`` as a number of ``unit`` (more than 0, or at least 0 with ``allow_zero``), or ``default``
    when unset or empty. ``whole``: a count, so a whole number."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = f"a whole number of {unit}" if whole else f"a number of {unit}"
    fallback = f"unset it to use the default ({default:g} {unit})"
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, not {raw!r}; {fallback}") from None
    if value != value or value in (float("inf"), float("-inf")):  # nan and inf parse, but mean nothing here
        raise ValueError(f"{name} must be {kind}, not {raw!r}; {fallback}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"{name} must be {bound} (got {raw!r}); {fallback}")
    return value

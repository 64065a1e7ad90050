"""Forwarding CLI commands to a running engine's intake endpoint (when one holds the workspace)."""

from __future__ import annotations

import argparse
from typing import Callable

from store.errors import WorkspaceHeld

FORWARDABLE = {"emit", "signal", "fire", "retry", "cancel", "approve", "dismiss"}


def forward_if_possible(args: argparse.Namespace, held: WorkspaceHeld, out: Callable[[str], None]) -> int | None:
    """Send the command to the running engine; None when it cannot be forwarded (the caller explains)."""
    if args.command not in FORWARDABLE:
        return None
    return None

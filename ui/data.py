"""Shapes store results for display (no SQL here: the store answers, this only formats)."""

from __future__ import annotations

import polars as pl

from store.runs import read_runs_table
from store.workspace import Workspace


def runs_table(ws: Workspace, limit: int = 500) -> pl.DataFrame:
    with ws.read() as conn:
        rows = read_runs_table(conn, limit)
    if not rows:
        return pl.DataFrame({"message": ["No runs yet: run `make run` to seed the demo quarter."]})
    return pl.DataFrame(rows)

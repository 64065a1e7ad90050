"""SQL that DuckDB and PostgreSQL spell differently, written once as SQLAlchemy constructs.

The read models (store/views) are SQLAlchemy Core shared by both backends; the few functions the two databases
name differently compile per dialect here. DuckDB keeps the very SQL it had before PostgreSQL (its figures in
bench/RESULTS.md were measured with it); PostgreSQL gets its equivalent, written so that an expression index
can match it (IMMUTABLE: an interval's epoch, not a timestamptz's, which depends on the session's time zone).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class duration_ms(FunctionElement[int]):  # noqa: N801 - a SQL function's name, as sa.func's are
    """Milliseconds from the first timestamp to the second (NULL if either is)."""

    type = sa.BigInteger()
    inherit_cache = True
    name = "duration_ms"


@compiles(duration_ms)
def _duration_ms_duckdb(element: duration_ms, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"epoch_ms({compiler.process(end, **kw)}) - epoch_ms({compiler.process(start, **kw)})"


@compiles(duration_ms, "postgresql")
def _duration_ms_postgresql(element: duration_ms, compiler: Any, **kw: Any) -> str:
    # timestamptz - timestamptz is an interval of days and time (never months), so its epoch is exact; both
    # steps are IMMUTABLE, which lets ix_runs_duration_sort (store/migrations.py, v10) index the expression.
    start, end = list(element.clauses)
    return (f"CAST(EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)})) * 1000 "
            "AS BIGINT)")


class seconds_between(FunctionElement[float]):  # noqa: N801
    """Seconds (fractional) from the first timestamp to the second."""

    type = sa.Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between)
def _seconds_between_duckdb(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"(epoch_ms({compiler.process(end, **kw)}) - epoch_ms({compiler.process(start, **kw)})) / 1000.0"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    # date_part gives double precision, what DuckDB's division gives; EXTRACT gives numeric, whose arithmetic
    # costs several times more per row (a million runs' durations: seconds, not a few hundred ms).
    start, end = list(element.clauses)
    return f"date_part('epoch', {compiler.process(end, **kw)} - {compiler.process(start, **kw)})"


class quantile_cont(FunctionElement[float]):  # noqa: N801
    """The continuous ``fraction`` quantile of ``value`` over the group (an aggregate)."""

    type = sa.Float()
    inherit_cache = True
    name = "quantile_cont"


@compiles(quantile_cont)
def _quantile_cont_duckdb(element: quantile_cont, compiler: Any, **kw: Any) -> str:
    value, fraction = list(element.clauses)
    return f"quantile_cont({compiler.process(value, **kw)}, {compiler.process(fraction, **kw)})"


@compiles(quantile_cont, "postgresql")
def _quantile_cont_postgresql(element: quantile_cont, compiler: Any, **kw: Any) -> str:
    value, fraction = list(element.clauses)
    return (f"percentile_cont({compiler.process(fraction, **kw)}) "
            f"WITHIN GROUP (ORDER BY {compiler.process(value, **kw)})")

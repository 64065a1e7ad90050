"""A period's automation activity, per definition and over time: the analysis behind the analytics page,
the exports and the audit committee brief.

The store aggregates in DuckDB; this module shapes those few small rows with Polars into the frames the
page, the charts and the brief show, so all three tell exactly the same figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from core.definitions import Vocabulary
from core.periods import AnalyticsPeriod
from core.states import ATTENTION_STATUSES, ITEM_OUTCOMES
from engine.vocabulary import workspace_vocabulary
from reporting.firing import FiringCheck, check_firing
from store.definitions import read_definitions
from store.views import analytics as q
from store.views.failures import FailureAccount, read_failure_account
from store.workspace import Workspace

OUTCOME_COLUMNS = list(ITEM_OUTCOMES)


@dataclass
class Analytics:
    period: AnalyticsPeriod
    generated_at: dt.datetime
    per_definition: pl.DataFrame  # one row per definition in scope (also those with no runs)
    weekly_outcomes: pl.DataFrame  # week, outcome, items
    weekly_runs: pl.DataFrame  # week, definition_id, runs
    failure_causes: pl.DataFrame  # definition_id, cause, class, attempts, items, still_failed, recovered
    completion_buckets: pl.DataFrame  # bucket, definition_id, runs (buckets in order)
    completion_times: pl.DataFrame  # definition_id, closed_runs, p50/p90/max seconds
    approvals: pl.DataFrame  # definition_id, decision, approvals, median/max wait seconds
    firing: list[FiringCheck] = field(default_factory=list)
    failures: FailureAccount = field(default_factory=FailureAccount)  # recovered / dispositioned / open

    @property
    def totals(self) -> dict[str, int]:
        d = self.per_definition
        out = {c: int(d[c].sum()) for c in ("runs", "items", "actions_invoked", "subjects_matched",
                                            "attention_runs", *OUTCOME_COLUMNS)}
        out["definitions_with_runs"] = int((d["runs"] > 0).sum())
        return out

    def firing_frame(self) -> pl.DataFrame:
        return pl.DataFrame([{
            "definition_id": c.definition_id, "trigger": c.trigger, "expected": c.expected,
            "actual": c.actual, "difference": c.difference, "verdict": c.verdict,
            "explanation": c.explanation()} for c in self.firing],
            schema={"definition_id": pl.String, "trigger": pl.String, "expected": pl.Int64,
                    "actual": pl.Int64, "difference": pl.Int64, "verdict": pl.String,
                    "explanation": pl.String})


def _frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


_WEEK = pl.Datetime("us", "UTC")


def build_analytics(ws: Workspace, period: AnalyticsPeriod, now: dt.datetime | None = None) -> Analytics:
    """Every figure of the period, read in one short read transaction (a consistent snapshot)."""
    now = now or ws.now()
    f = q.AnalyticsFilter(period.start, period.end, period.definitions)
    with ws.read() as conn:
        definitions = [d for d in read_definitions(conn)
                       if not period.definitions or d["definition_id"] in period.definitions]
        run_rows, item_rows = q.count_runs_and_items_by_week(conn, f)
        cause_rows, still_rows = q.count_failures_by_cause(conn, f)
        bucket_rows = q.count_runs_by_completion_bucket(conn, f)
        time_rows = q.summarize_completion_times(conn, f)
        approval_rows = q.summarize_approvals(conn, f, now)
        event_rows = q.count_trigger_events(conn, f)
        ids = tuple(d["definition_id"] for d in definitions)
        versions = q.read_version_history(conn, ids)
        changes = q.read_enablement_changes(conn, ids)
        failures = read_failure_account(conn, f)

    runs = _frame(run_rows, {"definition_id": pl.String, "week": _WEEK, "trigger_kind": pl.String,
                             "status": pl.String, "runs": pl.Int64, "subjects_matched": pl.Int64,
                             "actions_invoked": pl.Int64})
    items = _frame(item_rows, {"definition_id": pl.String, "week": _WEEK, "outcome": pl.String,
                               "items": pl.Int64})
    per_definition = _per_definition(definitions, runs, items)
    firing = _firing(definitions, versions, changes, runs, event_rows, period, now, workspace_vocabulary(ws))
    return Analytics(
        period=period, generated_at=now, per_definition=per_definition, failures=failures,
        weekly_outcomes=items.group_by("week", "outcome").agg(pl.col("items").sum()).sort("week", "outcome"),
        weekly_runs=runs.group_by("week", "definition_id").agg(pl.col("runs").sum()).sort("week", "definition_id"),
        failure_causes=_causes(cause_rows, still_rows),
        completion_buckets=_buckets(bucket_rows),
        completion_times=_frame(time_rows, {"definition_id": pl.String, "closed_runs": pl.Int64,
                                            "p50_seconds": pl.Float64, "p90_seconds": pl.Float64,
                                            "max_seconds": pl.Float64, "approximate": pl.Boolean}
                                  ).sort("definition_id"),
        approvals=_frame(approval_rows, {"definition_id": pl.String, "decision": pl.String,
                                         "approvals": pl.Int64, "median_wait_seconds": pl.Float64,
                                         "max_wait_seconds": pl.Float64})
        .with_columns(pl.col("decision").fill_null("open")).sort("definition_id", "decision"),
        firing=firing,
    )


def _per_definition(definitions: list[dict[str, Any]], runs: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    base = pl.DataFrame({"definition_id": [d["definition_id"] for d in definitions],
                         "title": [d["title"] for d in definitions],
                         "trigger_kind": [d["trigger_kind"] for d in definitions]},
                        schema={"definition_id": pl.String, "title": pl.String, "trigger_kind": pl.String})
    run_totals = runs.group_by("definition_id").agg(
        pl.col("runs").sum(), pl.col("subjects_matched").sum(), pl.col("actions_invoked").sum(),
        pl.col("runs").filter(pl.col("status").is_in(ATTENTION_STATUSES)).sum().alias("attention_runs"))
    outcome_wide = (items.group_by("definition_id", "outcome").agg(pl.col("items").sum())
                    .pivot(on="outcome", index="definition_id", values="items")
                    if items.height else pl.DataFrame(schema={"definition_id": pl.String}))
    for o in OUTCOME_COLUMNS:
        if o not in outcome_wide.columns:
            outcome_wide = outcome_wide.with_columns(pl.lit(0, pl.Int64).alias(o))
    other = [c for c in outcome_wide.columns if c not in ("definition_id", *OUTCOME_COLUMNS)]
    outcome_wide = outcome_wide.with_columns(
        pl.sum_horizontal(*OUTCOME_COLUMNS, *other).alias("items"),
        *(pl.col(c).fill_null(0) for c in OUTCOME_COLUMNS))
    out = (base.join(run_totals, on="definition_id", how="left")
           .join(outcome_wide.select("definition_id", "items", *OUTCOME_COLUMNS), on="definition_id", how="left"))
    numeric = ["runs", "subjects_matched", "actions_invoked", "attention_runs", "items", *OUTCOME_COLUMNS]
    return out.with_columns(*(pl.col(c).fill_null(0).cast(pl.Int64) for c in numeric)).select(
        "definition_id", "title", "trigger_kind", "runs", "subjects_matched", "items", "actions_invoked",
        *OUTCOME_COLUMNS, "attention_runs").sort("definition_id")


def _firing(definitions: list[dict[str, Any]], versions: list[dict[str, Any]], changes: list[dict[str, Any]],
            runs: pl.DataFrame, event_rows: list[dict[str, Any]], period: AnalyticsPeriod,
            now: dt.datetime, vocabulary: Vocabulary) -> list[FiringCheck]:
    by_kind: dict[str, dict[str, int]] = {}
    for r in runs.group_by("definition_id", "trigger_kind").agg(pl.col("runs").sum()).iter_rows(named=True):
        by_kind.setdefault(r["definition_id"], {})[r["trigger_kind"]] = r["runs"]
    received: dict[tuple[str, str], int] = {}
    for e in event_rows:
        key = (e["kind"], e["event_type"] if e["kind"] == "event" else e["source"])
        received[key] = received.get(key, 0) + int(e["events"])
    checks = []
    for d in definitions:
        d_id = d["definition_id"]
        check = check_firing(d_id, [v for v in versions if v["definition_id"] == d_id],
                             [c for c in changes if c["definition_id"] == d_id], by_kind.get(d_id, {}),
                             received, period.start, period.end, now, vocabulary)
        if check is not None:
            checks.append(check)
    return checks


def _causes(cause_rows: list[dict[str, Any]], still_rows: list[dict[str, Any]]) -> pl.DataFrame:
    key = ["definition_id", "failure_cause", "failure_class"]
    causes = _frame(cause_rows, {"definition_id": pl.String, "failure_cause": pl.String,
                                 "failure_class": pl.String, "attempts": pl.Int64, "items": pl.Int64,
                                 "runs": pl.Int64})
    still = _frame(still_rows, {"definition_id": pl.String, "failure_cause": pl.String,
                                "failure_class": pl.String, "still_failed": pl.Int64})
    out = causes.join(still, on=key, how="full", coalesce=True, nulls_equal=True).with_columns(
        pl.col("attempts").fill_null(0), pl.col("runs").fill_null(0), pl.col("still_failed").fill_null(0))
    out = out.with_columns(pl.max_horizontal(pl.col("items").fill_null(0), pl.col("still_failed")).alias("items"))
    return (out.with_columns((pl.col("items") - pl.col("still_failed")).clip(lower_bound=0).alias("recovered"),
                             pl.col("failure_cause").fill_null("(no cause recorded)"),
                             pl.col("failure_class").fill_null("unknown"))
            .sort(["attempts", "items"], descending=True))


def _buckets(rows: list[dict[str, Any]]) -> pl.DataFrame:
    order = {label: i for i, (label, _) in enumerate(q.DURATION_BUCKETS)}
    df = _frame(rows, {"definition_id": pl.String, "bucket": pl.String, "runs": pl.Int64})
    return (df.with_columns(pl.col("bucket").replace_strict(order, return_dtype=pl.Int32).alias("order"))
            .sort("order", "definition_id").drop("order").select("bucket", "definition_id", "runs"))


def bucket_labels() -> list[str]:
    return [label for label, _ in q.DURATION_BUCKETS]


"""Versioned schema migrations: an older workspace is upgraded on open, a newer one refused.

Each migration is a function of a connection, applied in order inside the opening transaction, so a
failed upgrade leaves the workspace as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from store.errors import SchemaTooNew
from store.schema import metadata, schema_meta


def _v1_initial(conn: sa.Connection) -> None:
    metadata.create_all(conn)


def _v2_indexes(conn: sa.Connection) -> None:
    # Reads by run, by outcome and by entity are the dashboard's hot paths.
    for stmt in (
        "CREATE INDEX IF NOT EXISTS ix_runs_def_triggered ON runs (definition_id, triggered_at)",
        "CREATE INDEX IF NOT EXISTS ix_events_undispatched ON trigger_events (dispatched_at)",
        "CREATE INDEX IF NOT EXISTS ix_audit_entity ON audit_log (entity_kind, entity_id)",
    ):
        conn.exec_driver_sql(stmt)


def _v3_run_item_counts(conn: sa.Connection) -> None:
    """Per-run item counts by outcome on ``runs`` (a fresh workspace already has the columns from v1)."""
    from store.run_counts import COUNT_COLUMNS, backfill_item_counts

    have = set(conn.execute(sa.text("SELECT * FROM runs LIMIT 0")).keys())  # (no inspector on duckdb-engine)
    missing = [c for c in COUNT_COLUMNS if c not in have]
    if missing:  # DuckDB alters no table that an index depends on: set the index aside meanwhile
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_def_triggered")
        for column in missing:
            conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_runs_def_triggered ON runs (definition_id, triggered_at)")
    backfill_item_counts(conn)


def _v4_run_failure_causes(conn: sa.Connection) -> None:
    """Per-run failure summaries (store/run_counts.py), counted from the items and attempts already there."""
    from store.run_counts import backfill_failure_causes
    from store.schema import run_failure_causes

    run_failure_causes.create(conn, checkfirst=True)
    backfill_failure_causes(conn)


LEGACY_REGISTERS = ("accounts", "suppliers", "incidents", "incident_reviews", "exceptions", "aml_monitor_results",
                    "rule_changes")


def _v5_declared_registers(conn: sa.Connection) -> None:
    """Registers become declared data (store/registers.py): the tables of what Runledger knows of them,
    and the seven register tables an earlier Runledger built in get Runledger's two bookkeeping columns
    (their declarations are taken, as version 1, when the engine next loads its registers folder)."""
    from store.schema import register_imports, register_rejections, register_versions, registers, subject_changes

    for table in (registers, register_versions, register_rejections, register_imports, subject_changes):
        table.create(conn, checkfirst=True)
    conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS import_number_seq")
    for name in LEGACY_REGISTERS:
        if not sa.inspect(conn).has_table(name):
            continue
        have = set(conn.execute(sa.text(f'SELECT * FROM "{name}" LIMIT 0')).keys())
        if "updated_at" in have and "_updated_at" not in have:
            conn.exec_driver_sql(f'ALTER TABLE "{name}" RENAME COLUMN updated_at TO _updated_at')
        if "_withdrawn_at" not in have:
            conn.exec_driver_sql(f'ALTER TABLE "{name}" ADD COLUMN _withdrawn_at TIMESTAMP WITH TIME ZONE')


def _v6_member_identity(conn: sa.Connection) -> None:
    """Members' e-mail and identity-provider subject (single sign-on) and their session epoch (a reset
    password or a deactivation ends the member's sessions). A fresh workspace has them from v1."""
    have = set(conn.execute(sa.text("SELECT * FROM members LIMIT 0")).keys())
    for column, ddl in (("email", "VARCHAR"), ("sso_subject", "VARCHAR"),
                        ("session_epoch", "INTEGER NOT NULL DEFAULT 0")):
        if column not in have:
            conn.exec_driver_sql(f"ALTER TABLE members ADD COLUMN {column} {ddl}")


def _v7_integrations(conn: sa.Connection) -> None:
    """Integrations that reach real systems: their declarations' versions, what a remote system answered each
    attempt (``item_attempts.evidence``), and the alerts sent through them. A fresh workspace has them from v1."""
    from store.schema import alerts, integration_versions

    integration_versions.create(conn, checkfirst=True)
    alerts.create(conn, checkfirst=True)
    have = set(conn.execute(sa.text("SELECT * FROM item_attempts LIMIT 0")).keys())
    if "evidence" not in have:
        conn.exec_driver_sql("ALTER TABLE item_attempts ADD COLUMN evidence VARCHAR")


def _v8_no_stand_in_messaging(conn: sa.Connection) -> None:
    """The demo's messaging system is a real SMTP server now (demo/gateway.py), which keeps its own ledger:
    the two tables that stood in for it inside the workspace (its deliveries and its outage windows) go.
    Nothing of Runledger's own history was in them; each delivery's evidence is on its attempt."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS messaging_deliveries")
    conn.exec_driver_sql("DROP TABLE IF EXISTS integration_outages")


def _v9_many_processes(conn: sa.Connection) -> None:
    """Many engine workers and app replicas on one workspace: the workers and their leases, which worker holds
    each in-flight item and works each run, and members' sessions kept in the workspace rather than in one
    app process. A fresh workspace has them from v1."""
    from store.schema import sessions, workers

    workers.create(conn, checkfirst=True)
    sessions.create(conn, checkfirst=True)
    for table, column in (("run_items", "claimed_by"), ("runs", "worked_by")):
        have = set(conn.execute(sa.text(f"SELECT * FROM {table} LIMIT 0")).keys())
        if column not in have:
            if table == "runs":  # DuckDB alters no table an index depends on (as in v3)
                conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_def_triggered")
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR")
            if table == "runs":
                conn.exec_driver_sql(
                    "CREATE INDEX IF NOT EXISTS ix_runs_def_triggered ON runs (definition_id, triggered_at)")


# PostgreSQL's indexes for the dashboard's and the analytics' reads (schema 10), each with the query it serves.
# DuckDB needs none of them: it reads a run's items through zone maps (items are stored in run order) and
# aggregates a million runs by scanning them, and an index would cost its bulk appends ~2.8× (docs/DESIGN).
# PostgreSQL reads row by row: without them the Run page scans 20 M items for one run's hundred.
POSTGRES_INDEXES: tuple[tuple[str, str], ...] = (
    # Runs page, the default sort (newest completed first; open runs first) and its keyset pages: the very
    # expression store/views/run_pages.py sorts by, so the first page and a page 500,000 runs deep both read
    # 51 index entries.
    ("ix_runs_completed_sort",
     "ON runs ((coalesce(completed_at, TIMESTAMPTZ '9999-12-31 00:00:00+00')), run_number)"),
    # Runs page sorted by started time.
    ("ix_runs_started_sort", "ON runs ((coalesce(started_at, TIMESTAMPTZ '9999-12-31 00:00:00+00')), run_number)"),
    # Runs page sorted by duration (store/portable.py's duration_ms as PostgreSQL spells it).
    ("ix_runs_duration_sort",
     "ON runs ((coalesce(CAST(EXTRACT(EPOCH FROM (completed_at - started_at)) * 1000 AS BIGINT), -1)), run_number)"),
    # Runs page sorted by trigger time; every period filter over all definitions (Runs, Failed items, Analytics,
    # the brief); the first and last run's time (the period pickers of Failed items and Analytics).
    ("ix_runs_triggered", "ON runs (triggered_at, run_number)"),
    # Runs page: counts by status (an index-only scan of a small index, not of the runs' rows), and its sorts
    # by status and by definition.
    ("ix_runs_status", "ON runs (status, run_number)"),
    ("ix_runs_definition", "ON runs (definition_id, run_number)"),
    # Runs page, Analytics, the brief: a period's runs of some definitions, and their counts by status read from
    # the index alone (schema 9's ix_runs_def_triggered, which it replaces, held no status).
    ("ix_runs_def_triggered_status", "ON runs (definition_id, triggered_at) INCLUDE (status)"),
    # Failed items page: the newest runs with failed items (a few percent of runs).
    ("ix_runs_with_failed_items", "ON runs (run_number) WHERE items_failed > 0"),
    # Run page: its items in position order (keyset pages), its breakdown by action and outcome; Runs page:
    # outcome counts for a page of runs; the engine: a run's next pending items (every claim).
    ("ix_items_run_position", "ON run_items (run_id, position)"),
    # Failed items page: the newest failed items of the runs picked, and a bulk retry's plan (~1% of items).
    ("ix_items_failed", "ON run_items (run_id, position) WHERE outcome = 'failed'"),
    # The engine's poll for due automatic retries (every few seconds on every worker), and their claim.
    ("ix_items_retry_due",
     "ON run_items (retry_due_at, item_id) WHERE outcome = 'failed' AND retry_due_at IS NOT NULL"),
    # Runs and Run pages: items that failed at least once (recovered or not) for a page of runs; the engine:
    # a run's failure summary, refreshed when a run with failures settles (store/run_counts.py).
    ("ix_attempts_failed_run", "ON item_attempts (run_id) WHERE outcome = 'failed'"),
    # Runs page's "with failed attempts" filter and count; the engine's refresh of one run's failure summary.
    ("ix_failure_causes_run", "ON run_failure_causes (run_id)"),
    # Failed items page and Analytics: failure summaries of a period.
    ("ix_failure_causes_triggered", "ON run_failure_causes (triggered_at)"),
    # Analytics: events and signals received in a period.
    ("ix_events_occurred", "ON trigger_events (occurred_at)"),
    # Run page: the run's alerts.
    ("ix_alerts_run", "ON alerts (run_id)"),
)


def _v10_postgres_read_indexes(conn: sa.Connection) -> None:
    """The indexes PostgreSQL needs for the dashboard's and the analytics' reads at a million runs (above);
    nothing on DuckDB. On an existing workspace each is built in the opening transaction (a few minutes for
    20 M items; other processes wait on the upgrade lock meanwhile)."""
    if conn.dialect.name != "postgresql":
        return
    for name, definition in POSTGRES_INDEXES:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_def_triggered")  # ix_runs_def_triggered_status serves it
    conn.exec_driver_sql("ANALYZE runs")  # the planner's statistics on the expression indexes


def _v11_dispositions(conn: sa.Connection) -> None:
    """Failed items' dispositions (waived, resolved outside, superseded): a table of their own beside the
    items, whose outcomes stay as they were. A fresh workspace has it from v1."""
    from store.schema import item_dispositions

    item_dispositions.create(conn, checkfirst=True)
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_dispositions_run ON item_dispositions (run_id)")


def _v12_retention(conn: sa.Connection) -> None:
    """Keeping evidence for years: legal holds and the archives retention wrote. A fresh workspace has them
    from v1."""
    from store.schema import legal_holds, retention_archives

    legal_holds.create(conn, checkfirst=True)
    retention_archives.create(conn, checkfirst=True)
    conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS hold_number_seq")


def _v13_rollups(conn: sa.Connection) -> None:
    """Closed runs summed by day and their durations by month, events by day (store/rollups.py), each run's
    failures as they stand (store/failure_accounts.py), filled from what the workspace holds: the analytics'
    reads at a million runs. A fresh workspace has the tables from v1 (and nothing to fill)."""
    from store.failure_accounts import backfill_failure_accounts
    from store.rollups import backfill_event_rollups, backfill_rollups
    from store.schema import event_rollups, run_duration_rollups, run_failure_accounts, run_rollups

    for table in (run_rollups, run_duration_rollups, run_failure_accounts, event_rollups):
        table.create(conn, checkfirst=True)
    backfill_rollups(conn)
    backfill_failure_accounts(conn)
    backfill_event_rollups(conn)
    if conn.dialect.name == "postgresql":  # the analytics' period reads (DuckDB scans the few rows)
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_failure_accounts_triggered "
                             "ON run_failure_accounts (triggered_at)")


def _v14_items_by_subject(conn: sa.Connection) -> None:
    """A subject's story by index (the Subject page, store/views/subject_items.py). At 20 M items a scan for
    one subject's items took 250–350 ms and one for their attempts 30 ms more; the lookups take 2–15 ms.
    ``ix_items_subject`` holds one column, the subject's id, because DuckDB answers a query from an ART only
    for an equality on a single-column index (the register kind is filtered after). DuckDB also reads
    attempts by item through an index of their own (``ix_attempts_item``): it uses the ``(item_id,
    attempt)`` key only for the whole key, where PostgreSQL's serves ``item_id`` alone. Their price on the
    executor's appends is in bench/RESULTS.md (issue 15). DuckDB 2.0 adds a column to a table with an index
    but refuses to drop, rename or retype one (``Dependency Error``): a later migration that does so to
    ``run_items`` or ``item_attempts`` drops these first and makes them again (as _v3 does for ``runs``).
    On an existing workspace they are built in the opening transaction (on DuckDB 35 s, 3.1 GB of memory and
    1.5 GB of file at 20 M items and attempts)."""
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_items_subject ON run_items (subject_id)")
    if conn.dialect.name == "duckdb":
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_attempts_item ON item_attempts (item_id)")
    else:  # the story's other subject-keyed reads; on DuckDB a scan of them is a few ms at 1 M events
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_events_subject ON trigger_events (subject_id)")
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_subject_changes_subject ON subject_changes (subject_id)")


def _v15_failure_cause_rollups(conn: sa.Connection) -> None:
    """Failed items by automation, month, cause and class (store/cause_rollups.py), filled from the runs'
    failure summaries: the Failed items page's groups at a million runs; and the closed runs with a failed
    attempt per rollup row (``run_rollups.runs_with_failed_attempts``), recounted: the Runs page's "with failed
    attempts" figure. A fresh workspace has both from v1 (and nothing to fill)."""
    from store.cause_rollups import backfill_cause_rollups
    from store.rollups import FAILED_FIRST, backfill_rollups
    from store.schema import failure_cause_rollups

    failure_cause_rollups.create(conn, checkfirst=True)
    backfill_cause_rollups(conn)
    conn.exec_driver_sql(f"ALTER TABLE run_rollups ADD COLUMN IF NOT EXISTS {FAILED_FIRST} BIGINT DEFAULT 0")
    backfill_rollups(conn)
    # The Runs page's "with failed attempts" reads the rollups and the failure accounts now, not this (v10's).
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_failure_causes_failed_run")


MIGRATIONS: list[tuple[int, Callable[[sa.Connection], None]]] = [
    (1, _v1_initial),
    (2, _v2_indexes),
    (3, _v3_run_item_counts),
    (4, _v4_run_failure_causes),
    (5, _v5_declared_registers),
    (6, _v6_member_identity),
    (7, _v7_integrations),
    (8, _v8_no_stand_in_messaging),
    (9, _v9_many_processes),
    (10, _v10_postgres_read_indexes),
    (11, _v11_dispositions),
    (12, _v12_retention),
    (13, _v13_rollups),
    (14, _v14_items_by_subject),
    (15, _v15_failure_cause_rollups),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def read_schema_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table("schema_meta"):
        return None
    value = conn.execute(
        sa.select(schema_meta.c.value).where(schema_meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else None


def upgrade_schema(conn: sa.Connection) -> int:
    """Bring the workspace to ``SCHEMA_VERSION``; refuse one written by a newer Runledger."""
    found = read_schema_version(conn) or 0
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"This workspace was written by a newer Runledger (schema {found}; this one knows up to "
            f"{SCHEMA_VERSION}). Nothing was changed. Upgrade Runledger to open it.")
    for version, migrate in MIGRATIONS:
        if version > found:
            migrate(conn)
            if found == 0:
                conn.execute(schema_meta.insert().values(key="schema_version", value=str(version)))
            else:
                conn.execute(schema_meta.update().where(schema_meta.c.key == "schema_version")
                             .values(value=str(version)))
            found = version
    return found

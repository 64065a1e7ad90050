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
    (11, _v11_dispositions),  # 10: PostgreSQL's read indexes (branch pgbench), merged before this lands
    (12, _v12_retention),
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

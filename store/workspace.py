"""The workspace: one DuckDB file (or a PostgreSQL URL), opened once per process.

Every write goes through ``Workspace.transaction``: it serialises writers inside this process (DuckDB
admits one writer; serialising here turns would-be write conflicts into orderly waits), buffers the
audit entries of the change and appends them, chained, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

try:  # duckdb-engine turns SQLAlchemy's compiled-statement cache off wholesale; our statements are plain
    import duckdb_engine  # Core and cache safely, which saves ~0.3 ms on every query.

    duckdb_engine.Dialect.supports_statement_cache = True
except ImportError:  # pragma: no cover - PostgreSQL-only installs
    pass

from store import audit as audit_mod
from store.errors import SchemaTooNew, StoreError, WorkspaceHeld, WorkspaceUnreadable, WriteConflict, WriteFailed
from store.migrations import SCHEMA_VERSION, read_schema_version, upgrade_schema
from store.schema import audit_log
from store.tx import WROTE, Now, Tx

try:
    import duckdb

    # What the database raises itself: the DuckDB-native fast paths (store.bulk) reach it without SQLAlchemy.
    _DB_ERRORS: tuple[type[BaseException], ...] = (sa.exc.DBAPIError, duckdb.Error)
    # A write the storage refused: the file system (a full disk, an I/O error), memory, or a database that
    # an earlier such failure invalidated.
    _WRITE_FAILURES: tuple[type[BaseException], ...] = (duckdb.IOException, duckdb.FatalException,
                                                        duckdb.OutOfMemoryException, OSError)
except ImportError:  # pragma: no cover - PostgreSQL-only installs
    _DB_ERRORS = (sa.exc.DBAPIError,)
    _WRITE_FAILURES = (OSError,)

DEFAULT_WORKSPACE = "data/workspace.duckdb"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_duckdb_location(url_or_path: str) -> bool:
    """A DuckDB file (a path, or a ``duckdb:///`` URL) rather than a server's URL (PostgreSQL)."""
    return "://" not in url_or_path or url_or_path.startswith("duckdb:")


def resolve_workspace_path(explicit: str | None = None) -> str:
    """``--db`` wins, then ``RUNLEDGER_DB``, then the default under ``data/``."""
    return explicit or os.environ.get("RUNLEDGER_DB") or DEFAULT_WORKSPACE


_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")


def _explain_open_error(path: str, exc: BaseException) -> Exception:
    text = str(exc)
    m = _HOLDER.search(text)
    if m or "Could not set lock" in text:
        holder = f"{m.group('prog')}, PID {m.group('pid')}" if m else "unknown process"
        return WorkspaceHeld(path, holder)
    if "not a valid DuckDB database" in text or "Corrupt" in text or "truncated" in text.lower() \
            or "Serialization Error" in text or "IO Error" in text:
        return WorkspaceUnreadable(
            f"The workspace {path} cannot be read: {text.splitlines()[0]}. Nothing was overwritten. "
            "Restore it from a backup, or point RUNLEDGER_DB / --db at another file."
        )
    return WorkspaceUnreadable(f"The workspace {path} could not be opened: {text.splitlines()[0]}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_pg_storage_failure(orig: BaseException) -> bool:
    """A write PostgreSQL's storage refused, the transaction rolled back: a full disk (SQLSTATE 53100) or an
    error of the server's own files (class 58, "system error": an I/O error, a file it cannot open). Read
    from the error's SQLSTATE, so that the store needs no import of the driver."""
    state = getattr(orig, "sqlstate", None) or ""
    return state == "53100" or state.startswith("58")


def _explain_write_error(path: str, exc: BaseException) -> Exception | None:
    """A write error a person can act on, or None for one that is a bug (raised as it is)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig)
    if "Conflict" in text and "TransactionContext" in text or "Conflict on update" in text:
        return WriteConflict(
            "Another change touched the same record at the same moment; nothing of this "
            "one was saved. Reload and try again.")
    if "Out of Memory" in text:
        return WriteFailed(
            f"The workspace {path} could not be written: the database ran out of the memory allowed to it "
            f"({_first_line(orig)}); this change was rolled back and nothing of it was saved. For a large import, "
            "raise RUNLEDGER_IMPORT_MEMORY (default 256MB, e.g. 1GB); otherwise free memory, then try again.")
    if isinstance(orig, _WRITE_FAILURES) or _is_pg_storage_failure(orig):
        return WriteFailed(
            f"The workspace {path} could not be written ({_first_line(orig)}); this change was rolled back "
            "and nothing of it was saved. Free disk space or repair the storage, then try again.")
    return None


def _schema_too_new(found: int) -> SchemaTooNew:
    # The same words as store.migrations.upgrade_schema's refusal.
    return SchemaTooNew(
        f"This workspace was written by a newer Runledger (schema {found}; this one knows up to "
        f"{SCHEMA_VERSION}). Nothing was changed. Upgrade Runledger to open it.")


def _note_write(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
    """Every statement but a plain SELECT may write (an INSERT, UPDATE, DELETE, DDL, a CTE that updates)."""
    if not statement.lstrip()[:6].upper().startswith("SELECT"):
        conn.info[WROTE] = True


# PostgreSQL advisory lock keys (any two fixed numbers no other application on the database uses): one
# serialises appending to the audit chain across processes, the other creating or upgrading the schema.
AUDIT_APPEND_LOCK = 0x52554E4C0001  # "RUNL" 1
SCHEMA_UPGRADE_LOCK = 0x52554E4C0002


class Workspace:
    """The opened store. Thread-safe: each call takes its own pooled connection."""

    def __init__(self, url_or_path: str, now: Now = utc_now, read_only: bool = False) -> None:
        self.now = now
        self.is_duckdb = is_duckdb_location(url_or_path)
        if self.is_duckdb:
            path = url_or_path.removeprefix("duckdb:///")
            self.path = self.shown = path
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            url = f"duckdb:///{path}"
            connect_args = {"read_only": read_only}  # no ICU offline: DuckDB keeps TIMESTAMPTZ in UTC
            self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=False)
        else:
            self.path = url_or_path
            # What messages name: they reach members' screens and the audit log, which keeps them for good.
            self.shown = sa.make_url(url_or_path).render_as_string(hide_password=True)
            # Every session in UTC, whatever zone the server or the database is set to: a week or a day
            # (date_trunc) starts at UTC's midnight, as on DuckDB, and times come back as UTC's.
            self.engine = sa.create_engine(url_or_path, connect_args={"options": "-c TimeZone=UTC"})
        self._write_lock = threading.RLock()
        # This object, and how many transactions that wrote it has committed: see ``change_marker``.
        self._instance = uuid.uuid4().hex
        self._commits = 0
        sa.event.listen(self.engine, "before_cursor_execute", _note_write)
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").all()
        except Exception as exc:  # noqa: BLE001 - translated into a message a person can act on
            self.engine.dispose()
            raise _explain_open_error(self.shown, exc) from exc
        try:
            # Reading the schema version reads the file's catalog: a truncated or damaged file whose
            # header survived fails here, before anything is written to it.
            if not read_only:
                with self.engine.begin() as conn:
                    if not self.is_duckdb:  # processes starting together: one creates or upgrades it
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_UPGRADE_LOCK})
                    upgrade_schema(conn)
            else:
                with self.engine.connect() as conn:
                    found = read_schema_version(conn)
                if found is not None and found > SCHEMA_VERSION:
                    raise _schema_too_new(found)
        except StoreError:
            self.engine.dispose()  # refused: let go of the file
            raise
        except _DB_ERRORS as exc:  # translated into a message a person can act on
            self.engine.dispose()
            raise _explain_open_error(self.shown, exc) from exc

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self, *, bookkeeping: bool = False) -> Iterator[Tx]:
        """A write transaction; its audit entries are chained and appended before it commits.

        ``bookkeeping``: it writes nothing any screen shows (a session's latest page view), so it leaves
        ``change_marker`` where it was; counted, every page view would empty the caches keyed on it."""
        with self._write_lock:
            try:
                with self.engine.begin() as conn:
                    conn.info[WROTE] = False
                    tx = Tx(conn, self.now)
                    yield tx
                    if tx.sums:  # the analytics' rollups, last but for the chain: see Tx.add_to_sums
                        from store.rollups import write_sums  # the rollups build on Tx: import late

                        write_sums(conn, tx.sums)
                    if tx.entries:
                        from store.bulk import append_columns  # store.bulk builds on Tx: import late
                        if not self.is_duckdb:
                            # Other processes write this database too: the chain's head is read and
                            # extended by one transaction at a time, the lock held to its commit.
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_APPEND_LOCK})
                        append_columns(tx, audit_log,
                                       audit_mod.chain_columns(tx.entries, audit_mod.read_chain_head(conn)))
                    wrote = conn.info.pop(WROTE, True)
            except _DB_ERRORS as exc:
                explained = _explain_write_error(self.shown, exc)
                if explained is None:
                    raise
                raise explained from exc
            if wrote and not bookkeeping:
                self._commits += 1  # after the commit, under the write lock: see ``change_marker``

    def change_marker(self) -> str | None:
        """A value that changes whenever the workspace's data may have changed, for caches of what is read.

        On DuckDB this process is the file's one writer (no other process can even open it), and every write
        is a ``transaction`` of this object, so the number of transactions that wrote which it has committed
        is exact and costs no query. "Wrote" is conservative: any statement but a SELECT, or any use of the
        native connection (``Tx.raw``). A transaction that only looked (the engine's poll for due retries,
        every 5 s, finding none) does not count, or it would empty every cache keyed on the marker. It
        counts after the commit: a reader that takes the marker *before* it reads may cache a newer snapshot
        under an older marker (harmless), never an older snapshot under a newer one. The object's own random
        id is part of it, so two workspaces (or a reopened one) never share a value.

        None where other processes write too (a PostgreSQL workspace shared by replicas): nothing here
        could see their writes, so callers must not cache."""
        if not self.is_duckdb:
            return None
        return f"{self._instance}:{self._commits}"

    def verify_audit(self, archives: Sequence[str | Path] = ()) -> audit_mod.ChainVerdict:
        """The live chain; given archive folders (``retention apply``), the whole chain through them."""
        with self.read() as conn:
            if archives:
                from store.archive import verify_audit_with_archives  # Parquet: only when archives are given
                return verify_audit_with_archives(conn, archives)
            return audit_mod.verify_audit_chain(conn)

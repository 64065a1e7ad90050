"""One open write transaction and the audit entries that will commit with it.

Its own module, below the workspace: the bulk writers and the run counts build on a transaction, and the
workspace opens one, so neither needs the other's module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from store import audit as audit_mod

Now = Callable[[], dt.datetime]
# Set on a connection (its ``info``) once a statement that may write runs on it: see
# ``Workspace.change_marker``.
WROTE = "runledger_wrote"


@dataclass
class Tx:
    """One open write transaction and the audit entries that will commit with it."""

    conn: sa.Connection
    now: Now
    entries: list[audit_mod.AuditEntry] = field(default_factory=list)
    # Changes to the analytics' rollups (store/rollups.py), (table, key) → measures, written when the
    # transaction ends, just before its audit entries: see ``add_to_sums``.
    sums: dict[tuple[str, tuple[Any, ...]], dict[str, int]] = field(default_factory=dict)

    def add_to_sums(self, table: str, key: tuple[Any, ...], measures: dict[str, int]) -> None:
        """Add to a rollup row at the end of the transaction. Rollup rows are shared by every transaction (a
        day's closed runs, a day's events): written in the middle of one, in whatever order its work came, two
        transactions could each hold a row the other waits for. Written last, all together, in one sorted
        order, after every other row lock the transaction takes, no two can wait on each other."""
        into = self.sums.setdefault((table, key), dict.fromkeys(measures, 0))
        for name, value in measures.items():
            into[name] = into.get(name, 0) + value

    def audit(self, actor: str, event: str, entity_kind: str, entity_id: str,
              payload: dict[str, Any] | None = None, occurred_at: dt.datetime | None = None) -> None:
        self.entries.append(audit_mod.AuditEntry(
            occurred_at or self.now(), actor, event, entity_kind, entity_id, payload or {}))

    def audit_many(self, actor: str, entity_kind: str, entries: Iterable[tuple[str, str, dict[str, Any]]],
                   occurred_at: dt.datetime | None = None) -> None:
        """Many entries by one actor on one kind of entity, at one instant: (event, entity id, payload)."""
        at, entry = occurred_at or self.now(), audit_mod.AuditEntry
        self.entries.extend([entry(at, actor, event, entity_kind, entity_id, payload or {})
                             for event, entity_id, payload in entries])

    @property
    def raw(self) -> Any:
        """The DB-API connection, for the DuckDB-native fast paths in ``store.bulk``."""
        self.conn.info[WROTE] = True  # what goes through it is unseen by SQLAlchemy: count it as a write
        return self.conn.connection.dbapi_connection

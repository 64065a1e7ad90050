"""Errors the store raises, each saying what went wrong and what to do about it."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error; its message is meant for the person at the keyboard."""


class WorkspaceHeld(StoreError):
    """Another process holds the workspace file (DuckDB allows one writer and, while it writes, no reader)."""

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"The workspace {path} is held by another process ({holder}). Nothing was changed. "
            "Stop that process, or send the command through the running engine's intake endpoint "
            "(the CLI does this by itself for emit, signal, fire, retry, cancel, approve and dismiss)."
        )


class WorkspaceUnreadable(StoreError):
    """The file is not a DuckDB workspace we can read: corrupted, truncated or not ours."""


class SchemaTooNew(StoreError):
    """The workspace was written by a newer Runledger; opening it with this one could lose data."""


class WriteConflict(StoreError):
    """Two writers changed the same row at once; the loser is told plainly and may try again."""


class WriteFailed(StoreError):
    """The workspace could not be written (a full disk, an I/O error): the transaction was rolled back whole."""


class WorkTakenOver(StoreError):
    """A worker's items were taken over by another worker after its lease lapsed: it writes nothing of them."""

    def __init__(self, item_id: str, worker: str, holder: str) -> None:
        self.item_id, self.worker, self.holder = item_id, worker, holder
        super().__init__(
            f"item {item_id} is held by worker {holder} now, which took it over after the lease of worker "
            f"{worker} lapsed (no heartbeat for RUNLEDGER_LEASE_SECONDS); nothing of this batch was saved, and "
            f"{holder} replays it with its idempotency key.")

"""This process's worker lease: its name on the work it holds, and the heartbeat that keeps it.

On PostgreSQL many processes execute one workspace's items. Each registers as a worker (``store.workers``),
stamps every item it takes in flight and every run it works with its worker id, and renews its lease every
third of ``RUNLEDGER_LEASE_SECONDS`` (default 30) on a thread of its own, so a slow action or a long batch
never lets it lapse. A worker that dies stops renewing; once its lease is older than that, any other worker
takes over its runs and in-flight items and replays them with their idempotency keys (``Engine.
resume_interrupted``).

A worker that cannot renew (the database unreachable, the process paused) must stop acting before another
could take its work over: ``holds()`` turns false once the last renewal is more than half a lease old, and the
executor acts on no batch while it is false. Should it nevertheless write after a takeover, its settlement is
fenced (``store.items.settle_item_outcomes``) and rolls back whole.

On DuckDB one process holds the workspace: no heartbeat is needed, and every other worker is gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from engine.settings import number_from_env
from store import workers as worker_store
from store.workspace import Workspace

log = logging.getLogger("runledger.lease")
LEASE_SECONDS = 30.0


def lease_seconds() -> float:
    return number_from_env("RUNLEDGER_LEASE_SECONDS", LEASE_SECONDS, "seconds")


def _new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerLease:
    def __init__(self, ws: Workspace, seconds: float | None = None) -> None:
        self.ws = ws
        self.shared = not ws.is_duckdb
        self.seconds = seconds if seconds is not None else lease_seconds()
        self.worker_id = _new_worker_id()
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered = False

    def register(self) -> None:
        """Enter this worker in the workspace (once); on PostgreSQL start renewing its lease."""
        if self._registered:
            return
        with self.ws.engine.begin() as conn:  # bookkeeping, not a change of anyone's record: no audit entry
            worker_store.register_worker(conn, self.worker_id, socket.gethostname(), os.getpid())
        self._registered = True
        self._renewed = time.monotonic()
        if self.shared:
            self._thread = threading.Thread(target=self._renew_forever, daemon=True, name="runledger-lease")
            self._thread.start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            self.renew()

    def renew(self) -> bool:
        try:
            with self.ws.engine.begin() as conn:
                still = worker_store.renew_lease(conn, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - the database unreachable: holds() turns false in time
            log.warning("worker %s could not renew its lease: %s", self.worker_id, exc)
            return False
        if still:
            self._renewed = time.monotonic()
        else:
            log.error("worker %s was stopped in the workspace; it takes no more work", self.worker_id)
        return still

    def holds(self) -> bool:
        """Whether this worker may still act on what it holds: no other worker can have taken it over."""
        if not self.shared:
            return True
        return time.monotonic() - self._renewed < self.seconds / 2

    def lapsed_workers(self) -> set[str | None]:
        """The workers whose work this one may take over (None: work no worker is named on)."""
        with self.ws.read() as conn:
            lapsed: set[str | None] = set(worker_store.read_lapsed_workers(
                conn, self.seconds if self.shared else 0, alive=[self.worker_id]))
        lapsed.add(None)
        return lapsed

    def stop(self) -> None:
        """A clean shutdown: renewals end and the workspace is told, so nothing waits for the lease to lapse."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._registered:
            try:
                with self.ws.engine.begin() as conn:
                    worker_store.stop_worker(conn, self.worker_id)
            except Exception as exc:  # noqa: BLE001 - shutting down: the lease lapses on its own
                log.warning("worker %s could not record its stop: %s", self.worker_id, exc)
            self._registered = False
            # Should the engine work again, it is a new worker: the stopped one's work is anyone's.
            self.worker_id, self._stop = _new_worker_id(), threading.Event()

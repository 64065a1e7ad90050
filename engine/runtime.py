"""The engine: definitions, triggers, the executor and recovery, wired around one workspace.

``Engine.start()`` is the live mode (APScheduler's BackgroundScheduler fires cron triggers and polls
for new trigger events and due retries); the simulated quarter calls the same methods directly while
it moves a simulated clock, so both exercise exactly the same code.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from engine.actioners.base import ActionContext
from engine.actioners.messaging import MessagingIntegration
from engine.actioners.modules import default_actioners
from engine.catalog import DefinitionCatalog
from engine.clock import Clock, SystemClock
from engine.definitions import LoadReport
from engine.executor import Executor
from engine.intake import start_intake
from engine.status import settle_run_status
from store import items as item_store
from store import runs as run_store
from store.registers import record_trigger_event
from store.workspace import Workspace

log = logging.getLogger("runledger.engine")


def schedule_event_id(definition_id: str, fire_time: dt.datetime) -> str:
    """One id per (definition, fire time): a fire repeated after a restart finds its event exists."""
    return f"SCH-{definition_id}-{fire_time.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}"


class Engine:
    def __init__(self, ws: Workspace, clock: Clock | None = None, definitions_dir: str | Path = "definitions",
                 messaging_latency: float = 0.0, batch_max: int = 4000, actioners: dict[str, Any] | None = None,
                 batch_target_seconds: float = 0.5, intake_port: int | None = None) -> None:
        self.ws = ws
        self.clock = clock or SystemClock()
        self.definitions_dir = Path(definitions_dir)
        self.catalog = DefinitionCatalog(ws)
        self.messaging = MessagingIntegration(ws, self.clock, messaging_latency)
        ctx = ActionContext(self.clock, {"messaging": self.messaging})
        self.executor = Executor(ws, self.clock, self.catalog, actioners or default_actioners(), ctx,
                                 batch_max=batch_max, batch_target_seconds=batch_target_seconds)
        self.scheduler: BackgroundScheduler | None = None
        self.intake_port = intake_port  # None: $RUNLEDGER_INTAKE_PORT or the default; 0: any free port
        self.intake: Any = None  # the intake endpoint (engine.intake.IntakeServer) while live
        self._dispatch_lock = threading.Lock()
        self._workers: list[threading.Thread] = []  # background runs started by "run now"

    # --- definitions --------------------------------------------------------------------------------
    def load_definitions(self, actor: str = "engine:loader") -> LoadReport:
        report = self.catalog.load_directory(self.definitions_dir, actor)
        for err in report.errors:
            log.warning("definition rejected: %s", err)
        return report

    # --- triggers -----------------------------------------------------------------------------------
    def fire(self, definition_id: str, fire_time: dt.datetime | None = None, kind: str = "schedule",
             actor_name: str | None = None, background: bool = False) -> list[str]:
        """A schedule fire (or a member's run now): record its trigger event, then dispatch it."""
        at = fire_time or self.clock.now()
        with self.ws.transaction() as tx:
            if kind == "schedule":
                event_id = schedule_event_id(definition_id, at)
                if run_store.read_event(tx.conn, event_id) is not None:
                    return []
                record_trigger_event(tx, kind="schedule", event_type="schedule.fired", source="scheduler",
                                     occurred_at=at, definition_id=definition_id, event_id=event_id)
            else:
                record_trigger_event(tx, kind="manual", event_type="run.requested",
                                     source=actor_name or "engine", occurred_at=at,
                                     definition_id=definition_id)
        return self.dispatch_events(background=background)

    def dispatch_events(self, background: bool = False) -> list[str]:
        """Turn every undispatched trigger event into runs (one per listening definition) and run them.

        ``background``: return the new run ids at once and execute them on a worker thread (a member's
        "run now" in the browser must not wait for, nor be unable to cancel, a long run)."""
        started: list[tuple[str, str]] = []
        with self._dispatch_lock:
            with self.ws.read() as conn:
                events = run_store.read_undispatched_events(conn)
            for event in events:
                actor = self._trigger_actor(event)
                with self.ws.transaction() as tx:
                    for d, version in self.catalog.listeners(event):
                        run_id = run_store.create_run(tx, definition_id=d.id, definition_version=version,
                                                      event=event, actor=actor)
                        if run_id:
                            started.append((run_id, actor))
                    run_store.mark_event_dispatched(tx, event["event_id"])
        if background and started:
            worker = threading.Thread(target=self._execute_started, args=(started,), daemon=True,
                                      name="runledger-run-now")
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
        else:
            self._execute_started(started)
        return [r for r, _ in started]

    def _execute_started(self, started: list[tuple[str, str]]) -> None:
        for run_id, actor in started:
            self.executor.match_run(run_id, actor)
            self.executor.execute_run(run_id, actor)

    @staticmethod
    def _trigger_actor(event: dict[str, Any]) -> str:
        if event["kind"] == "schedule":
            return f"schedule:{event['definition_id']}"
        if event["kind"] == "manual":
            return str(event["source"])
        if event["kind"] == "signal":
            return f"signal:{event['source']}"
        return f"event:{event['event_type']}"

    # --- retries and recovery -----------------------------------------------------------------------
    def process_due_retries(self) -> int:
        """Automatic retries whose backoff has elapsed on the engine's clock."""
        actor = "engine:retry-policy"
        with self.ws.transaction() as tx:
            taken = item_store.claim_due_retries(tx, self.clock.now())
            for item in taken:
                tx.audit(actor, "item.retry_started", "run_item", item["item_id"],
                         {"run_id": item["run_id"], "attempt": item["attempts"] + 1})
        by_run: dict[str, list[dict[str, Any]]] = {}
        for item in taken:
            by_run.setdefault(item["run_id"], []).append(item)
        for run_id, batch in by_run.items():
            with self.ws.read() as conn:
                run = run_store.read_run(conn, run_id)
            self.executor.process_items(run, batch, actor)
        return len(taken)

    def recover(self) -> list[str]:
        """Finish runs a crash interrupted: replay in-flight items with their keys, then go on."""
        actor = "engine:recovery"
        recovered = []
        with self.ws.read() as conn:
            open_runs = run_store.read_open_runs(conn)
        for run in open_runs:
            with self.ws.read() as conn:
                counts = run_store.read_run_facts(conn, run).outcome_counts
            if run["started_at"] is not None and not counts.get("pending") and not counts.get("in-flight"):
                continue  # waiting on approvals or scheduled retries: nothing was interrupted
            recovered.append(run["run_id"])
            with self.ws.transaction() as tx:
                tx.audit(actor, "run.recovery_started", "run", run["run_id"], {"status": run["status"]})
            if run["started_at"] is None and not run["failure_cause"]:
                self.executor.match_run(run["run_id"], actor)
            with self.ws.read() as conn:
                in_flight = item_store.read_in_flight_items(conn, run["run_id"])
                run = run_store.read_run(conn, run["run_id"])
            if in_flight:
                self.executor.process_items(run, in_flight, actor)
            self.executor.execute_run(run["run_id"], actor)
            with self.ws.transaction() as tx:
                settle_run_status(tx, run["run_id"], actor)
        self.dispatch_events()
        return recovered

    # --- live mode ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover, let APScheduler fire cron triggers and poll events and retries, then open the intake."""
        if self.scheduler is not None:
            return
        self.load_definitions()
        self.recover()
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True,
                                                                          "max_instances": 1})
        self.scheduler.add_job(self.dispatch_events, "interval", seconds=2, id="dispatch-events")
        self.scheduler.add_job(self.process_due_retries, "interval", seconds=5, id="due-retries")
        self.reschedule()
        self.scheduler.start()
        self.intake = start_intake(self, self.intake_port)

    def reschedule(self) -> None:
        """(Re)create one cron job per enabled schedule definition."""
        if self.scheduler is None:
            return
        for job in self.scheduler.get_jobs():
            if job.id.startswith("schedule:"):
                job.remove()
        for d, _ in self.catalog.in_effect():
            if d.trigger.kind == "schedule":
                self.scheduler.add_job(self._fire_scheduled, d.trigger.cron_trigger(), args=[d.id],
                                       id=f"schedule:{d.id}", misfire_grace_time=3600)

    def _fire_scheduled(self, definition_id: str) -> None:
        fire_time = self.clock.now().replace(second=0, microsecond=0)
        self.fire(definition_id, fire_time)

    def next_fire_times(self) -> dict[str, dt.datetime | None]:
        out: dict[str, dt.datetime | None] = {}
        now = self.clock.now()
        for d, _ in self.catalog.in_effect():
            if d.trigger.kind == "schedule":
                out[d.id] = d.trigger.cron_trigger().get_next_fire_time(None, now)
        return out

    def shutdown(self) -> None:
        for worker in self._workers:  # a run started in the background finishes its batch and settles
            worker.join(timeout=60)
        self._workers = []
        if self.intake is not None:  # first: no new requests, and those in flight finish
            self.intake.stop()
            self.intake = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

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
from apscheduler.triggers.cron import CronTrigger

from core.definitions import LoadReport
from core.states import IN_FLIGHT, ITEM_PENDING, OPEN_RUN_STATUSES
from engine.actioners.base import ActionContext
from engine.actioners.modules import default_actioners
from engine.alerts import deliver_due_alerts
from engine.catalog import DefinitionCatalog
from engine.clock import Clock, SystemClock
from engine.executor import Executor
from engine.integrations.loading import IntegrationLoadReport, load_integration_folder, resolve_integrations_dir
from engine.registers import RegisterLoadReport, load_register_folder, resolve_registers_dir
from engine.resume import is_interrupted, resume_every_seconds
from engine.scheduled_imports import import_definition_id, run_scheduled_import, sourced_registers
from engine.status import settle_run_status
from store import items as item_store
from store import runs as run_store
from store import workers as worker_store
from store.errors import WriteFailed
from store.subjects import record_trigger_event, record_trigger_event_once
from store.workspace import Workspace

log = logging.getLogger("runledger.engine")


def schedule_event_id(definition_id: str, fire_time: dt.datetime) -> str:
    """One id per (definition, fire time): a fire repeated after a restart finds its event exists."""
    return f"SCH-{definition_id}-{fire_time.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


class Engine:
    def __init__(self, ws: Workspace, clock: Clock | None = None, definitions_dir: str | Path = "definitions",
                 batch_max: int = 4000, actioners: dict[str, Any] | None = None,
                 batch_target_seconds: float = 0.5, intake_port: int | None = None,
                 registers_dir: str | Path | None = None, integrations_dir: str | Path | None = None) -> None:
        self.ws = ws
        self.clock = clock or SystemClock()
        self.definitions_dir = Path(definitions_dir)
        self.registers_dir = resolve_registers_dir(registers_dir, definitions_dir)
        self.integrations_dir = resolve_integrations_dir(integrations_dir, definitions_dir)
        self.catalog = DefinitionCatalog(ws)
        # The declared integrations' actioners, by name ("email:messaging"): actioners that send through one
        # (an evidence request's e-mail) find it here; filled in place each time the folder loads.
        self.integration_actioners: dict[str, Any] = {}
        ctx = ActionContext(self.clock, {"integrations": self.integration_actioners})
        self._actioners = actioners or default_actioners()  # given ones win over declared integrations
        self.executor = Executor(ws, self.clock, self.catalog, dict(self._actioners), ctx,
                                 batch_max=batch_max, batch_target_seconds=batch_target_seconds)
        self.integrations = IntegrationLoadReport()
        self.scheduler: BackgroundScheduler | None = None
        self.intake_port = intake_port  # None: $RUNLEDGER_INTAKE_PORT or the default; 0: any free port
        self.intake: Any = None  # the intake endpoint (engine.intake.server.IntakeServer) while live
        self._dispatch_lock = threading.Lock()
        self._workers: list[threading.Thread] = []  # background runs started by "run now"

    # --- definitions --------------------------------------------------------------------------------
    def load_registers(self, actor: str = "engine:loader") -> RegisterLoadReport:
        """The registers folder first: definitions are checked against the registers it declares."""
        return load_register_folder(self.ws, self.registers_dir, actor)

    def load_integrations(self, actor: str = "engine:loader") -> IntegrationLoadReport:
        """The integrations folder: versions taken into the workspace, actioners built for definitions."""
        self.integrations, built = load_integration_folder(self.ws, self.integrations_dir, actor)
        self.integration_actioners.clear()
        self.integration_actioners.update(built)
        self.executor.actioners = {**built, **self._actioners}
        return self.integrations

    def load_definitions(self, actor: str = "engine:loader") -> LoadReport:
        """The registers and integrations, then the definitions (checked against them)."""
        self.load_registers(actor)
        self.load_integrations(actor)
        report = self.catalog.load_directory(self.definitions_dir, actor)
        for err in report.errors:
            log.warning("definition rejected: %s", err)
        return report

    # --- triggers -----------------------------------------------------------------------------------
    def fire(self, definition_id: str, fire_time: dt.datetime | None = None, kind: str = "schedule",
             actor_name: str | None = None, background: bool = False) -> list[str]:
        """A schedule fire (or a member's run now): record its trigger event, dispatch it, and return the
        runs *that event* started — read back, as the scheduler's event poll may dispatch it first (and the
        runs this call dispatches may include other events' runs)."""
        at = fire_time or self.clock.now()
        with self.ws.transaction() as tx:
            if kind == "schedule":
                event_id = schedule_event_id(definition_id, at)
                if not record_trigger_event_once(tx, event_id=event_id, kind="schedule", event_type="schedule.fired",
                                                 source="scheduler", occurred_at=at, definition_id=definition_id):
                    return []  # this occurrence was fired already (here, or by another process)
            else:
                event_id = record_trigger_event(tx, kind="manual", event_type="run.requested",
                                                source=actor_name or "engine", occurred_at=at,
                                                definition_id=definition_id)
                # A member's "run now" is the member's act: audited under their name, not only as the
                # trigger event it recorded.
                tx.audit(actor_name or "engine", "run.requested", "definition", definition_id,
                         {"event_id": event_id})
        self.dispatch_events(background=background)
        with self.ws.read() as conn:
            return run_store.read_run_ids_for_event(conn, event_id)

    def dispatch_events(self, background: bool = False) -> list[str]:
        """Turn every undispatched trigger event into runs (one per listening definition) and run them.

        ``background``: return the new run ids at once and execute them on a worker thread (a member's
        "run now" in the browser must not wait for, nor be unable to cancel, a long run)."""
        started: list[tuple[str, str]] = []
        with self._dispatch_lock:
            while True:  # every event waiting, not only the first page of them (an import raises thousands)
                with self.ws.read() as conn:
                    events = run_store.read_undispatched_events(conn)
                if not events:
                    break
                started += self._dispatch(events)
        if background and started:
            worker = threading.Thread(target=self._execute_started, args=(started,), daemon=True,
                                      name="runledger-run-now")
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
        else:
            self._execute_started(started)
        return [r for r, _ in started]

    def _dispatch(self, events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Runs for one page of events, each event with listeners in its own transaction; those no
        definition listens to are marked dispatched together."""
        started: list[tuple[str, str]] = []
        in_effect = self.catalog.in_effect()
        heard = {e["event_id"]: self.catalog.listeners(e, in_effect) for e in events}
        unheard = [e["event_id"] for e in events if not heard[e["event_id"]]]
        if unheard:
            with self.ws.transaction() as tx:
                run_store.mark_events_dispatched(tx, unheard)
        worker = self.executor.worker()
        for event in events:
            if not heard[event["event_id"]]:
                continue
            actor = self._trigger_actor(event)
            created: list[str] = []
            try:
                with self.ws.transaction() as tx:
                    if not run_store.claim_event(tx, event["event_id"]):
                        continue  # another process on the same database dispatched it
                    for d, version in heard[event["event_id"]]:
                        run_id = run_store.create_run(tx, definition_id=d.id, definition_version=version,
                                                      event=event, actor=actor, worker=worker)
                        if run_id:
                            # Held from before it exists for others until its work is done: a run
                            # between its creation and its matching is not interrupted work.
                            self.executor.work.hold([run_id])
                            created.append(run_id)
            except BaseException:
                self.executor.work.release(created)
                raise
            started += [(run_id, actor) for run_id in created]
        return started

    def _execute_started(self, started: list[tuple[str, str]]) -> None:
        """Match and execute each created run, then release the holds ``dispatch_events`` took on them
        (all of them, even if one fails: the others are then work nobody holds, which resuming finishes)."""
        try:
            for run_id, actor in started:
                self.executor.match_run(run_id, actor)
                self.executor.execute_run(run_id, actor)
        finally:
            self.executor.work.release(r for r, _ in started)

    @staticmethod
    def _trigger_actor(event: dict[str, Any]) -> str:
        if event["kind"] == "schedule":
            return f"schedule:{event['definition_id']}"
        if event["kind"] == "manual":
            return str(event["source"])
        if event["kind"] == "signal":
            return f"signal:{event['source']}"
        return f"event:{event['event_type']}"

    # --- alerts --------------------------------------------------------------------------------------
    def deliver_alerts(self) -> int:
        """Send the queued alerts that are due (``engine.alerts``); a failed one waits for its next try."""
        return deliver_due_alerts(self.ws, self.executor.actioners, self.executor.ctx)

    # --- retries and recovery -----------------------------------------------------------------------
    def process_due_retries(self) -> int:
        """Automatic retries whose backoff has elapsed on the engine's clock."""
        actor = "engine:retry-policy"
        worker = self.executor.worker()
        with self.ws.transaction() as tx:
            taken = item_store.claim_due_retries(tx, self.clock.now(), worker=worker)
            for item in taken:
                tx.audit(actor, "item.retry_started", "run_item", item["item_id"],
                         {"run_id": item["run_id"], "attempt": item["attempts"] + 1})
            for run_id in dict.fromkeys(item["run_id"] for item in taken):
                settle_run_status(tx, run_id, actor)  # its counts: these items are in flight, not failed
        by_run: dict[str, list[dict[str, Any]]] = {}
        for item in taken:
            by_run.setdefault(item["run_id"], []).append(item)
        for run_id, batch in by_run.items():
            with self.ws.read() as conn:
                run = run_store.require_run(conn, run_id)
            self.executor.process_items(run, batch, actor)
        return len(taken)

    def recover(self) -> list[str]:
        """At start: finish the work a crash interrupted — on DuckDB every other worker's (one process holds the
        file), on PostgreSQL that of workers whose lease lapsed — replaying in-flight items with their keys."""
        recovered = self._take_over("engine:recovery", "run.recovery_started", at_start=True)
        self.dispatch_events()
        return recovered

    def resume_interrupted(self) -> list[str]:
        """Finish the open runs nobody is working on any more (``engine.resume``, ``engine.lease``): those of
        workers whose lease lapsed (a worker that died), and this process's own that a failed write stopped,
        once the workspace can be written again. A live engine does this every ``RUNLEDGER_RESUME_SECONDS``;
        a failure to write again leaves them for the next time."""
        return self._take_over("engine:resume", "run.resumed", at_start=False)

    def _take_over(self, actor: str, event: str, at_start: bool) -> list[str]:
        worker = self.executor.worker()
        lapsed = self.executor.lease.lapsed_workers()
        with self.ws.read() as conn:
            open_runs = run_store.read_open_runs(conn)
            stranded = worker_store.read_held_in_flight(conn, lapsed)  # retries, approvals of dead workers
        taken = []
        for run in open_runs:
            run_id, owner = run["run_id"], run["worked_by"]
            if self.executor.work.is_held(run_id):
                continue  # a thread of this process works it now
            if owner == worker and not at_start:  # this process's own: only once a failed write stopped it
                with self.ws.read() as conn:
                    last_written = item_store.read_unfinished_written_at(conn, run_id)
                if not is_interrupted(False, run["started_at"] is not None, last_written, self.ws.now()):
                    continue
            elif owner != worker and owner not in lapsed and run_id not in stranded:
                continue  # a live worker works it
            if not self._has_unfinished_work(run):
                continue  # waiting on approvals or scheduled retries: nothing was interrupted
            with self.executor.work.holding(run_id):
                try:
                    took = self._take_over_run(run, worker, lapsed, actor, event)
                except WriteFailed as exc:  # nothing of the attempt was saved; the next round tries again
                    log.error("run %s: still cannot be resumed: %s It is tried again in %g s.", run_id, exc,
                              resume_every_seconds())
                    continue
                if took:
                    taken.append(run_id)
        return taken

    def help_with_runs(self) -> int:
        """Work pending items of runs other live workers are working (PostgreSQL: a big run's items are
        shared by the fleet, each claim skipping the rows another holds); the number of runs helped."""
        if self.ws.is_duckdb:
            return 0  # one process: there is no other worker to help
        worker = self.executor.worker()
        with self.ws.read() as conn:
            live = {w["worker_id"] for w in worker_store.read_live_workers(conn, self.executor.lease.seconds)}
            runs = [r for r in run_store.read_open_runs(conn)
                    if r["items_pending"] and r["started_at"] is not None and r["worked_by"] in live - {worker}
                    and r["cancel_requested_at"] is None]
        helped = 0
        for run in runs:
            if self.executor.work.is_held(run["run_id"]):
                continue
            with self.ws.read() as conn:
                event = run_store.read_event(conn, run["trigger_event_id"])
            actor = self._trigger_actor(event) if event else "engine:worker"
            self.executor.execute_run(run["run_id"], actor, helping=True)
            helped += 1
        return helped

    def _has_unfinished_work(self, run: dict[str, Any]) -> bool:
        if run["started_at"] is None and not run["failure_cause"]:
            return True  # never matched
        with self.ws.read() as conn:
            counts = run_store.read_run_facts(conn, run).outcome_counts
        return bool(counts.get(ITEM_PENDING) or counts.get(IN_FLIGHT))

    def _take_over_run(self, run: dict[str, Any], worker: str, lapsed: set[str | None], actor: str,
                       event: str) -> bool:
        """Take what is left of the run (``store.workers.take_over_run``), audited with whom it was taken
        from, then match it if it never was, replay the in-flight items now held here, work its pending ones
        (if the run itself is this worker's now) and settle it."""
        run_id = run["run_id"]
        with self.ws.transaction() as tx:
            took_run, n_items = worker_store.take_over_run(tx.conn, run_id, worker, lapsed)
            if not took_run and not n_items:
                return False  # another worker took it first
            payload: dict[str, Any] = {"status": run["status"], "worker": worker}
            if run["worked_by"] not in (None, worker):
                payload["taken_from"] = run["worked_by"]
            if n_items:
                payload["in_flight_items_taken"] = n_items
            tx.audit(actor, event, "run", run_id, payload)
        if run["worked_by"] in (None, worker):
            log.warning("run %s: resuming work that stopped unfinished (a write that failed earlier, or a process "
                        "that ended); in-flight items are replayed with their idempotency keys", run_id)
        else:
            log.warning("run %s: taking over from worker %s, whose lease lapsed; in-flight items are replayed "
                        "with their idempotency keys", run_id, run["worked_by"])
        if not self._still_open(run_id):
            return True
        if took_run and run["started_at"] is None and not run["failure_cause"]:
            self.executor.match_run(run_id, actor)
        with self.ws.read() as conn:
            in_flight = item_store.read_in_flight_items(conn, run_id, held_by=worker)
            run = run_store.require_run(conn, run_id)
        if in_flight:
            self.executor.process_items(run, in_flight, actor)
        if took_run:
            self.executor.execute_run(run_id, actor)
        with self.ws.transaction() as tx:
            settle_run_status(tx, run_id, actor)
        return True

    def _still_open(self, run_id: str) -> bool:
        with self.ws.read() as conn:
            run = run_store.read_run(conn, run_id)
        return run is not None and run["status"] in OPEN_RUN_STATUSES

    # --- live mode ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover, and let APScheduler fire cron triggers and poll events and retries. (``engine.serve.
        start_live`` also opens the intake endpoint, which reaches the engine, never the other way.)"""
        if self.scheduler is not None:
            return
        self.load_definitions()
        self.recover()
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True,
                                                                          "max_instances": 1})
        self.scheduler.add_job(self.dispatch_events, "interval", seconds=2, id="dispatch-events")
        self.scheduler.add_job(self.help_with_runs, "interval", seconds=2, id="help-with-runs")
        self.scheduler.add_job(self.process_due_retries, "interval", seconds=5, id="due-retries")
        self.scheduler.add_job(self.deliver_alerts, "interval", seconds=5, id="deliver-alerts")
        self.scheduler.add_job(self.resume_interrupted, "interval", seconds=resume_every_seconds(),
                               id="resume-interrupted")
        self.reschedule()
        self.scheduler.start()

    def reschedule(self) -> None:
        """(Re)create one cron job per enabled schedule definition."""
        if self.scheduler is None:
            return
        for job in self.scheduler.get_jobs():
            if job.id.startswith(("schedule:", "import:")):
                job.remove()
        for d, _ in self.catalog.in_effect():
            if d.trigger.kind == "schedule":
                self.scheduler.add_job(self._fire_scheduled, d.trigger.cron_trigger(), args=[d.id],
                                       id=f"schedule:{d.id}", misfire_grace_time=3600)
        for reg, source in sourced_registers(self):  # each declared source, read on its own schedule
            self.scheduler.add_job(self._import_scheduled, CronTrigger.from_crontab(source.schedule, timezone="UTC"),
                                   args=[reg.kind], id=import_definition_id(reg.kind), misfire_grace_time=3600)

    def _import_scheduled(self, register_id: str) -> None:
        run_scheduled_import(self, register_id)

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
        self.executor.lease.stop()  # what it still holds may be taken over at once

"""Seed the demo workspace: the credit union's world run by the real engine on a simulated clock.

From 2026-06-30 to the present, the clock moves from one happening to the next; schedule fires come from
APScheduler's cron triggers, world changes go through the registers (raising events), signals through
the intake path, and Sigrid's retries and approval decisions through the same engine commands the UI
uses. Nothing here writes a run, an item or an outcome directly.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.integrations import load_integration_files
from demo.folders import demo_data_folder
from demo.gateway import DemoGateway, outages_path, save_outages
from demo.world import KYC_CRON, SUPPLIER_CRON, World, build_world, fire_times
from engine import commands
from engine.actioners.modules import EvidenceRequestsActioner
from engine.authz import hash_password, load_actor
from engine.clock import SimulatedClock, SystemClock
from engine.runtime import Engine
from engine.signals import deliver_signal
from store import items as item_store
from store.imports import import_file
from store.members import count_members, create_member
from store.registers import read_registers
from store.runs import read_runs_table
from store.sources import create_source
from store.subjects import insert_subjects, load_rows
from store.workspace import Workspace

UTC = dt.UTC
DEMO_START = dt.datetime(2026, 6, 30, 0, 0, tzinfo=UTC)
DEMO_MEMBERS = {"sigrid": ("Sigrid Halvorsen", ["operator", "approver"]), "auditor": ("Internal Audit", ["auditor"]),
                "admin": ("Workspace Admin", ["admin"]), "viewer": ("Read-only Viewer", ["viewer"])}
MESSAGING_LATENCY_SECONDS = 10.0  # each delivery takes this long on the engine's clock


def workspace_is_empty(ws: Workspace) -> bool:
    with ws.read() as conn:
        return count_members(conn) == 0


def seed_members_and_sources(ws: Workspace) -> None:
    with ws.transaction() as tx:
        for member_id, (name, roles) in DEMO_MEMBERS.items():
            # Demo workspace only: each password equals the member's name.
            create_member(tx, member_id, name, hash_password(member_id), roles, "engine:demo")
        create_source(tx, "regulator-feed", secrets.token_hex(32), "rule_changes", "engine:demo")


def seed_demo(path: str, definitions_dir: str | Path = "definitions", until: dt.datetime | None = None,
              seed: int = 2026, say: Callable[[str], None] = print) -> Engine:
    """Build the demo workspace at ``path`` (which must be empty) and return its engine."""
    until = until or SystemClock().now()
    t0 = time.monotonic()
    clock = SimulatedClock(DEMO_START)
    ws = Workspace(path, now=clock.now)
    if not workspace_is_empty(ws):
        raise RuntimeError(f"{path} already holds a workspace; the demo seeds only an empty one")
    # A batch spans about a simulated minute, so the per-batch re-check sees changes made meanwhile.
    engine = Engine(ws, clock, definitions_dir, batch_target_seconds=60)
    # The credit union's messaging gateway, where its integration file says it is, on the simulated clock:
    # started before anything is written, so a port in use refuses the seed with nothing half-made.
    try:
        gateway = DemoGateway(clock, *messaging_location(engine), latency_seconds=MESSAGING_LATENCY_SECONDS).start()
    except (OSError, RuntimeError):
        ws.close()
        raise
    try:
        _seed(engine, clock, gateway, path, seed, until, say)
    finally:
        gateway.stop()
    save_outages(outages_path(path), gateway.outages)
    ws.now = SystemClock().now  # from here on the workspace lives on the real clock
    with ws.read() as conn:
        n_runs = len(read_runs_table(conn, limit=100_000))
    say(f"Seeded {n_runs} runs in {time.monotonic() - t0:.1f} s; audit chain "
        f"{'intact' if ws.verify_audit().intact else 'BROKEN'}.")
    return engine


def _seed(engine: Engine, clock: SimulatedClock, gateway: DemoGateway, path: str, seed: int, until: dt.datetime,
          say: Callable[[str], None]) -> None:
    ws = engine.ws
    world = build_world(seed, until)
    say(f"Seeding the demo workspace {path} (seed {seed}), {DEMO_START:%Y-%m-%d} → {until:%Y-%m-%d %H:%M} UTC")
    seed_members_and_sources(ws)
    for refused in engine.load_registers(actor="member:admin").errors:
        say(f"  register rejected: {refused}")
    # The credit union's systems export their registers as files; the demo imports them as anyone would.
    data = demo_data_folder(path)
    for kind, rows in (("accounts", world.accounts), ("suppliers", world.suppliers),
                       ("incidents", world.incidents), ("exceptions", world.exceptions)):
        with ws.read() as conn:
            reg = read_registers(conn)[kind]
        file = write_csv(data / f"{kind}.csv", list(reg.fields), rows)
        with ws.transaction() as tx:
            import_file(tx, reg, file, actor="engine:demo")
    report = engine.load_definitions(actor="member:admin")
    for err in report.errors:
        say(f"  definition rejected: {err}")
    _play(engine, clock, gateway, world, until, say)


def messaging_location(engine: Engine) -> tuple[str, int]:
    """Where the engine's ``messaging`` integration sends (its integrations folder's messaging.yaml, located
    by the environment): the demo's gateway listens there."""
    found = load_integration_files(engine.integrations_dir, os.environ)
    for _, spec in found.integrations:
        if spec.id == EvidenceRequestsActioner.integration and spec.kind == "smtp":
            return spec.host, spec.port
    raise RuntimeError(f"the demo needs its messaging integration: {engine.integrations_dir}/messaging.yaml "
                       "is missing or refused" + "".join(f" ({e})" for e in found.errors))


def _play(engine: Engine, clock: SimulatedClock, gateway: DemoGateway, world: World, until: dt.datetime,
          say: Callable[[str], None]) -> None:
    ws = engine.ws
    sigrid = load_actor(ws, "sigrid")
    steps: list[tuple[dt.datetime, str, dict]] = []
    for d_id, cron in (("kyc-weekly-review", KYC_CRON), ("supplier-attestation-renewal", SUPPLIER_CRON)):
        steps += [(t, "fire", {"definition_id": d_id}) for t in fire_times(cron, DEMO_START, until)]
    for at, kind, data in world.happenings:
        if kind == "deactivate":  # happens while a run is delivering: the clock applies it in passing
            clock.call_at(at, functools.partial(_change, ws, "account.deactivated", data["account_id"], at))
        elif at < until:
            steps.append((at, kind, data))
    steps.sort(key=lambda s: s[0])
    month = None
    for at, kind, data in steps:
        _advance(engine, clock, at)
        if (at.year, at.month) != month:
            month = (at.year, at.month)
            say(f"  {at:%B %Y} …")
        if kind == "fire":
            engine.fire(data["definition_id"], at)
        elif kind == "outage":  # the gateway's own trouble: nothing of it is written in the workspace
            gateway.add_outage(data["starts_at"], data["ends_at"], data["reason"])
        elif kind == "aml_failure" or kind == "aml_pass":
            _aml(ws, at, data, failed=kind == "aml_failure")
            engine.dispatch_events()
        elif kind == "exception_closed":
            _change(ws, "exception.closed", data["exception_id"], at)
            engine.dispatch_events()
        elif kind == "incident_closed":
            _change(ws, "incident.closed", data["incident_id"], at)
            engine.dispatch_events()
        elif kind == "incident_review":
            with ws.transaction() as tx:
                insert_subjects(tx, "incident_reviews", [{"review_id": f"REV-{data['incident_id']}",
                                                          "incident_id": data["incident_id"],
                                                          "reviewer": "risk-office", "created_at": at}])
        elif kind == "signal":
            deliver_signal(engine, "regulator-feed", json.dumps(data))
        elif kind in ("approve", "dismiss"):
            item_id = _find_open_approval(engine, data)
            if kind == "approve":
                commands.approve_item(engine, sigrid, item_id)
            else:
                commands.dismiss_item(engine, sigrid, item_id, data["reason"])
        elif kind == "retry_failed_kyc":
            with ws.read() as conn:
                failed = item_store.read_failed_item_ids(conn, "kyc-weekly-review")
            for run_id in sorted({r for r, _ in failed}):
                commands.retry_run(engine, sigrid, run_id)
    _advance(engine, clock, until)


def _advance(engine: Engine, clock: SimulatedClock, at: dt.datetime) -> None:
    """Move the clock to ``at``, doing on the way any automatic retry that falls due."""
    while True:
        due = _next_retry_due(engine)
        if due is None or due > at:
            break
        clock.advance_to(max(due, clock.now()))
        engine.process_due_retries()
    clock.advance_to(max(at, clock.now()))


def _next_retry_due(engine: Engine) -> dt.datetime | None:
    with engine.ws.read() as conn:
        due = item_store.read_due_retries(conn, dt.datetime.max.replace(tzinfo=UTC))
        if not due:
            return None
        return min(item_store.require_item(conn, i)["retry_due_at"] for _, i in due)


# The world's changes as the credit union's systems report them: the fields each one sets.
CHANGES = {"account.deactivated": ("accounts", "account_id", {"status": "inactive"}, False),
           "incident.closed": ("incidents", "incident_id", {"status": "closed"}, True),
           "exception.closed": ("exceptions", "exception_id", {"status": "closed"}, True)}


def _change(ws: Workspace, event_type: str, subject_id: str, at: dt.datetime) -> None:
    """A world change loaded as any change is (through the one load path): the declared change it makes
    raises its event."""
    kind, key, values, stamps_closed = CHANGES[event_type]
    row = {key: subject_id, **values, **({"closed_at": at} if stamps_closed else {})}
    with ws.transaction() as tx:
        load_rows(tx, kind, [row], origin="demo", source="workspace", actor="engine:demo-world",
                  occurred_at=at, event_source="workspace")


def _aml(ws: Workspace, at: dt.datetime, data: dict, failed: bool) -> None:
    with ws.transaction() as tx:
        from store.subjects import new_event_id
        rid = f"AMR-{new_event_id(tx)[3:]}"
        row = {"result_id": rid, "monitor": data["monitor"], "account_id": data["account_id"],
               "result": "failed" if failed else "passed", "detail": data.get("detail", "within thresholds"),
               "observed_at": at}
        load_rows(tx, "aml_monitor_results", [row], origin="demo", source="aml-monitor", actor="engine:demo-world",
                  occurred_at=at, event_source="aml-monitor")  # a failed result raises its event


def _find_open_approval(engine: Engine, data: dict) -> str:
    with engine.ws.read() as conn:
        for a in item_store.read_open_approval_items(conn):
            snap = json.loads(a["subject_snapshot"])
            if a["subject_id"] == data.get("subject_id") or snap.get("reference") == data.get("reference"):
                return str(a["item_id"])
    raise LookupError(f"no open approval for {data}")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    """The rows as the CSV file a system would export (ISO dates and times; empty for nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])
    return path

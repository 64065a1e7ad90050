"""Intake while the app runs: a real ``python -m engine serve`` holds the workspace file, and signals and the
CLI's commands still reach it — signed, size-limited, replay-proof, answered and audited.

DuckDB only, by nature: the CLI forwards to the running engine because a DuckDB file admits one process (on
PostgreSQL every process writes the workspace itself: tests/test_fleet_processes.py).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.main import main as cli_main
from demo.seed import seed_members_and_sources
from engine.intake.server import discovery_path, sign
from engine.runtime import Engine
from engine.signals import MAX_PAYLOAD_BYTES
from store.schema import audit_log, intake_requests, runs
from store.sources import read_source
from store.subjects import insert_subjects
from store.workspace import Workspace
from tests.support import demo_workspace

REPO = Path(__file__).resolve().parents[1]
DEFINITIONS = REPO / "definitions"
RULE_CHANGE = {"reference": "EBA/GL/2026/07", "regulator": "EBA", "title": "Outsourcing register update"}


def seed_workspace(db: Path) -> str:
    """Members, the regulator-feed source, one open incident and the definitions; returns the feed's secret."""
    ws = demo_workspace(db)
    try:
        seed_members_and_sources(ws)
        now = dt.datetime.now(dt.UTC)
        with ws.transaction() as tx:
            insert_subjects(tx, "incidents", [{"incident_id": "INC-701", "title": "Card payments outage",
                                               "severity": "high", "owner": "ops", "status": "open",
                                               "opened_at": now}])
        report = Engine(ws, definitions_dir=DEFINITIONS).load_definitions(actor="member:admin")
        assert not report.errors
        with ws.read() as conn:
            return read_source(conn, "regulator-feed")["secret"]
    finally:
        ws.close()


@dataclass
class Served:
    db: Path
    proc: subprocess.Popen
    info: dict[str, Any]
    log: Path

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.info["port"], timeout=20)
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0, self.log.read_text()


def env() -> dict[str, str]:
    return {**os.environ, "RUNLEDGER_INTAKE_PORT": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@contextmanager
def serving(db: Path) -> Iterator[Served]:
    log = db.with_suffix(".serve.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "--db", str(db), "--definitions",
                                 str(DEFINITIONS), "serve"], cwd=REPO, env=env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        found = Path(discovery_path(str(db)))
        deadline = time.monotonic() + 30
        info: dict[str, Any] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if found.exists():
                info = json.loads(found.read_text())
                if info.get("pid") == proc.pid:
                    break
            time.sleep(0.1)
        assert info.get("pid") == proc.pid, f"the engine did not publish its endpoint:\n{log.read_text()}"
        yield Served(db, proc, info, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def run_cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO, env=env(), input=stdin,
                          capture_output=True, text=True, timeout=60)


def signed(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    return {"X-Runledger-Timestamp": stamp, "X-Runledger-Signature": sign(secret, stamp, body),
            "Content-Type": "application/json"}


def intake_audit(db: Path) -> list[dict[str, Any]]:
    ws = Workspace(str(db))
    try:
        with ws.read() as conn:
            rows = conn.execute(sa.select(audit_log.c.actor, audit_log.c.event, audit_log.c.entity_id,
                                          audit_log.c.payload)
                                .where(audit_log.c.event.like("intake.%")).order_by(audit_log.c.seq)).mappings()
            return [{**r, "payload": json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]}
                    for r in rows]
    finally:
        ws.close()


@pytest.mark.slow  # a served engine and a CLI process per command
def test_cli_commands_go_through_the_running_engine(tmp_path: Path) -> None:
    db = tmp_path / "ws.duckdb"
    seed_workspace(db)
    payload = tmp_path / "rule-change.json"
    payload.write_text(json.dumps(RULE_CHANGE))
    with serving(db) as served:
        info_file = Path(discovery_path(str(db)))
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
        assert info_file.read_text().count(served.info["cli_token"]) == 1 and len(served.info["cli_token"]) >= 32

        sig = run_cli("--db", str(db), "signal", "regulator-feed", "--payload", str(payload))
        assert sig.returncode == 0, sig.stdout + sig.stderr
        assert sig.stdout.startswith("signal accepted as EV-") and "runs started: RUN-" in sig.stdout
        signal_run = sig.stdout.strip().rsplit(" ", 1)[-1]

        emit = run_cli("--db", str(db), "emit", "incident.closed", "--subject", "INC-701")
        assert emit.returncode == 0, emit.stdout + emit.stderr
        assert "runs started: RUN-" in emit.stdout

        refused = run_cli("--db", str(db), "retry", signal_run, "--as", "viewer")
        assert refused.returncode == 1
        assert refused.stdout.startswith("refused: viewer may not retry run")

        approved = run_cli("--db", str(db), "approve", f"{signal_run}-000001", "--as", "sigrid")
        assert approved.returncode == 0, approved.stdout + approved.stderr
        assert approved.stdout.strip() == f"{signal_run}-000001: succeeded"

        verify = run_cli("--db", str(db), "verify-audit")
        assert verify.returncode != 0
        assert f"PID {served.proc.pid}" in verify.stdout and "held by another process" in verify.stdout
        assert "Nothing was changed" in verify.stdout

        served.stop()
        assert not info_file.exists()

    ws = Workspace(str(db))
    try:
        with ws.read() as conn:
            found = conn.execute(sa.select(runs.c.run_id, runs.c.trigger_source, runs.c.status)
                                 .order_by(runs.c.run_number)).all()
            remembered = conn.execute(sa.select(intake_requests.c.accepted)).scalars().all()
        assert (signal_run, "regulator-feed", "completed") in [tuple(r) for r in found]
        assert any(source == "cli" for _, source, _ in found)  # the emitted incident.closed
        assert sorted(remembered) == [False, True, True, True]
        assert ws.verify_audit().intact
    finally:
        ws.close()
    audit = intake_audit(db)
    assert [(a["event"], a["entity_id"], a["payload"]["status"]) for a in audit] == [
        ("intake.accepted", "POST /commands/signal", 200), ("intake.accepted", "POST /commands/emit", 200),
        ("intake.refused", "POST /commands/retry", 403), ("intake.accepted", "POST /commands/approve", 200)]

    lines: list[str] = []  # with no engine running, the CLI opens the file itself
    assert cli_main(["--db", str(db), "verify-audit"], out=lines.append) == 0
    assert lines[0].startswith("audit chain intact")


def test_endpoint_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    db = tmp_path / "ws.duckdb"
    secret = seed_workspace(db)
    body = json.dumps(RULE_CHANGE).encode()
    with serving(db) as served:
        feed = "/signals/regulator-feed"
        status, answer = served.post(feed, body, {"Content-Type": "application/json"})
        assert (status, answer["accepted"]) == (401, False) and "unsigned" in answer["message"]

        status, answer = served.post(feed, body, signed("not-the-secret", body))
        assert (status, answer["accepted"]) == (401, False) and "signature does not match" in answer["message"]

        status, answer = served.post(feed, body, signed(secret, body, ts=int(time.time()) - 900))
        assert status == 401 and "within 300 s" in answer["message"]

        good = signed(secret, body)
        status, answer = served.post(feed, body, good)
        assert (status, answer["accepted"]) == (200, True), answer
        assert answer["event_id"].startswith("EV-") and len(answer["runs"]) == 1

        status, answer = served.post(feed, body, good)
        assert (status, answer["accepted"]) == (409, False) and "already received" in answer["message"]

        big = json.dumps({**RULE_CHANGE, "title": "x" * MAX_PAYLOAD_BYTES}).encode()
        status, answer = served.post(feed, big, signed(secret, big))
        assert (status, answer["accepted"]) == (413, False) and "limit" in answer["message"]

        broken = b'{"reference": "EBA/GL/2026/08",'
        status, answer = served.post(feed, broken, signed(secret, broken))
        assert (status, answer["accepted"]) == (400, False) and "not valid JSON" in answer["message"]

        status, answer = served.post("/signals/unknown-feed", body, signed(secret, body))
        assert status == 404

        cmd = json.dumps({"run": "RUN-000001", "member": "sigrid"}).encode()
        status, answer = served.post("/commands/retry", cmd, signed(secret, cmd))  # a source secret is no CLI token
        assert status == 401

        served.stop()
    statuses = [(a["event"], a["payload"]["status"]) for a in intake_audit(db)]
    assert statuses == [("intake.refused", 401), ("intake.refused", 401), ("intake.refused", 401),
                        ("intake.accepted", 200), ("intake.refused", 409), ("intake.refused", 413),
                        ("intake.refused", 400), ("intake.refused", 404), ("intake.refused", 401)]

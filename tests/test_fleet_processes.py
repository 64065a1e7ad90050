"""Three engine workers and two app replicas on one PostgreSQL workspace (a real server), each a real process:
three ``python -m engine serve`` (each with its scheduler, dispatcher, retries, intake endpoint and takeover
loop) and two app processes issuing the members' commands (``tests/fleet_app.py``) — a cron occurrence every
minute, register changes that raise events, signals posted to an engine's intake, runs started by hand, a
webhook whose first answer is lost (retries), a cancel, approvals and dismissals, all at once.

At the end every invariant of the kill-anywhere harness holds (no key acted twice, records equal to the items
that acted, counts equal to items, one audit chain), each cron occurrence ran once, the tracker outside saw
no key with two bodies, and every command the replicas issued took effect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.workspace import Workspace
from tests.faults.invariants import rest_violations
from tests.pg_server import postgres_server
from tests.receivers import free_port, http_receiver

pytestmark = pytest.mark.slow  # a PostgreSQL server, five processes, a minute's cron occurrence

REPO = Path(__file__).resolve().parent.parent
ACCOUNTS = 60


def _definition(def_id: str, trigger: str, action: str, *, where: str = "", retry: int = 1) -> str:
    status = "inactive" if "deactivated" in trigger else "active"
    return textwrap.dedent("""\
        id: {def_id}
        title: Fleet {def_id}
        trigger: {trigger}
        condition:
          subject: accounts
          where:
            - {{field: status, op: eq, value: {status}, reason: changed}}{where}
        actions:
          - {action}
        policies:
          retry: {{max_attempts: {retry}, backoff_seconds: 0}}
        """).format(def_id=def_id, trigger=trigger, status=status, where=where, action=action, retry=retry)


FINDING = ('actioner: findings.create\n    params: {title: "Finding for {{ subject.name }}", severity: low, '
           'owner: "{{ subject.manager }}"}')
TICKET = ('actioner: webhook:tracker\n    params: {title: "Ticket for {{ subject.name }}", '
          'account: "{{ subject.account_id }}", run: "{{ trigger.event_id }}"}')
DEFINITIONS = {
    "minutely": _definition("minutely", '{kind: schedule, cron: "* * * * *"}', FINDING),
    "deactivated": _definition("deactivated", "{kind: event, event: account.deactivated}", FINDING),
    # Manual runs ("run now"): their weekly occurrence does not come during the test.
    "ticket": _definition("ticket", '{kind: schedule, cron: "0 6 * * mon"}', TICKET,
                          where="\n    - {field: manager, op: eq, value: m.1, reason: manager changed}", retry=2),
    "halt": _definition("halt", '{kind: schedule, cron: "0 6 * * mon"}', FINDING),
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _cli(url: str, root: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "engine", "--db", url, "--definitions", str(root / "definitions"),
                           "--registers", str(REPO / "registers"), "--integrations", str(root / "integrations"),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120, input=stdin,
                          env={**os.environ, "RUNLEDGER_DB": ""})
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _set_up(url: str, root: Path, tracker_url: str) -> str:
    """The organization: members, the accounts, the definitions (the demo's rule-change intake among them), an
    intake source for the regulator feed; returns that source's secret."""
    (root / "definitions").mkdir()
    (root / "integrations").mkdir()
    for def_id, text in DEFINITIONS.items():
        (root / "definitions" / f"{def_id}.yaml").write_text(text)
    (root / "definitions" / "rule-change.yaml").write_text(
        (REPO / "definitions" / "regulator-rule-change-intake.yaml").read_text())
    (root / "integrations" / "tracker.yaml").write_text(
        f"id: tracker\nkind: webhook\nurl: {tracker_url}/lost\nrecord_id: data.id\ntimeout_seconds: 10\n")
    for name, roles in (("ada", None), ("sigrid", "operator"), ("olga", "approver")):
        pw = root / f"{name}.pw"
        pw.write_text(f"{name}-correct-horse-battery\n")
        if roles is None:
            _cli(url, root, "init", "--admin", name, "--password-file", str(pw))
        else:
            _cli(url, root, "members", "add", name, "--roles", roles, "--password-file", str(pw), "--as", "ada")
    from store.subjects import load_rows

    ws = Workspace(url)
    try:
        from engine.runtime import Engine
        engine = Engine(ws, definitions_dir=root / "definitions", registers_dir=REPO / "registers",
                        integrations_dir=root / "integrations")
        report = engine.load_definitions(actor="member:ada")
        assert not report.errors, report.errors
        with ws.transaction() as tx:
            load_rows(tx, "accounts", [{"account_id": f"ACC-{i:03d}", "name": f"Member {i}", "manager": f"m.{i % 10}",
                                        "status": "active", "kyc_review_due": "2026-12-31", "risk_rating": "low"}
                                       for i in range(1, ACCOUNTS + 1)], origin="test", source="core-banking",
                      actor="member:ada")
        engine.shutdown()
    finally:
        ws.close()
    out = _cli(url, root, "sources", "add", "regulator-feed", "--register", "rule_changes", "--as", "ada")
    secret = next(line.split()[-1] for line in out.splitlines() if "secret" in line.lower())
    (root / "feed.secret").write_text(secret)
    return secret


def test_three_workers_and_two_app_replicas_share_one_workspace_and_every_invariant_holds(
        pg_url: str, tmp_path: Path) -> None:
    with http_receiver() as tracker:
        _set_up(pg_url, tmp_path, tracker.url)
        ports = [free_port() for _ in range(3)]
        env = {**os.environ, "RUNLEDGER_DB": "", "RUNLEDGER_LEASE_SECONDS": "3", "RUNLEDGER_RESUME_SECONDS": "1"}
        workers = [subprocess.Popen(
            [sys.executable, "-m", "engine", "--db", pg_url, "--definitions", str(tmp_path / "definitions"),
             "--registers", str(REPO / "registers"), "--integrations", str(tmp_path / "integrations"), "serve"],
            cwd=REPO, env={**env, "RUNLEDGER_INTAKE_PORT": str(port)}, stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"serve-{k}.log", "w"), text=True) for k, port in enumerate(ports)]
        try:
            for w in workers:  # each says it serves once recovered and scheduling
                assert w.stdout is not None and "engine serving" in w.stdout.readline()
            apps = [subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "fleet_app.py"), "--db", pg_url,
                 "--definitions", str(tmp_path / "definitions"), "--registers", str(REPO / "registers"),
                 "--integrations", str(tmp_path / "integrations"), "--role", role, "--intake", str(ports[k]),
                 "--secret-file", str(tmp_path / "feed.secret")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True) for k, role in enumerate("ab")]
            said = []
            for app in apps:
                out, err = app.communicate(timeout=300)
                assert app.returncode == 0, err[-3000:]
                said.append(json.loads(out.strip().splitlines()[-1].removeprefix("done ")))
            # At least one cron occurrence, fired by three schedulers, and its run worked to the end.
            deadline = time.monotonic() + 130
            while time.monotonic() < deadline and not _closed_minutely_runs(pg_url):
                time.sleep(1)
            _wait_at_rest(pg_url)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(60)
        assert [w.returncode for w in workers] == [0, 0, 0], [(tmp_path / f"serve-{k}.log").read_text()[-2000:]
                                                            for k in range(3)]
        did = [s["did"] for s in said]
        assert did[0]["run now"] == 2 and did[0]["event"] == 5 and did[1]["signal"] == 4

        ws = Workspace(pg_url)
        try:
            assert rest_violations(ws) == []
            with ws.read() as conn:
                q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
                # Each cron occurrence: one trigger event, one run, however many schedulers fired it.
                occurrences = q("SELECT event_id FROM trigger_events WHERE kind = 'schedule'")
                runs = q("SELECT trigger_event_id, count(*) FROM runs WHERE definition_id = 'minutely' GROUP BY 1")
                assert occurrences and sorted(e for (e,) in occurrences) == sorted(e for e, _ in runs)
                assert {n for _, n in runs} == {1}
                by_def = dict(q("SELECT definition_id, count(*) FROM runs GROUP BY 1"))
                assert by_def["ticket"] == 2 and by_def["halt"] == 1 and by_def["deactivated"] == 5
                assert by_def["regulator-rule-change-intake"] == 4
                tickets = dict(q("SELECT i.outcome, count(*) FROM run_items i JOIN runs r USING (run_id) "
                                 "WHERE r.definition_id = 'ticket' GROUP BY 1"))
                assert tickets == {"succeeded": 12}  # the lost first answers were retried, each key acted once
                decided = dict(q("SELECT decision, count(*) FROM approvals GROUP BY 1"))
                assert set(decided) <= {"approved", "dismissed"} and sum(decided.values()) == 4, decided
                assert sum(d.get("approve", 0) + d.get("dismiss", 0) for d in did) == 4
                workers_seen = q("SELECT count(DISTINCT worked_by) FROM runs")[0][0]
                assert workers_seen >= 3  # the work was spread over the fleet, not done by one process
            assert ws.verify_audit().intact
        finally:
            ws.close()
        bodies: dict[str, set[bytes]] = {}
        for request in tracker.requests:
            bodies.setdefault(request.key, set()).add(request.body)
        assert len(bodies) == 12 and all(len(b) == 1 for b in bodies.values())


def _closed_minutely_runs(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM runs WHERE definition_id = 'minutely' "
                                            "AND status = 'completed'")).scalar_one())
    finally:
        engine.dispose()


def _wait_at_rest(url: str, timeout: float = 90) -> None:
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(sa.text(
                    "SELECT (SELECT count(*) FROM run_items WHERE outcome IN ('pending', 'in-flight')) + "
                    "(SELECT count(*) FROM trigger_events WHERE dispatched_at IS NULL) + "
                    "(SELECT count(*) FROM run_items WHERE outcome = 'failed' AND retry_due_at IS NOT NULL)"
                )).scalar_one()
            if not left:
                return
            time.sleep(0.5)
    finally:
        engine.dispose()

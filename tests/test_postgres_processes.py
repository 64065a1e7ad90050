"""One PostgreSQL workspace, many processes: the first slice of running beyond one machine.

A real PostgreSQL server (tests/pg_server.py) and real CLI processes, started at the same moment:
- processes opening an empty database together create its schema once, and all of them open it;
- members' commands from several processes at once each take effect, and their audit entries form one
  chain — no gap, no fork, no raw ``UniqueViolation`` on ``audit_log.seq`` (four concurrent ``fire``
  commands used to leave two runs and two tracebacks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.migrations import SCHEMA_VERSION
from store.subjects import load_rows
from store.workspace import Workspace
from tests.pg_server import postgres_server

pytestmark = pytest.mark.slow  # a PostgreSQL server and a dozen CLI processes

REPO = Path(__file__).resolve().parent.parent
MERCHANTS = textwrap.dedent("""\
    id: merchants
    title: Merchants
    key: merchant_id
    label: name
    fields: {merchant_id: string, name: string, status: string, owner: string}
    events: {merchant.suspended: {field: status, becomes: suspended}}
    """)
REVIEW = textwrap.dedent("""\
    id: merchant-review
    title: Merchant review finding
    trigger: {kind: schedule, cron: "0 7 * * mon", timezone: UTC}
    condition:
      subject: merchants
      where:
        - {field: status, op: eq, value: active, reason: the merchant is no longer active}
    actions:
      - actioner: findings.create
        params: {title: "Review {{ subject.name }}", severity: low, owner: "{{ subject.owner }}"}
    """)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


class Org:
    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        for sub in ("registers", "definitions", "integrations"):
            (root / sub).mkdir()
        (root / "registers" / "merchants.yaml").write_text(MERCHANTS)
        (root / "definitions" / "merchant-review.yaml").write_text(REVIEW)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine", "--db", self.url, "--definitions", str(self.root / "definitions"),
                "--registers", str(self.root / "registers"), "--integrations", str(self.root / "integrations"),
                *args]

    def cli(self, *args: str) -> str:
        done = subprocess.run(self.command(*args), cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RUNLEDGER_DB": ""})
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def at_once(self, n: int, *args: str) -> list[subprocess.CompletedProcess[str]]:
        """``n`` processes running the same command, started together."""
        procs = [subprocess.Popen(self.command(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "RUNLEDGER_DB": ""}) for _ in range(n)]
        out = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=180)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        return out

    def query(self, sql: str) -> list[tuple]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql))]
        finally:
            engine.dispose()

    def password_file(self, name: str) -> str:
        path = self.root / f"{name}.pw"
        path.write_text(f"{name}-correct-horse-battery\n")
        path.chmod(0o600)
        return str(path)


OPENER = textwrap.dedent("""\
    import pathlib, sys, time
    url, folder = sys.argv[1], sys.argv[2]
    import store.workspace  # the imports first: the barrier below is about the opening alone
    pathlib.Path(f"{folder}/ready-{sys.argv[3]}").touch()
    while len(list(pathlib.Path(folder).glob("ready-*"))) < 4:
        time.sleep(0.001)
    store.workspace.Workspace(url).close()  # opening an empty database creates the schema
    """)


def test_processes_opening_an_empty_database_together_create_its_schema_once(pg_url: str, tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, pg_url, str(tmp_path), str(k)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 4, [err[-1500:] for _, err in results]
    org = Org(tmp_path, pg_url)
    assert org.query("SELECT key, value FROM schema_meta WHERE key = 'schema_version'") == [
        ("schema_version", str(SCHEMA_VERSION))]


def test_commands_from_many_processes_at_once_each_act_and_append_one_chain(pg_url: str, tmp_path: Path) -> None:
    org = Org(tmp_path, pg_url)
    org.cli("init", "--admin", "ada", "--password-file", org.password_file("ada"))
    org.cli("members", "add", "olga", "--roles", "operator", "--password-file", org.password_file("olga"),
            "--as", "ada")
    # Through the one load path (a file import reads the file with DuckDB: not yet on PostgreSQL).
    ws = Workspace(pg_url)
    try:
        with ws.transaction() as tx:
            load_rows(tx, "merchants", [{"merchant_id": f"M-{i}", "name": f"Merchant {i}", "status": "active",
                                         "owner": "olga"} for i in (1, 2)], origin="test", source="test",
                      actor="member:olga")
    finally:
        ws.close()

    done = org.at_once(4, "fire", "merchant-review", "--as", "olga")
    assert [(d.returncode, "Traceback" in d.stderr) for d in done] == [(0, False)] * 4, [d.stderr for d in done]
    started = sorted(d.stdout.strip().removeprefix("runs started: ") for d in done)
    assert started == sorted(r for (r,) in org.query("SELECT run_id FROM runs")) and len(set(started)) == 4
    assert org.query("SELECT status, count(*) FROM runs GROUP BY 1") == [("completed", 4)]
    assert org.query("SELECT outcome, count(*) FROM run_items GROUP BY 1") == [("succeeded", 8)]
    assert org.query("SELECT count(*) FROM findings") == [(8,)]
    # One chain: every sequence number once, from 1, and verify-audit walks it whole.
    [(first, last, n)] = org.query("SELECT min(seq), max(seq), count(*) FROM audit_log")
    assert (first, last) == (1, n)
    assert org.query("SELECT count(*) FROM audit_log WHERE event = 'run.requested' AND actor = 'member:olga'") == [
        (4,)]
    assert "intact" in org.cli("verify-audit")


WRITER = textwrap.dedent("""\
    import pathlib, sys, time
    from store.workspace import Workspace
    url, name, folder, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ws = Workspace(url)
    pathlib.Path(f"{folder}/ready-{name}").touch()  # every writer begins at the same instant
    while len(list(pathlib.Path(folder).glob("ready-*"))) < 4:
        time.sleep(0.001)
    for i in range(n):
        with ws.transaction() as tx:
            tx.audit(f"member:{name}", "test.appended", "test", f"{name}-{i}", {"i": i})
    ws.close()
    """)


def test_writers_on_four_processes_append_one_chain_without_a_fork(pg_url: str, tmp_path: Path) -> None:
    """Each writer's transaction reads the chain's head and appends after it: two at the same moment would
    both take the same next number. The append is serialised across processes (a transaction-scoped advisory
    lock), so every entry lands, each number once."""
    Workspace(pg_url).close()  # the schema, made once
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, f"w{k}", str(tmp_path), "60"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 4, [err[-1500:] for _, err in results]
    ws = Workspace(pg_url)
    try:
        with ws.read() as conn:
            rows = conn.execute(sa.text("SELECT min(seq), max(seq), count(*), count(DISTINCT entity_id) "
                                        "FROM audit_log WHERE event = 'test.appended'")).one()
        assert tuple(rows) == (1, 240, 240, 240)
        assert ws.verify_audit().intact
    finally:
        ws.close()


SCHEDULER = textwrap.dedent("""\
    import datetime as dt, sys, time
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.workspace import Workspace
    import os, pathlib
    url, folder, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = Engine(Workspace(url), SystemClock(), f"{folder}/definitions", registers_dir=f"{folder}/registers",
                    integrations_dir=f"{folder}/integrations")
    engine.load_definitions(actor="engine:worker")  # the same content: nothing new recorded
    pathlib.Path(f"{folder}/ready-{os.getpid()}").touch()  # then wait for every worker: all go at once
    while len(list(pathlib.Path(folder).glob("ready-*"))) < workers:
        time.sleep(0.001)
    occurrence = dt.datetime(2026, 12, 7, 7, 0, tzinfo=dt.UTC)
    fired = engine.fire("merchant-review", occurrence)  # every worker's scheduler reaches the same occurrence
    dispatched = engine.dispatch_events()  # and every worker dispatches what is waiting
    print(len(fired), len(dispatched))
    engine.shutdown()
    engine.ws.close()
    """)


def test_schedulers_and_dispatchers_on_four_processes_fire_and_dispatch_each_once(pg_url: str,
                                                                                   tmp_path: Path) -> None:
    """Each cron occurrence is one trigger event and one run however many processes fire it; an event waiting
    for dispatch becomes runs once however many processes dispatch (each takes it with a guarded claim)."""
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.subjects import record_trigger_events

    org = Org(tmp_path, pg_url)
    ws = Workspace(pg_url)
    engine = Engine(ws, SystemClock(), tmp_path / "definitions", registers_dir=tmp_path / "registers",
                    integrations_dir=tmp_path / "integrations")
    try:
        (tmp_path / "definitions" / "merchant-suspended.yaml").write_text(SUSPENDED)
        assert engine.load_definitions(actor="member:admin").errors == []
        with ws.transaction() as tx:
            load_rows(tx, "merchants", [{"merchant_id": f"M-{i}", "name": f"Merchant {i}", "status": "active",
                                         "owner": "olga"} for i in range(1, 4)], origin="test", source="test",
                      actor="member:olga")
            record_trigger_events(tx, event_type="merchant.suspended", source="test", occurred_at=SystemClock().now(),
                                  subject_kind="merchants", subject_ids=["M-1", "M-2", "M-3"], payload={})
    finally:
        engine.shutdown()
        ws.close()

    procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER, pg_url, str(tmp_path), "4"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=180), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for p in procs]
    assert [code for code, _, _ in results] == [0] * 4, [err[-1500:] for _, _, err in results]
    # A process's own answer is the runs its event started that it could already read (another process may
    # be the one dispatching it): never more than the one run, whichever process made it.
    assert sum(int(out.split()[0]) for _, out, _ in results) <= 1
    assert org.query("SELECT count(*) FROM trigger_events WHERE kind = 'schedule'") == [(1,)]
    assert org.query("SELECT definition_id, count(*) FROM runs GROUP BY 1 ORDER BY 1") == [
        ("merchant-review", 1), ("merchant-suspended", 3)]
    assert org.query("SELECT count(*) FROM audit_log WHERE event = 'trigger_event.recorded' "
                     "AND entity_id LIKE 'SCH-%'") == [(1,)]
    assert org.query("SELECT count(*) FROM trigger_events WHERE dispatched_at IS NULL") == [(0,)]
    [(first, last, n)] = org.query("SELECT min(seq), max(seq), count(*) FROM audit_log")
    assert (first, last) == (1, n)


SUSPENDED = textwrap.dedent("""\
    id: merchant-suspended
    title: Suspended merchant finding
    trigger: {kind: event, event: merchant.suspended}
    condition:
      subject: merchants
      where:
        - {field: status, op: eq, value: active, reason: the merchant is no longer active}
    actions:
      - actioner: findings.create
        params: {title: "Suspended {{ subject.name }}", severity: high, owner: "{{ subject.owner }}"}
    """)


def test_a_database_from_a_newer_schema_is_refused_and_left_as_it_was(pg_url: str) -> None:
    from store.errors import SchemaTooNew

    Workspace(pg_url).close()
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE schema_meta SET value = :v WHERE key = 'schema_version'"),
                         {"v": str(SCHEMA_VERSION + 3)})
        with engine.connect() as conn:
            tables = sorted(conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars())
        for read_only in (False, True):
            with pytest.raises(SchemaTooNew) as raised:
                Workspace(pg_url, read_only=read_only)
            assert str(raised.value) == (
                f"This workspace was written by a newer Runledger (schema {SCHEMA_VERSION + 3}; this one knows up "
                f"to {SCHEMA_VERSION}). Nothing was changed. Upgrade Runledger to open it.")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")).scalar() == \
                str(SCHEMA_VERSION + 3)
            assert sorted(conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars()) == tables
    finally:
        engine.dispose()

"""The command line with bad input: unknown run and item ids, an unknown member, a member without the role,
a state that refuses, a bad date, and a workspace another process holds. Each gets its exact lines and exit
code, and nothing changes (only the refusals the engine audits are added to the audit log). On DuckDB, as the
held workspace is a DuckDB file's own refusal (the commands' refusals on both backends: tests/test_members.py,
tests/test_retries.py, tests/test_cancel.py, tests/test_approvals.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.main import EXIT_REFUSED, EXIT_USAGE, main
from engine.intake.server import discovery_path
from store.workspace import Workspace
from tests.support import build_engine, finding_definition

REPO = Path(__file__).resolve().parents[2]
TABLES = ("runs", "run_items", "item_attempts", "trigger_events", "findings", "approvals", "incidents")
NO_RUN = "error: There is no run 'RUN-999999'. Check the id (runs look like RUN-000123)."
NO_ITEM = "error: There is no run item 'RUN-000001-999999'. Check the id (items look like RUN-000123-000001)."


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace with one completed run (RUN-000001, three findings); copied per test."""
    folder = tmp_path_factory.mktemp("cli")
    engine = build_engine(folder, {"d": finding_definition("d")}, accounts=3)
    assert engine.fire("d") == ["RUN-000001"]
    engine.shutdown()
    engine.ws.close()
    return folder / "ws.duckdb", folder / "definitions"


@pytest.fixture
def workspace(seeded: tuple[Path, Path], tmp_path: Path) -> tuple[str, str]:
    db = tmp_path / "ws.duckdb"
    db.write_bytes(seeded[0].read_bytes())
    if Path(f"{seeded[0]}.wal").exists():
        Path(f"{db}.wal").write_bytes(Path(f"{seeded[0]}.wal").read_bytes())
    return str(db), str(seeded[1])


def state(db: str) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Row counts of what commands change, and the audit log's (actor, event, entity_id)."""
    ws = Workspace(db)
    try:
        with ws.read() as conn:
            counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
            outcomes = conn.execute(sa.text("SELECT item_id, outcome, attempts FROM run_items ORDER BY 1")).all()
            counts |= {f"{i}:{o}:{a}": 1 for i, o, a in outcomes}
            audit = [tuple(r) for r in conn.execute(
                sa.text("SELECT actor, event, entity_id FROM audit_log ORDER BY seq"))]
        assert ws.verify_audit().intact
        return counts, audit
    finally:
        ws.close()


CASES: dict[str, tuple[list[str], int, list[str], list[tuple[str, str, str]]]] = {
    # name → (argv, exit code, exact lines, audit entries added)
    "retry unknown run": (["retry", "RUN-999999", "--as", "sigrid"], EXIT_REFUSED, [NO_RUN], []),
    "retry unknown item": (["retry", "RUN-000001", "RUN-000001-999999", "--as", "sigrid"], EXIT_REFUSED, [NO_ITEM], []),
    "cancel unknown run": (["cancel", "RUN-999999", "--reason", "x", "--as", "sigrid"], EXIT_REFUSED, [NO_RUN], []),
    "approve unknown item": (["approve", "RUN-000001-999999", "--as", "sigrid"], EXIT_REFUSED, [NO_ITEM], []),
    "hostile run id": (["retry", "<script>alert(1)</script>", "--as", "sigrid"], EXIT_REFUSED,
                       ["error: There is no run '<script>alert(1)</script>'. Check the id (runs look like "
                        "RUN-000123)."], []),
    "bundle unknown run": (["bundle", "RUN-999999", "--as", "auditor", "--out", "."], EXIT_REFUSED,
                           ["error: There is no run 'RUN-999999' in this workspace, so there is no evidence to bundle. "
                            "Check the id (run ids look like RUN-000042); the Runs page lists every run."], []),
    "fire unknown automation": (["fire", "nope", "--as", "sigrid"], EXIT_REFUSED,
                                ["error: no automation 'nope' (known: d)"], []),
    "unknown member": (["retry", "RUN-000001", "--as", "nobody"], EXIT_REFUSED,
                       ["error: no active member 'nobody' in this workspace; pass --as with a member id (for the "
                        "demo: sigrid, auditor, admin, viewer)"], []),
    "viewer retries a run": (["retry", "RUN-000001", "--as", "viewer"], EXIT_REFUSED,
                             ["refused: viewer may not retry run RUN-000001: that needs the operator role "
                              "(has: viewer)."],
                             [("member:viewer", "command.refused", "RUN-000001")]),
    "viewer retries an item": (["retry", "RUN-000001", "RUN-000001-000001", "--as", "viewer"], EXIT_REFUSED,
                               ["refused: viewer may not retry run_item RUN-000001-000001: that needs the operator "
                                "role (has: viewer)."], [("member:viewer", "command.refused", "RUN-000001-000001")]),
    "viewer cancels": (["cancel", "RUN-000001", "--reason", "x", "--as", "viewer"], EXIT_REFUSED,
                       ["refused: viewer may not cancel run RUN-000001: that needs the operator role (has: viewer)."],
                       [("member:viewer", "command.refused", "RUN-000001")]),
    "viewer fires": (["fire", "d", "--as", "viewer"], EXIT_REFUSED,
                     ["refused: viewer may not run now definition d: that needs the operator role (has: viewer)."],
                     [("member:viewer", "command.refused", "d")]),
    "cancel a completed run": (["cancel", "RUN-000001", "--reason", "x", "--as", "sigrid"], EXIT_REFUSED,
                               ["refused: Run RUN-000001 is completed; only pending or running runs can be cancelled."],
                               None),
    "dismiss a decided item": (["dismiss", "RUN-000001-000001", "--reason", "no", "--as", "sigrid"], EXIT_REFUSED,
                               ["refused: Item RUN-000001-000001 is succeeded, not awaiting approval; there is "
                                "nothing to decide."], None),
    "emit on an unknown subject": (["emit", "incident.closed", "--subject", "INC-NOPE"], EXIT_REFUSED,
                                   ["error: incidents has no record 'INC-NOPE'; nothing was changed."], []),
    "unreadable payload file": (["signal", "regulator-feed", "--payload", "/nonexistent/rule.json"], EXIT_USAGE,
                                ["error: cannot read the payload /nonexistent/rule.json: [Errno 2] No such file or "
                                 "directory: '/nonexistent/rule.json'"], []),
    "impossible date": (["summary", "--from", "2026-13-45", "--to", "2026-09-30"], EXIT_USAGE,
                        ["error: --from must be a date like 2026-07-01, not '2026-13-45'"], []),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gets_exact_lines_and_changes_nothing(workspace: tuple[str, str], name: str,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    db, definitions = workspace
    argv, code, expected, audited = CASES[name]
    counts, audit = state(db)
    lines: list[str] = []
    assert main(["--db", db, "--definitions", definitions, *argv], out=lines.append) == code
    assert lines == expected
    counts_after, audit_after = state(db)
    assert counts_after == counts
    assert audit_after[:len(audit)] == audit
    added = [a for a in audit_after[len(audit):] if a[1] != "definition.loaded"]
    if audited is not None:
        assert added == audited
    else:  # a refusal by the state of things: whatever the engine audits, it is a refusal
        assert all(a[1].endswith("refused") for a in added), added
    assert not list(tmp_path.glob("*.zip"))


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_held_workspace_is_named_with_its_holder_and_nothing_changes(workspace: tuple[str, str]) -> None:
    db, definitions = workspace
    counts, audit = state(db)
    holder = Workspace(db)  # this process holds the file, as the app or any other tool would
    try:
        verify = run_cli("--db", db, "--definitions", definitions, "verify-audit")
        retry = run_cli("--db", db, "--definitions", definitions, "retry", "RUN-000001", "--as", "sigrid")
    finally:
        holder.close()
    message = (f"The workspace {db} is held by another process ({{holder}}, PID {os.getpid()}). Nothing was changed. "
               "Stop that process, or send the command through the running engine's intake endpoint (the CLI does "
               "this by itself for emit, signal, fire, retry, cancel, approve and dismiss).")
    for result in (verify, retry):
        assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
        first = result.stdout.splitlines()[0]
        program = first.split("held by another process (", 1)[1].split(", PID ", 1)[0]
        assert first == "error: " + message.replace("{holder}", program)
        assert "python" in program
    assert verify.stdout.splitlines()[1:] == [
        "`verify-audit` reads the workspace itself and cannot go through the engine; run it once that process "
        "has stopped."]
    assert retry.stdout.splitlines()[1:] == [
        f"`retry` was not forwarded: no running engine serves this workspace ({discovery_path(db)} is missing or "
        "stale); run it once that process has stopped."]
    assert (verify.stderr, retry.stderr) == ("", "")
    assert state(db) == (counts, audit)


@pytest.mark.parametrize("until,says", [
    ("2026-07-20T00:00:00", "error: --until 2026-07-20T00:00:00: the demo simulates its whole quarter (July–September "
                            "2026); give a time from 2026-10-01 on, or leave --until out"),
    ("next tuesday", "error: --until next tuesday: expected a UTC time like 2026-11-30T12:00:00"),
])
def test_the_demo_refuses_an_until_it_cannot_simulate(tmp_path: Path, until: str, says: str) -> None:
    lines: list[str] = []
    assert main(["--db", str(tmp_path / "ws.duckdb"), "demo", "--until", until], out=lines.append) == EXIT_USAGE
    assert lines == [says]
    assert not (tmp_path / "ws.duckdb").exists()

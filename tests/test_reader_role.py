"""The read-only role for auditors' BI tools (``python -m engine grant-reader``), issue 17.

The contract is named once (``store.contract``): every table of the schema is classified there, and
docs/schema.md documents exactly the public ones. On a real PostgreSQL server (tests/pg_server.py) a seeded
workspace gets its reader through the command, run as a user would run it; then a connection *as that role*
proves what it reads and what it is refused: password hashes, intake secrets, sessions, every write, a table
of its own. A grant widened by hand is taken back by the next run, and a refused role is left as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.contract import PRIVATE_TABLES, PUBLIC_COLUMNS, PUBLIC_TABLES
from store.reader_role import plan_reader_grant, read_reader_privileges
from store.schema import metadata
from tests.pg_server import postgres_server

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "schema.md"

# --- the contract, named once -------------------------------------------------------------------------


def test_every_table_of_the_schema_is_classified_once_and_the_secrets_are_withheld() -> None:
    public = [*PUBLIC_TABLES, *PUBLIC_COLUMNS]
    assert len(public) == len(set(public)) and not set(public) & set(PRIVATE_TABLES)
    # A new table must be a decision made in store/contract.py before the reader role can see it.
    assert set(public) | set(PRIVATE_TABLES) == set(metadata.tables)
    for table, readable in PUBLIC_COLUMNS.items():
        assert set(readable) < set(metadata.tables[table].c.keys()), table
    assert {"password_hash", "session_epoch", "sso_subject"}.isdisjoint(PUBLIC_COLUMNS["members"])
    assert "secret" not in PUBLIC_COLUMNS["intake_sources"]
    assert {"sessions", "workers"} <= set(PRIVATE_TABLES)


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def test_docs_schema_documents_exactly_the_tables_the_reader_role_reads() -> None:
    text = DOC.read_text()
    body, _, section = text.partition("## Reading the live workspace (PostgreSQL)")
    assert section, "docs/schema.md has lost its section on the reader role"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    whole = [r for r in rows if r[1] == "every column"]
    nothing = [r for r in rows if r[1].startswith("nothing")]
    partial = [r for r in rows if "—" in r[1]]
    assert len(whole) == 1 and len(nothing) == 1 and len(partial) + 2 == len(rows)
    assert sorted(_names(whole[0][0])) == sorted(PUBLIC_TABLES)
    assert sorted(_names(nothing[0][0])) == sorted(PRIVATE_TABLES)
    for tables, columns in partial:
        [table] = _names(tables)
        readable, _, withheld = columns.partition("—")
        assert _names(readable) == list(PUBLIC_COLUMNS[table]), table
        assert sorted(_names(withheld)) == sorted(set(metadata.tables[table].c.keys()) - set(PUBLIC_COLUMNS[table]))
    assert len(partial) == len(PUBLIC_COLUMNS)
    # The page above the section documents every public table, and no private one.
    documented = set(_names(body)) & set(metadata.tables)
    assert documented == {*PUBLIC_TABLES, *PUBLIC_COLUMNS}


# --- DuckDB: no roles -----------------------------------------------------------------------------------


def _command(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "--db", db, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "RUNLEDGER_DB": ""})


def test_grant_reader_refuses_a_duckdb_workspace_and_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "workspace.duckdb"
    done = _command(str(path), "grant-reader", "--role", "auditor_bi")
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.startswith(f"refused: {path} is a DuckDB workspace, and DuckDB has no roles to grant; "
                                  "nothing was changed.")
    assert "a copy of the file taken while the engine is stopped" in done.stdout
    assert "PostgreSQL" in done.stdout
    assert not path.exists()  # refused before opening: no workspace made to be refused


def test_grant_reader_refuses_a_role_name_it_would_have_to_quote() -> None:
    done = _command("postgresql+psycopg://nobody@127.0.0.1:9/none", "grant-reader", "--role", "Auditor-BI")
    assert done.returncode == 2 and done.stdout.startswith("error: --role 'Auditor-BI': use 1–63 lower-case")


# --- PostgreSQL: a seeded workspace ---------------------------------------------------------------------

MERCHANTS = textwrap.dedent("""\
    id: merchants
    title: Merchants
    key: merchant_id
    label: name
    fields: {merchant_id: string, name: string, status: string, owner: string}
    """)
SUPPLIERS = textwrap.dedent("""\
    id: suppliers
    title: Suppliers
    key: supplier_id
    label: name
    fields: {supplier_id: string, name: string}
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
SECRET = "f00dfeed" * 8


class Seeded:
    """A PostgreSQL workspace with a little of everything: members (with password hashes), a register and
    its rows, a run with items and attempts, findings, audit entries, an intake source with its secret, a
    signed-in session and an engine worker."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        for sub in ("registers", "definitions", "integrations"):
            (root / sub).mkdir()
        (root / "registers" / "merchants.yaml").write_text(MERCHANTS)
        (root / "definitions" / "merchant-review.yaml").write_text(REVIEW)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", "--db", self.url, "--definitions", str(self.root / "definitions"),
             "--registers", str(self.root / "registers"), "--integrations", str(self.root / "integrations"), *args],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "RUNLEDGER_DB": ""})

    def cli(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0 and not done.stderr, (args, done.stdout, done.stderr)
        return done.stdout

    def password_file(self, name: str) -> str:
        path = self.root / f"{name}.pw"
        path.write_text(f"{name}-correct-horse-battery\n")
        return str(path)

    def seed(self) -> None:
        from store.schema import sessions, workers
        from store.sources import create_source
        from store.subjects import load_rows
        from store.workspace import Workspace as Store

        self.cli("init", "--admin", "ada", "--password-file", self.password_file("ada"))
        self.cli("members", "add", "olga", "--roles", "operator", "--password-file", self.password_file("olga"),
                 "--as", "ada")
        ws = Store(self.url)
        try:
            now = dt.datetime.now(dt.UTC)
            with ws.transaction() as tx:
                load_rows(tx, "merchants", [{"merchant_id": f"M-{i}", "name": f"Merchant {i}", "status": "active",
                                             "owner": "olga"} for i in (1, 2)], origin="test", source="test",
                          actor="member:olga")
                create_source(tx, "rule-feed", SECRET, "merchants", "member:ada")
                tx.conn.execute(sessions.insert().values(session_id="9" * 64, member_id="ada", channel="password",
                                                         epoch=0, signed_in_at=now, seen_at=now))
                tx.conn.execute(workers.insert().values(worker_id="w-1", host="here", pid=1, started_at=now,
                                                        heartbeat_at=now))
        finally:
            ws.close()
        self.cli("fire", "merchant-review", "--as", "olga")

    def superuser(self) -> sa.Engine:
        return sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def as_role(self, role: str) -> sa.Engine:
        """A connection as the role itself (the test cluster trusts loopback: no password to give)."""
        return sa.create_engine(sa.make_url(self.url).set(username=role), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One server and one seeded workspace for the module: each test uses a role of its own."""
    with postgres_server() as url:
        ws = Seeded(tmp_path_factory.mktemp("reader"), url)
        ws.seed()
        yield ws


def _refusal(conn: sa.Connection, sql: str) -> str | None:
    """None when the role is refused for want of a privilege; otherwise what happened instead."""
    try:
        conn.execute(sa.text(sql))
    except sa.exc.DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None)
        if code == "42501" and "permission denied" in str(exc.orig):
            return None
        return f"{sql}: failed otherwise ({code}: {str(exc.orig).splitlines()[0]})"
    return f"{sql}: allowed"


def _readable(conn: sa.Connection, sql: str) -> int:
    return len(conn.execute(sa.text(sql)).fetchall())


def _tables(ws: Seeded) -> dict[str, list[str]]:
    with ws.superuser().connect() as conn:
        rows = conn.execute(sa.text("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"))
        out: dict[str, list[str]] = {}
        for table, column in rows:
            out.setdefault(table, []).append(column)
    return out


def _audit(ws: Seeded, role: str) -> list[tuple[str, dict[str, Any]]]:
    with ws.superuser().connect() as conn:
        return [(r.actor, json.loads(r.payload)) for r in conn.execute(sa.text(
            "SELECT actor, payload FROM audit_log WHERE event = 'reader_role.granted' AND entity_id = :r "
            "ORDER BY seq"), {"r": role})]


def _prove_reads_exactly_the_contract(ws: Seeded, role: str, readable_whole: set[str]) -> None:
    tables = _tables(ws)
    assert readable_whole <= set(tables)
    problems: list[str] = []
    with ws.as_role(role).connect() as conn:
        # It reads each public table: the seeded ones show their rows.
        counts = {t: _readable(conn, f'SELECT * FROM "{t}"') for t in sorted(readable_whole)}
        for seeded in ("runs", "run_items", "item_attempts", "audit_log", "findings", "merchants",
                       "register_imports", "trigger_events", "definitions", "definition_versions"):
            assert counts[seeded] > 0, (seeded, counts)
        for table, readable in PUBLIC_COLUMNS.items():
            assert _readable(conn, f"SELECT {', '.join(readable)} FROM {table}") > 0, table
            problems += filter(None, [_refusal(conn, f"SELECT * FROM {table}")])
            problems += filter(None, [_refusal(conn, f"SELECT {c} FROM {table}")
                                      for c in tables[table] if c not in readable])
        assert conn.execute(sa.text("SELECT display_name FROM members WHERE member_id = 'ada'")).scalar() == "ada"
        # Nothing else: no private table, no other table of the schema, no write anywhere, no sequence.
        for table, columns in tables.items():
            if table not in readable_whole and table not in PUBLIC_COLUMNS:
                problems += filter(None, [_refusal(conn, f'SELECT * FROM "{table}"')])
            problems += filter(None, [
                _refusal(conn, f'INSERT INTO "{table}" DEFAULT VALUES'),
                _refusal(conn, f'UPDATE "{table}" SET "{columns[0]}" = "{columns[0]}"'),
                _refusal(conn, f'DELETE FROM "{table}"'),
                _refusal(conn, f'TRUNCATE "{table}"'),
            ])
        problems += filter(None, [
            _refusal(conn, "CREATE TABLE public.reader_notes (note text)"),
            _refusal(conn, "CREATE SCHEMA reader_own"),
            _refusal(conn, "SELECT nextval('run_number_seq')"),
            _refusal(conn, "SELECT last_value FROM run_number_seq"),
        ])
    assert problems == []


@pytest.mark.slow  # a PostgreSQL server, a seeded workspace and CLI processes
def test_the_reader_role_reads_the_public_contract_and_nothing_else(workspace: Seeded) -> None:
    out = workspace.cli("grant-reader", "--role", "auditor_bi")
    assert out.startswith("reader role auditor_bi created: it reads the public contract of docs/schema.md "
                          "(database runledger, schema public: 28 tables whole, members and intake_sources without "
                          "their secrets) and nothing else.\n")
    assert "  granted: SELECT on columns of members: active, created_at, display_name, email, member_id, roles\n" in out
    assert "  granted: SELECT on columns of intake_sources: created_at, register, source_id\n" in out
    assert "has no password yet" in out and "-c '\\password auditor_bi'" in out
    # Before proving the refusals: the secrets are there to be refused.
    with workspace.superuser().connect() as conn:
        assert conn.execute(sa.text("SELECT secret FROM intake_sources")).scalar() == SECRET
        assert conn.execute(sa.text("SELECT count(*) FROM members WHERE password_hash LIKE '$%'")).scalar() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar() == 1
    _prove_reads_exactly_the_contract(workspace, "auditor_bi", {*PUBLIC_TABLES, "merchants"})

    [(actor, payload)] = _audit(workspace, "auditor_bi")
    assert actor == "database:runledger" and payload["created"] is True and payload["revoked"] == []
    assert "intact" in workspace.cli("verify-audit")
    # Run again: nothing to change, nothing audited.
    assert "already reads exactly that" in workspace.cli("grant-reader", "--role", "auditor_bi")
    assert len(_audit(workspace, "auditor_bi")) == 1


@pytest.mark.slow  # a PostgreSQL server, a seeded workspace and CLI processes
def test_a_rerun_takes_back_what_was_widened_by_hand_and_grants_a_new_register(workspace: Seeded) -> None:
    role = "auditor_wide"
    workspace.cli("grant-reader", "--role", role)
    _widen(workspace, f"GRANT INSERT, UPDATE ON runs TO {role}", f"GRANT SELECT ON sessions, workers TO {role}",
           f"GRANT SELECT (password_hash) ON members TO {role}", f"GRANT SELECT ON intake_sources TO {role}",
           f"GRANT USAGE ON SEQUENCE run_number_seq TO {role}", f"GRANT CREATE ON SCHEMA public TO {role}",
           f"ALTER ROLE {role} CREATEDB")
    with workspace.as_role(role).connect() as conn:  # widened indeed: what follows can fail
        assert conn.execute(sa.text("SELECT secret FROM intake_sources")).scalar() == SECRET
        assert _readable(conn, "SELECT * FROM sessions") == 1
    # The contract grows too: a register declared after the grant.
    (workspace.root / "registers" / "suppliers.yaml").write_text(SUPPLIERS)
    workspace.cli("definitions")

    out = workspace.cli("grant-reader", "--role", role)
    assert out.startswith(f"reader role {role} updated: ")
    assert _listed(out, "granted") == [
        "SELECT on columns of intake_sources: created_at, register, source_id", "SELECT on table suppliers"]
    assert _listed(out, "revoked") == [
        "CREATE on schema public", "INSERT on table runs", "SELECT on columns of members: password_hash",
        "SELECT on tables intake_sources, sessions, workers", "UPDATE on table runs",
        "USAGE on sequence run_number_seq", "the role attribute CREATEDB"]
    assert "its LOGIN and password are as they were." in out
    _prove_reads_exactly_the_contract(workspace, role, {*PUBLIC_TABLES, "merchants", "suppliers"})

    # A membership of a role that reads everything (PostgreSQL's own) is taken back too.
    _widen(workspace, f"GRANT pg_read_all_data TO {role}")
    out = workspace.cli("grant-reader", "--role", role)
    assert "  revoked: membership of pg_read_all_data\n" in out
    _prove_reads_exactly_the_contract(workspace, role, {*PUBLIC_TABLES, "merchants", "suppliers"})
    with workspace.superuser().connect() as conn:
        assert not conn.execute(sa.text(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{role}'")).scalar()
    assert [bool(p["revoked"]) for _, p in _audit(workspace, role)] == [False, True, True]
    assert "already reads exactly that" in workspace.cli("grant-reader", "--role", role)


def _widen(ws: Seeded, *statements: str) -> None:
    with ws.superuser().connect() as conn:
        for sql in statements:
            conn.execute(sa.text(sql))


def _listed(out: str, what: str) -> list[str]:
    return sorted(line.removeprefix(f"  {what}: ") for line in out.splitlines() if line.startswith(f"  {what}: "))


@pytest.mark.slow  # a PostgreSQL server, a seeded workspace and CLI processes
def test_the_printed_script_makes_the_same_role_for_a_dba_to_run(workspace: Seeded, tmp_path: Path) -> None:
    script = workspace.cli("grant-reader", "--role", "auditor_dba", "--print")
    assert script.startswith("-- Runledger: the read-only role auditor_dba") and "COMMIT;" in script
    with workspace.superuser().connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = 'auditor_dba'")).scalar() == 0
    (tmp_path / "reader.sql").write_text(script)
    psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    url = sa.make_url(workspace.url)
    done = subprocess.run([str(psql), "-v", "ON_ERROR_STOP=1", "-q", "-h", str(url.host), "-p", str(url.port),
                           "-U", str(url.username), "-d", str(url.database), "-f", str(tmp_path / "reader.sql")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with workspace.superuser().connect() as conn:
        assert read_reader_privileges(conn, "auditor_dba", "public") == \
            plan_reader_grant(conn, "auditor_dba").privileges()
    assert "already reads exactly that" in workspace.cli("grant-reader", "--role", "auditor_dba")


@pytest.mark.slow  # a PostgreSQL server, a seeded workspace and CLI processes
def test_a_role_that_would_read_everything_is_refused_and_left_as_it_was(workspace: Seeded) -> None:
    done = workspace.run("grant-reader", "--role", "runledger")  # the user the command connects as
    assert done.returncode == 1 and done.stdout == (
        "refused: runledger is the database user this connects as; the reader must be another role: choose "
        "another --role. Nothing was changed.\n")
    with workspace.superuser().connect() as conn:
        conn.execute(sa.text("CREATE ROLE bi_admin SUPERUSER LOGIN"))
    done = workspace.run("grant-reader", "--role", "bi_admin")
    assert done.returncode == 1 and done.stdout.startswith(
        "refused: role bi_admin is a superuser, a replication or a BYPASSRLS role: it would read everything")
    with workspace.superuser().connect() as conn:
        assert conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = 'bi_admin'")).scalar()
        assert conn.execute(sa.text("SELECT has_database_privilege('bi_admin', 'runledger', 'CONNECT')")).scalar()
    assert _audit(workspace, "bi_admin") == [] and _audit(workspace, "runledger") == []

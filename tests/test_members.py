"""A workspace that is not the demo: ``init`` with its first admin, then the ``members`` commands. Driven
through the real command line (``cli.main.main`` in this process), so the parsing, the password prompts,
the engine's checks and the audit entries are all the ones a bank's admin meets.

Each test runs on both backends (tests/backends.py). DuckDB only: commands forwarded to a running engine
(a DuckDB file admits one process; on PostgreSQL every process writes the workspace itself) and the upgrade
of a workspace of schema 5, a DuckDB file an older Runledger wrote. PostgreSQL only: a URL's password."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli import members as member_cli
from cli.main import main as cli_main
from engine.authz import SessionEnded, SignInRefused, resume_session, session_epoch, sign_in
from store.members import read_member, read_members
from store.migrations import SCHEMA_VERSION
from store.schema import audit_log
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import quick_password_hash

REPO = Path(__file__).resolve().parent.parent
ADMIN_PW = "correct horse battery staple"
OTHER_PW = "tulip lantern orbit seventeen"


@pytest.fixture(autouse=True)
def _quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its real cost, computed once per password (tests/support.py's note)."""
    monkeypatch.setattr("engine.commands.members.hash_password", quick_password_hash)


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(member_cli, "on_terminal", lambda: False)


def typed(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """A terminal on which the member types ``answers`` in turn; returns the prompts shown."""
    prompts: list[str] = []
    queue = list(answers)

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return queue.pop(0)

    monkeypatch.setattr(member_cli, "on_terminal", lambda: True)
    monkeypatch.setattr(member_cli, "ask_secret", ask)
    return prompts


def run(db: str, *argv: str) -> tuple[int, str]:
    lines: list[str] = []
    code = cli_main(["--db", db, *argv], out=lines.append)
    return code, "\n".join(lines)


def pw_file(tmp_path: Path, password: str, name: str = "pw.txt") -> str:
    path = tmp_path / name
    path.write_text(password + "\nthe second line is ignored\n")
    return str(path)


def read(db: str) -> Iterator[sa.Connection]:
    ws = Workspace(db)
    try:
        with ws.read() as conn:
            yield conn
    finally:
        ws.close()


def members_of(db: str) -> dict[str, dict[str, Any]]:
    for conn in read(db):
        return {m["member_id"]: m for m in read_members(conn)}
    raise AssertionError


def audit(db: str, event: str | None = None) -> list[dict[str, Any]]:
    for conn in read(db):
        q = sa.select(audit_log.c.actor, audit_log.c.event, audit_log.c.entity_id, audit_log.c.payload)
        if event:
            q = q.where(audit_log.c.event == event)
        rows = conn.execute(q.order_by(audit_log.c.seq)).mappings()
        return [{**r, "payload": json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]}
                for r in rows]
    raise AssertionError


def untouched(db: str) -> bool:
    """Nothing was written at ``db``: no DuckDB file, or a PostgreSQL database still without a table."""
    if "://" not in db:
        return not Path(db).exists()
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


@pytest.fixture
def workspace(workspace_db: str, tmp_path: Path) -> str:
    """A workspace just started with ``init``: its one admin is boss."""
    code, said = run(workspace_db, "init", "--admin", "boss", "--password-file", pw_file(tmp_path, ADMIN_PW))
    assert code == 0, said
    return workspace_db


# --- init ------------------------------------------------------------------------------------------
def test_init_starts_an_empty_workspace_with_one_admin(workspace_db: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "new" / "bank.duckdb") if "://" not in workspace_db else workspace_db  # a folder to make
    (tmp_path / "cwd").mkdir()  # where the command runs: it must make nothing there
    monkeypatch.chdir(tmp_path / "cwd")
    code, said = run(db, "--definitions", str(REPO / "definitions"), "init", "--admin", "boss", "--password-file",
                     pw_file(tmp_path, ADMIN_PW))
    assert code == 0, said
    assert said.startswith(f"workspace {db} started with its admin boss (")
    members = members_of(db)
    assert list(members) == ["boss"] and members["boss"]["roles"] == "admin" and members["boss"]["active"]
    for conn in read(db):  # no demo: no runs, no subjects, no intake source
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM intake_sources")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one() == 0
    assert [e["event"] for e in audit(db) if e["event"].startswith(("workspace.", "member."))] == \
        ["workspace.initialized", "member.added"]
    added = audit(db, "member.added")[0]
    assert added["payload"]["roles"] == ["admin"] and ADMIN_PW not in json.dumps(audit(db))
    ws = Workspace(db)
    try:
        assert sign_in(ws, "boss", ADMIN_PW).roles == frozenset({"admin"})
        assert ws.verify_audit().intact
    finally:
        ws.close()
    assert run(db, "demo")[0] == 1  # the demo seeds only an empty workspace: this one is not
    assert list(Path.cwd().iterdir()) == []  # nothing made where it ran (a URL once became folders named after it)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.slow)])  # a URL's password
def test_init_never_says_the_password_of_the_workspaces_url(workspace_db: str, tmp_path: Path) -> None:
    """What init prints stays in terminals and CI logs: the URL it names has its password hidden, as every
    other message about the workspace has (the test server trusts every login, so any password opens it)."""
    with_password = sa.make_url(workspace_db).set(password="s3cret-pw").render_as_string(hide_password=False)
    code, said = run(with_password, "init", "--admin", "boss", "--password-file", pw_file(tmp_path, ADMIN_PW))
    assert code == 0, said
    shown = sa.make_url(with_password).render_as_string(hide_password=True)
    assert "s3cret-pw" not in said and "***" in shown
    assert said.startswith(f"workspace {shown} started with its admin boss (")
    assert f"--db {shown} members add" in said and f"RUNLEDGER_DB={shown} streamlit" in said


def test_init_asks_twice_on_the_terminal(workspace_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = workspace_db
    prompts = typed(monkeypatch, ADMIN_PW, ADMIN_PW)
    assert run(db, "init", "--admin", "boss")[0] == 0
    assert prompts == ["New password for boss: ", "The same password again: "]
    assert list(members_of(db)) == ["boss"]


def test_init_refuses_two_different_passwords_and_leaves_no_file(workspace_db: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = workspace_db
    typed(monkeypatch, ADMIN_PW, ADMIN_PW + "x")
    assert run(db, "init", "--admin", "boss") == (2, "error: The two passwords differ; nothing changed. "
                                                     "Run the command again.")
    assert untouched(db)


def test_init_without_a_terminal_or_a_file_says_how(workspace_db: str, no_terminal: None) -> None:
    code, said = run(workspace_db, "init", "--admin", "boss")
    assert code == 2 and "give it with --password-file FILE" in said and untouched(workspace_db)


def test_init_refuses_a_short_password_saying_the_minimum(workspace_db: str, tmp_path: Path) -> None:
    db = workspace_db
    code, said = run(db, "init", "--admin", "boss", "--password-file", pw_file(tmp_path, "short-pw"))
    assert code == 1
    assert said == ("refused: The password is 8 characters long; a password needs at least 12. A few unrelated "
                    "words make a long one that is easy to type.")
    assert untouched(db)


def test_init_is_refused_on_a_workspace_that_has_members(workspace: str, tmp_path: Path) -> None:
    before = audit(workspace)
    code, said = run(workspace, "init", "--admin", "other", "--password-file", pw_file(tmp_path, OTHER_PW))
    assert code == 1
    assert said == ("refused: This workspace already has 1 member; init starts a new, empty workspace only. Add a "
                    "member with `members add NAME --roles ROLE --as ADMIN`, or choose another file with --db.")
    assert list(members_of(workspace)) == ["boss"] and audit(workspace) == before


# --- members ---------------------------------------------------------------------------------------
def test_an_admin_adds_lists_changes_and_deactivates_members_each_audited(workspace: str, tmp_path: Path) -> None:
    pw = pw_file(tmp_path, OTHER_PW)
    assert run(workspace, "members", "add", "ola", "--roles", "operator,approver", "--password-file", pw,
               "--as", "boss") == (0, "member ola added with roles approver, operator; they sign in with the "
                                      "password given.")
    code, listing = run(workspace, "members", "list")
    assert code == 0
    assert [line.split()[:3] for line in listing.splitlines()[1:]] == [["boss", "admin", "active"],
                                                                      ["ola", "approver,", "operator"]]
    assert run(workspace, "members", "roles", "ola", "--roles", "operator", "--as", "boss")[0] == 0
    assert members_of(workspace)["ola"]["roles"] == "operator"
    code, said = run(workspace, "members", "deactivate", "ola", "--as", "boss")
    assert code == 0 and said.startswith("ola deactivated")
    assert not members_of(workspace)["ola"]["active"]
    assert "deactivated" in run(workspace, "members", "list")[1].splitlines()[2]

    events = [(e["actor"], e["event"], e["entity_id"]) for e in audit(workspace) if e["event"].startswith("member.")]
    assert events[-3:] == [("member:boss", "member.added", "ola"), ("member:boss", "member.roles_changed", "ola"),
                           ("member:boss", "member.deactivated", "ola")]
    assert audit(workspace, "member.roles_changed")[0]["payload"] == {"from": ["approver", "operator"],
                                                                      "to": ["operator"], "source": "admin"}
    assert OTHER_PW not in json.dumps(audit(workspace))
    ws = Workspace(workspace)
    try:
        with pytest.raises(SignInRefused):
            sign_in(ws, "ola", OTHER_PW)
        assert audit_payload_reason(ws, "ola") == "member is deactivated"
        assert ws.verify_audit().intact
    finally:
        ws.close()


def audit_payload_reason(ws: Workspace, member: str) -> str:
    with ws.read() as conn:
        payload = conn.execute(sa.select(audit_log.c.payload).where(audit_log.c.event == "member.sign_in_failed")
                               .where(audit_log.c.entity_id == member)
                               .order_by(audit_log.c.seq.desc())).scalars().first()
    return json.loads(payload)["reason"] if isinstance(payload, str) else payload["reason"]


def test_members_add_asks_twice_on_the_terminal(workspace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    typed(monkeypatch, OTHER_PW, OTHER_PW)
    assert run(workspace, "members", "add", "ola", "--roles", "viewer", "--as", "boss")[0] == 0
    typed(monkeypatch, OTHER_PW, "something else entirely")
    assert run(workspace, "members", "add", "kari", "--roles", "viewer", "--as", "boss")[0] == 2
    assert sorted(members_of(workspace)) == ["boss", "ola"]


def test_only_an_admin_manages_members_and_the_refusal_is_audited(workspace: str, tmp_path: Path) -> None:
    pw = pw_file(tmp_path, OTHER_PW)
    assert run(workspace, "members", "add", "ola", "--roles", "operator", "--password-file", pw, "--as", "boss")[0] == 0
    for argv in (["add", "kari", "--roles", "viewer", "--password-file", pw], ["roles", "ola", "--roles", "admin"],
                 ["deactivate", "boss"], ["reset-password", "boss", "--password-file", pw]):
        code, said = run(workspace, "members", *argv, "--as", "ola")
        assert code == 1 and said.startswith("refused: ola may not manage members") and "needs the admin role" in said
    assert sorted(members_of(workspace)) == ["boss", "ola"]
    assert members_of(workspace)["ola"]["roles"] == "operator" and members_of(workspace)["boss"]["active"]
    refused = audit(workspace, "command.refused")
    assert len(refused) == 4 and {r["actor"] for r in refused} == {"member:ola"}


def test_the_last_active_admin_cannot_be_deactivated_or_demoted(workspace: str, tmp_path: Path) -> None:
    sentence = ("refused: boss is the last active admin of this workspace; it would have none left to manage "
                "members. Give another member the admin role first.")
    assert run(workspace, "members", "deactivate", "boss", "--as", "boss") == (1, sentence)
    assert run(workspace, "members", "roles", "boss", "--roles", "operator", "--as", "boss") == (1, sentence)
    assert members_of(workspace)["boss"]["roles"] == "admin" and members_of(workspace)["boss"]["active"]
    assert [r["payload"]["rule"] for r in audit(workspace, "command.refused")] == ["last active admin"] * 2
    # with a second admin, the first may step down
    pw = pw_file(tmp_path, OTHER_PW)
    assert run(workspace, "members", "add", "ola", "--roles", "admin", "--password-file", pw, "--as", "boss")[0] == 0
    assert run(workspace, "members", "roles", "boss", "--roles", "operator", "--as", "boss")[0] == 0
    assert run(workspace, "members", "deactivate", "ola", "--as", "ola")[1] == sentence.replace("boss", "ola")


def test_unknown_roles_are_refused_listing_the_roles(workspace: str, tmp_path: Path) -> None:
    code, said = run(workspace, "members", "add", "ola", "--roles", "operator,superuser", "--password-file",
                     pw_file(tmp_path, OTHER_PW), "--as", "boss")
    assert (code, said) == (1, "refused: No such role: superuser. The roles are: viewer, auditor, operator, "
                               "approver, admin.")
    assert run(workspace, "members", "roles", "boss", "--roles", "root", "--as", "boss")[1] == \
        "refused: No such role: root. The roles are: viewer, auditor, operator, approver, admin."
    assert list(members_of(workspace)) == ["boss"]


def test_a_short_password_is_refused_with_the_minimum(workspace: str, tmp_path: Path) -> None:
    code, said = run(workspace, "members", "add", "ola", "--roles", "viewer", "--password-file",
                     pw_file(tmp_path, "tooshort"), "--as", "boss")
    assert code == 1 and "needs at least 12" in said and "tooshort" not in said
    assert list(members_of(workspace)) == ["boss"]


def test_a_reset_password_ends_the_members_sessions(workspace: str, tmp_path: Path) -> None:
    assert run(workspace, "members", "add", "ola", "--roles", "viewer", "--password-file",
               pw_file(tmp_path, OTHER_PW), "--as", "boss")[0] == 0
    ws = Workspace(workspace)
    try:
        epoch = session_epoch(ws, "ola")
        assert resume_session(ws, "ola", epoch).member_id == "ola"
    finally:
        ws.close()
    new_pw = "granite meadow quietly 42"
    code, said = run(workspace, "members", "reset-password", "ola", "--password-file",
                     pw_file(tmp_path, new_pw, "new.txt"), "--as", "boss")
    assert code == 0 and said.startswith("password of ola reset")
    assert audit(workspace, "member.password_reset")[0]["actor"] == "member:boss"
    ws = Workspace(workspace)
    try:
        with pytest.raises(SessionEnded, match="Your password was changed or reset"):
            resume_session(ws, "ola", epoch)
        with pytest.raises(SignInRefused):
            sign_in(ws, "ola", OTHER_PW)
        assert sign_in(ws, "ola", new_pw).member_id == "ola"
    finally:
        ws.close()
    # an admin resets others' passwords; their own they change knowing the current one
    code, said = run(workspace, "members", "reset-password", "boss", "--password-file", pw_file(tmp_path, new_pw),
                     "--as", "boss")
    assert code == 1 and "use `members password`" in said


def test_deactivation_ends_the_members_sessions(workspace: str, tmp_path: Path) -> None:
    assert run(workspace, "members", "add", "ola", "--roles", "viewer", "--password-file",
               pw_file(tmp_path, OTHER_PW), "--as", "boss")[0] == 0
    ws = Workspace(workspace)
    try:
        epoch = session_epoch(ws, "ola")
    finally:
        ws.close()
    assert run(workspace, "members", "deactivate", "ola", "--as", "boss")[0] == 0
    assert run(workspace, "members", "reactivate", "ola", "--as", "boss")[0] == 0
    ws = Workspace(workspace)
    try:  # reactivated, but the session begun before the deactivation stays ended
        with pytest.raises(SessionEnded):
            resume_session(ws, "ola", epoch)
        assert sign_in(ws, "ola", OTHER_PW).member_id == "ola"
    finally:
        ws.close()


def test_a_member_changes_their_own_password_knowing_the_current_one(workspace: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(workspace, "members", "add", "ola", "--roles", "viewer", "--password-file",
               pw_file(tmp_path, OTHER_PW), "--as", "boss")[0] == 0
    new_pw = "granite meadow quietly 42"
    prompts = typed(monkeypatch, "not the current one", new_pw, new_pw)
    code, said = run(workspace, "members", "password", "--as", "ola")
    assert code == 1 and said.startswith("refused: The current password is not right; nothing changed.")
    assert prompts[0] == "Current password of ola: "
    assert audit(workspace, "member.sign_in_failed")[-1]["payload"]["reason"] == \
        "wrong current password (password change)"

    typed(monkeypatch, OTHER_PW, new_pw, new_pw)
    assert run(workspace, "members", "password", "--as", "ola") == (0, "password of ola changed; their other "
                                                                      "sessions end.")
    changed = audit(workspace, "member.password_changed")
    assert [(c["actor"], c["entity_id"]) for c in changed] == [("member:ola", "ola")]
    ws = Workspace(workspace)
    try:
        assert sign_in(ws, "ola", new_pw).member_id == "ola"
    finally:
        ws.close()
    typed(monkeypatch, new_pw, "short", "short")
    code, said = run(workspace, "members", "password", "--as", "ola")
    assert code == 1 and "needs at least 12" in said


@pytest.mark.slow  # a served engine and a CLI process per command
@pytest.mark.parametrize("backend", ["duckdb"])  # forwarding exists because a DuckDB file admits one process
def test_member_commands_go_through_a_running_engine(workspace: str, tmp_path: Path) -> None:
    """While the app's engine holds the workspace, a member command is forwarded to it and performed there
    exactly as on the file (refusals included)."""
    from tests.test_intake import run_cli, serving
    pw = pw_file(tmp_path, OTHER_PW)
    with serving(Path(workspace)) as served:
        added = run_cli("--db", str(workspace), "members", "add", "ola", "--roles", "operator", "--password-file",
                        pw, "--as", "boss")
        assert added.returncode == 0, added.stdout + added.stderr
        assert added.stdout.startswith("member ola added with roles operator")
        refused = run_cli("--db", str(workspace), "members", "deactivate", "boss", "--as", "ola")
        assert refused.returncode == 1 and refused.stdout.startswith("refused: ola may not manage members")
        listing = run_cli("--db", str(workspace), "members", "list")
        assert listing.returncode == 0 and "ola" in listing.stdout
        served.stop()
    assert members_of(workspace)["ola"]["roles"] == "operator"
    assert OTHER_PW not in json.dumps(audit(workspace))


def test_a_member_read_back_has_its_new_columns(workspace: str) -> None:
    for conn in read(workspace):
        m = read_member(conn, "boss")
        assert m is not None and m["email"] is None and m["sso_subject"] is None and m["session_epoch"] == 0


@pytest.mark.parametrize("backend", ["duckdb"])  # a DuckDB file an older Runledger wrote, upgraded on open
def test_a_workspace_of_schema_5_gets_the_member_columns_on_open(workspace: str) -> None:
    import duckdb

    con = duckdb.connect(workspace)
    for column in ("email", "sso_subject", "session_epoch"):  # as a workspace of schema 5 was
        con.execute(f"ALTER TABLE members DROP COLUMN {column}")
    con.execute("UPDATE schema_meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    ws = Workspace(workspace)
    try:
        with ws.read() as conn:
            version = conn.execute(sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")).scalar()
            assert version == str(SCHEMA_VERSION)
            m = read_member(conn, "boss")
        assert m is not None and m["session_epoch"] == 0 and m["email"] is None
        assert sign_in(ws, "boss", ADMIN_PW).member_id == "boss"
    finally:
        ws.close()

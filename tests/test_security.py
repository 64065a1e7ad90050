"""Security properties that are configuration or data rather than a command: XSRF protection on, passwords
only as salted hashes (never a typed password anywhere in the workspace, on either backend: tests/backends.py),
no secret tracked by git."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.authz import SignInRefused, hash_password, sign_in, verify_password
from store.members import create_member
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import quick_password_hash

ROOT = Path(__file__).resolve().parents[1]


def test_streamlit_runs_with_xsrf_protection_and_sends_nothing_out() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] == "none"  # no traceback (paths, SQL) in front of a user


def test_a_password_is_kept_only_as_a_salted_argon2_hash() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$") and second.startswith("$argon2id$")
    assert first != second  # salted: one password, two hashes
    assert verify_password(first, "correct horse") and verify_password(second, "correct horse")
    assert not verify_password(first, "Correct horse")


TEXT_TYPES = ("VARCHAR", "JSON", "text", "character varying", "json", "jsonb")  # DuckDB's, PostgreSQL's


def _text_cells_containing(engine, needle: str) -> list[str]:  # noqa: ANN001
    """Every (table.column) of the workspace holding ``needle`` anywhere in its text."""
    found = []
    with engine.ws.read() as conn:
        columns = conn.execute(sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN :types AND table_schema = current_schema()").bindparams(
                sa.bindparam("types", expanding=True)), {"types": list(TEXT_TYPES)}).all()
        searched = {f"{t}.{c}" for t, c in columns}
        assert {"members.password_hash", "audit_log.payload", "sessions.member_id"} <= searched, searched
        for table, column in columns:
            n = conn.execute(sa.text(f'SELECT count(*) FROM "{table}" WHERE strpos(CAST("{column}" AS TEXT), :n) > 0'),
                             {"n": needle}).scalar_one()
            if n:
                found.append(f"{table}.{column}")
    return found


def test_no_password_typed_at_sign_in_is_stored_anywhere(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    with engine.ws.transaction() as tx:
        create_member(tx, "ingrid", "Ingrid", quick_password_hash("Ingrid-pass-7731"), ["operator"], "member:admin")
    assert sign_in(engine.ws, "ingrid", "Ingrid-pass-7731").member_id == "ingrid"
    with pytest.raises(SignInRefused):
        sign_in(engine.ws, "ingrid", "a-guess-Ingrid-9")  # a near miss is often a real password elsewhere
    with pytest.raises(SignInRefused):
        sign_in(engine.ws, "nobody-here", "Nobody-pass-4410")
    assert _text_cells_containing(engine, "Ingrid-pass-7731") == []
    assert _text_cells_containing(engine, "a-guess-Ingrid-9") == []
    assert _text_cells_containing(engine, "Nobody-pass-4410") == []
    # The failures are in the audit log all the same, by name.
    assert engine.ws.engine.connect().execute(sa.text(
        "SELECT count(*) FROM audit_log WHERE event = 'member.sign_in_failed'")).scalar_one() >= 2


# Built from pieces, so that this file does not match its own patterns.
SECRET_PATTERNS = {
    "a private key": re.compile("-----BEGIN [A-Z ]*" + "PRIVATE KEY-----"),
    "an AWS access key": re.compile(r"\b" + "AKIA" + r"[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\b" + "gh[pousr]_" + r"[A-Za-z0-9]{36}\b"),
    "a Slack token": re.compile(r"\b" + "xox[abprs]-" + r"[A-Za-z0-9-]{10,}"),
    "a hard-coded secret": re.compile(r"(?i)\b(secret|token|api_key|password)\s*[:=]\s*"
                                      r"['\"][A-Za-z0-9+/_\-]{24,}['\"]"),
}
NEVER_TRACKED = (re.compile(r"\.duckdb(\.wal)?$"), re.compile(r"\.engine\.json$"), re.compile(r"secrets\.toml$"),
                 re.compile(r"(^|/)\.env$"))


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def test_no_secret_and_no_workspace_is_tracked_by_git() -> None:
    tracked = _tracked_files()
    assert len(tracked) > 50  # the repository itself, not an empty listing
    assert [p for p in tracked if any(rx.search(p) for rx in NEVER_TRACKED)] == []
    hits = []
    for path in tracked:
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files (fonts, images) and files deleted in the working tree
        hits += [f"{path}: {what}" for what, rx in SECRET_PATTERNS.items() if rx.search(text)]
    assert hits == []


def test_the_secret_patterns_do_catch_secrets() -> None:
    """The scan above can fail: each pattern matches a sample of what it is for."""
    samples = {
        "a private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE",
        "an AWS access key": "aws_key = AKIA" + "ABCDEFGHIJKLMNOP",
        "a GitHub token": "gh" + "p_" + "a" * 36,
        "a Slack token": "xox" + "b-1234567890-abcdef",
        "a hard-coded secret": 'api_key = "' + "Z" * 32 + '"',
    }
    assert {what: bool(SECRET_PATTERNS[what].search(text)) for what, text in samples.items()} == \
        dict.fromkeys(samples, True)

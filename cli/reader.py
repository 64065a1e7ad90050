"""``grant-reader``: a read-only PostgreSQL role through which an auditor's BI tool reads the live workspace.

The role reads the public contract of docs/schema.md (``store.contract``) and nothing else; the SQL and its
checks are the store's (``store.reader_role``). The role is made without a password: a secret typed here
would sit in the shell's history and in ``ps``, and one read from a file or the environment would pass
through the server's statement log in clear. The DBA sets it with psql's ``\\password``, which sends only a
SCRAM verifier. On DuckDB there are no roles, and the command says what to do instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine.commands import CommandRefused
from engine.commands.named import BadRequest
from store.migrations import SCHEMA_VERSION, read_schema_version
from store.reader_role import (
    BadRoleName,
    ReaderGrantReport,
    ReaderRoleRefused,
    check_role_name,
    describe_privileges,
    grant_reader,
    plan_reader_grant,
    reader_grant_script,
)
from store.workspace import Workspace, is_duckdb_location, resolve_workspace_path

COMMANDS = ("grant-reader",)


def add_parsers(sub: Any) -> None:
    """``grant-reader`` on the main parser's subcommands."""
    g = sub.add_parser(
        "grant-reader",
        help="PostgreSQL: create or update a read-only role that reads the public tables of docs/schema.md and "
             "nothing else (no password hashes, no intake secrets, no sessions), for an auditor's BI tool",
        description="Create (or update, idempotently) a PostgreSQL role that may SELECT the workspace's public "
                    "tables (docs/schema.md), only the non-secret columns of members and intake_sources, and "
                    "nothing else; anything else it holds is revoked. A new role can LOG IN but has no "
                    "password: set one with psql's \\password. Run it again after declaring a register or "
                    "upgrading Runledger. Needs the workspace's owner with CREATEROLE, or a superuser.")
    g.add_argument("--role", required=True, help="the role to create or update, e.g. auditor_bi")
    g.add_argument("--print", dest="print_sql", action="store_true",
                   help="print the SQL (for a DBA to run with psql) and change nothing")


def _refuse_duckdb(location: str) -> CommandRefused:
    return CommandRefused(
        f"{location} is a DuckDB workspace, and DuckDB has no roles to grant; nothing was changed. While the "
        "engine or the app runs, DuckDB lets no other process open the file, not even to read: give the "
        "auditor's tool a copy of the file taken while the engine is stopped, or move the workspace to "
        "PostgreSQL (README, \"Running on PostgreSQL\") and run grant-reader there.")


def dispatch(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    try:
        role = check_role_name(args.role)
    except BadRoleName as exc:
        raise BadRequest(str(exc)) from None
    location = resolve_workspace_path(args.db)
    if is_duckdb_location(location):  # checked before opening: a refused command leaves no new file behind
        raise _refuse_duckdb(location)
    shown = sa.make_url(location).render_as_string(hide_password=True)
    try:
        if args.print_sql:
            return _print_script(location, shown, role, out)
        ws = Workspace(location)
        try:
            with ws.transaction() as tx:
                report = grant_reader(tx, role)
        finally:
            ws.close()
    except ReaderRoleRefused as exc:
        raise CommandRefused(str(exc)) from None
    for line in _report_lines(report, location):
        out(line)
    return 0


def _print_script(location: str, shown: str, role: str, out: Callable[[str], None]) -> int:
    """The script for the workspace as it is, read without changing anything (not even its schema)."""
    ws = Workspace(location, read_only=True)
    try:
        with ws.read() as conn:
            found = read_schema_version(conn)
            if found != SCHEMA_VERSION:
                raise CommandRefused(
                    f"{shown} holds {'no workspace yet' if found is None else f'a workspace of schema {found}'}; "
                    f"the script is written for schema {SCHEMA_VERSION}'s tables. Open it once with this "
                    "Runledger (`python -m engine --db URL init --admin NAME` starts a new workspace; any "
                    "command upgrades an older one), then print the script again.")
            grant = plan_reader_grant(conn, role)
    finally:
        ws.close()
    out(reader_grant_script(grant, shown))
    return 0


def _report_lines(report: ReaderGrantReport, location: str) -> list[str]:
    g = report.grant
    url = sa.make_url(location)
    server = f"{url.host}:{url.port or 5432}" if url.host else "the server's local socket"
    scope = (f"it reads the public contract of docs/schema.md (database {g.database}, schema {g.schema}: "
             f"{len(g.tables)} tables whole, members and intake_sources without their secrets) and nothing else")
    if not (report.created or report.granted or report.revoked):
        return [f"reader role {g.role} already reads exactly that: {scope}; nothing changed."]
    lines = [f"reader role {g.role} {'created' if report.created else 'updated'}: {scope}."]
    lines += [f"  granted: {line}" for line in describe_privileges(report.granted)]
    lines += [f"  revoked: {line}" for line in describe_privileges(report.revoked)]
    admin = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    if report.created:
        lines.append(f"next: it can log in but has no password yet. Set one at psql's prompt (not on a command "
                     f"line, where history and ps would keep it): psql '{admin}' -c '\\password {g.role}'")
    else:
        lines.append("its LOGIN and password are as they were.")
    lines.append(f"the BI tool connects as {g.role} to {server}, database {g.database}; run grant-reader again "
                 "after declaring a register or upgrading Runledger (it grants the tables that exist now).")
    return lines

"""``init`` and the ``members`` commands: a workspace's first admin, and its members from then on.

The CLI only gathers what the commands need — passwords above all, read once, before the workspace is
opened (from ``--password-file``'s first line, or asked twice on the terminal, never from an argument that
``ps`` would show). Who may do what, the rules a password must meet and the audit entries are the engine's
(``engine.commands.members``): a member command forwarded to a running engine is refused or performed
exactly as here.
"""

from __future__ import annotations

import argparse
import getpass
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.commands.named import BadRequest, operation_of, params_from_args, perform
from store.workspace import is_duckdb_location

COMMANDS = ("init", "members")

# The terminal, replaceable by tests (the password prompts are the only input the CLI ever asks for).
ask_secret: Callable[[str], str] = getpass.getpass


def on_terminal() -> bool:
    return sys.stdin.isatty()


def add_parsers(sub: Any) -> None:
    """``init`` and ``members …`` on the main parser's subcommands."""
    i = sub.add_parser("init", help="start an empty workspace (no demo) with its first admin")
    i.add_argument("--admin", required=True, help="the first admin's member name, e.g. j.smith")
    _password_file(i)
    m = sub.add_parser("members", help="the workspace's members: add, list, roles, deactivate, passwords")
    ms = m.add_subparsers(dest="members_command", required=True)

    def member_cmd(name: str, help_: str, target: bool = True) -> argparse.ArgumentParser:
        sp = ms.add_parser(name, help=help_)
        if target:
            sp.add_argument("name", help="the member's name, e.g. j.smith")
        sp.add_argument("--as", dest="member", required=True, help="the member acting (an admin)")
        return sp

    a = member_cmd("add", "add a member (admins)")
    a.add_argument("--roles", required=True, help="comma-separated, e.g. operator,approver")
    a.add_argument("--email", help="the e-mail single sign-on finds them by (without a password: SSO only)")
    a.add_argument("--display-name", help="the name pages show (default: the member name)")
    a.add_argument("--no-password", action="store_true", help="single sign-on only (needs --email)")
    _password_file(a)
    ms.add_parser("list", help="every member, their roles and how they sign in")
    r = member_cmd("roles", "replace a member's roles (admins)")
    r.add_argument("--roles", required=True, help="comma-separated, e.g. operator,approver")
    d = member_cmd("deactivate", "a member can no longer sign in; their sessions end (admins)")
    d.add_argument("--reason", help="why, for the audit log")
    member_cmd("reactivate", "let a deactivated member sign in again (admins)")
    rp = member_cmd("reset-password", "set another member's password; their sessions end (admins)")
    _password_file(rp)
    em = member_cmd("email", "set (or with no --email, clear) the e-mail single sign-on matches (admins)")
    em.add_argument("--email")
    p = member_cmd("password", "change your own password (asks for the current one)", target=False)
    _password_file(p, "the new password")
    p.add_argument("--current-password-file", metavar="FILE",
                   help="read the current password from this file's first line instead of asking")


def _password_file(sp: argparse.ArgumentParser, what: str = "the password") -> None:
    sp.add_argument("--password-file", metavar="FILE",
                    help=f"read {what} from this file's first line (default: ask twice on the terminal)")


def read_password_file(path: str) -> str:
    """The first line of ``path``, without its line ending (spaces are the password rules' business)."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"--password-file {path}: cannot be read ({exc}).") from None
    password = line.rstrip("\r\n")
    if not password:
        raise BadRequest(f"--password-file {path}: its first line is empty; put the password on it.")
    return password


def ask_new_password(whose: str, file: str | None) -> str:
    """From the file, or asked twice on the terminal; two different answers are refused."""
    if file:
        return read_password_file(file)
    if not on_terminal():
        raise BadRequest("There is no terminal to ask for the password on; give it with --password-file FILE "
                         "(its first line is the password).")
    first = ask_secret(f"New password for {whose}: ")
    second = ask_secret("The same password again: ")
    if first != second:
        raise BadRequest("The two passwords differ; nothing changed. Run the command again.")
    if not first:
        raise BadRequest("No password was typed; nothing changed.")
    return first


def _ask_current(whose: str, file: str | None) -> str:
    if file:
        return read_password_file(file)
    if not on_terminal():
        raise BadRequest("There is no terminal to ask for your current password on; give it with "
                         "--current-password-file FILE.")
    return ask_secret(f"Current password of {whose}: ")


def prepare(args: argparse.Namespace) -> None:
    """Name the engine operation a ``members`` command performs and gather its parameters (passwords asked
    here, once, so that a command forwarded to a running engine does not ask again)."""
    sub = args.members_command
    args.operation = f"members-{sub}"
    params: dict[str, Any] = {"member": args.member} if sub != "list" else {}
    if sub != "password" and sub != "list":
        params["name"] = args.name
    if sub in ("add", "roles"):
        params["roles"] = args.roles
    if sub == "add":
        for key in ("email", "display_name"):
            if getattr(args, key):
                params[key] = getattr(args, key)
        if not args.no_password:
            params["password"] = ask_new_password(args.name, args.password_file)
    elif sub == "deactivate" and args.reason:
        params["reason"] = args.reason
    elif sub == "reset-password":
        params["password"] = ask_new_password(args.name, args.password_file)
    elif sub == "email" and args.email:
        params["email"] = args.email
    elif sub == "password":
        params["current_password"] = _ask_current(args.member, args.current_password_file)
        params["new_password"] = ask_new_password(args.member, args.password_file)
    args.operation_params = params


def dispatch(args: argparse.Namespace, out: Callable[[str], None], open_engine: Callable[[argparse.Namespace], Any],
             db_path: str) -> int:
    """Perform ``init`` or a ``members`` command; refusals propagate to ``cli.main``, which says them."""
    if args.command == "init":
        return _init(args, out, open_engine, db_path)
    prepare(args)
    engine = open_engine(args)  # WorkspaceHeld: cli.main forwards the prepared command to the running engine
    try:  # members need no definitions loaded: the command changes members only
        answer = perform(engine, str(operation_of(args)), params_from_args(args))
    finally:
        engine.shutdown()
        engine.ws.close()
    for line in answer.lines:
        out(line)
    return 0


def _init(args: argparse.Namespace, out: Callable[[str], None], open_engine: Callable[[argparse.Namespace], Any],
          db_path: str) -> int:
    from core.members import MemberRuleBroken, check_member_id, check_password
    from engine.commands.members import MemberRefused, init_workspace
    password = ask_new_password(args.admin, args.password_file)
    try:  # checked again by the command; here so that a refused name or password leaves no file behind
        check_password(password, check_member_id(args.admin.strip()))
    except MemberRuleBroken as exc:
        raise MemberRefused(str(exc)) from None
    if is_duckdb_location(db_path):  # a file's folder; a server's URL is no path (it made folders named after it)
        Path(db_path.removeprefix("duckdb:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(args)
    try:
        init_workspace(engine.ws, args.admin, password,
                       {"os_user": getpass.getuser(), "host": platform.node(), "pid": str(os.getpid())})
        report = engine.load_definitions(actor="engine:init")
        shown = engine.ws.shown  # a URL's password hidden: what is printed stays in terminals and CI logs
    finally:
        engine.shutdown()
        engine.ws.close()
    out(f"workspace {shown} started with its admin {args.admin.strip()} "
        f"({len(report.definitions)} definitions loaded from {args.definitions}, {len(report.errors)} rejected).")
    out(f"next: add members with `python -m engine --db {shown} members add NAME --roles ROLE "
        f"--as {args.admin.strip()}`, then open it with `RUNLEDGER_DB={shown} streamlit run app.py`.")
    return 0

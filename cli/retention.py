"""``retention plan|apply`` and ``hold place|release|list``: keeping evidence for years.

The engine decides and audits (``engine.commands.retention``, ``engine.commands.holds``); this module only
reads the command line and prints what they answer. Placing and releasing a hold are named operations
(``engine.commands.holds.HOLD_OPERATIONS``): while the app or ``serve`` holds the workspace they go through
its intake endpoint. Retention does not: it writes an archive folder and removes rows, which wants the
workspace to itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from engine.authz import load_actor
from engine.commands import holds as hold_commands
from engine.commands import retention as retention_commands
from engine.commands.named import params_from_args, perform

COMMANDS = ("retention", "hold")
EXIT_OK = 0
Out = Callable[[str], None]


def add_parsers(sub: Any) -> None:
    """``retention …`` and ``hold …`` on the main parser's subcommands."""
    rt = sub.add_parser("retention", help="archive closed runs older than the retention horizon (admins)")
    rt_sub = rt.add_subparsers(dest="retention_command", required=True)
    for name, help_ in (("plan", "say what apply would archive, remove and hold back; changes nothing"),
                        ("apply", "archive to Parquet (with a manifest of SHA-256s), then remove from the workspace")):
        sp = rt_sub.add_parser(name, help=help_)
        sp.add_argument("--as", dest="member", required=True, help="an admin member")
        sp.add_argument("--years", type=int, help="keep this many years (default: $RUNLEDGER_RETENTION_YEARS or 7)")
        sp.add_argument("--archive", help="the archive folder (default: $RUNLEDGER_ARCHIVE, or archive/ beside the "
                                          "workspace)")
    hd = sub.add_parser("hold", help="legal holds: runs and subjects retention must keep (admins)")
    hd_sub = hd.add_subparsers(dest="hold_command", required=True)
    place = hd_sub.add_parser("place", help="put a run, or a subject's every run, on hold")
    place_sub = place.add_subparsers(dest="hold_scope", required=True)
    run = place_sub.add_parser("run", help="hold one run")
    run.add_argument("run_id", help="e.g. RUN-000123")
    subject = place_sub.add_parser("subject", help="hold a subject: every run with an item of it")
    subject.add_argument("kind", help="the register, e.g. accounts")
    subject.add_argument("subject_id", help="e.g. ACC-10060")
    run.set_defaults(operation="hold-place-run")
    subject.set_defaults(operation="hold-place-subject")
    for sp in (run, subject):
        sp.add_argument("--reason", required=True, help="the matter or request the hold is for")
        sp.add_argument("--as", dest="member", required=True, help="an admin member")
    release = hd_sub.add_parser("release", help="release a hold (what it kept may then be archived)")
    release.add_argument("hold_id", help="e.g. HOLD-000001")
    release.add_argument("--reason", help="why, for the audit log")
    release.add_argument("--as", dest="member", required=True, help="an admin member")
    release.set_defaults(operation="hold-release")
    hd_sub.add_parser("list", help="every hold, standing or released")


def run(engine: Any, args: argparse.Namespace, out: Out) -> int:
    if args.command == "retention":
        actor = load_actor(engine.ws, args.member)
        act = (retention_commands.plan_retention if args.retention_command == "plan"
               else retention_commands.apply_retention)
        for line in act(engine, actor, args.years, args.archive).lines():
            out(line)
        return EXIT_OK
    if args.hold_command == "list":
        holds = hold_commands.list_holds(engine)
        if not holds:
            out("no legal holds")
        for hold in holds:
            out(hold_commands.describe_hold(hold))
        return EXIT_OK
    for line in perform(engine, args.operation, params_from_args(args)).lines:  # as a forwarded one is
        out(line)
    return EXIT_OK

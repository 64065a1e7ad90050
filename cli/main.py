"""``python -m engine``: the command line for operators, scripts and the demo.

Commands that change state (emit, signal, fire, retry, cancel, approve, dismiss, disposition) go through a running
engine's intake endpoint when one holds the workspace, and open the file directly when none does. Any
other command that finds the workspace held says which process holds it, and changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli import members as member_cli
from cli import reader as reader_cli
from cli import registers as cli_registers
from cli import retention as retention_cli
from core.dispositions import DISPOSITION_KINDS
from engine.authz import NotAuthorized, UnknownMember
from engine.catalog import UnknownDefinition
from engine.commands import CommandRefused, NotFound
from engine.commands.named import BadRequest, operation_of, params_from_args, perform
from engine.signals import SignalRejected
from store.errors import StoreError, WorkspaceHeld
from store.subjects import UnknownSubject
from store.workspace import Workspace, resolve_workspace_path

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Runledger engine and commands.")
    p.add_argument("--db", help="workspace file (default: $RUNLEDGER_DB or data/workspace.duckdb)")
    p.add_argument("--definitions", default="definitions", help="folder of automation definitions")
    p.add_argument("--registers", help="folder of register declarations (default: $RUNLEDGER_REGISTERS or "
                                      "registers/ beside the definitions folder)")
    p.add_argument("--integrations", help="folder of integration declarations: webhooks, SMTP (default: "
                                         "$RUNLEDGER_INTEGRATIONS or integrations/ beside the definitions folder)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str, member: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        if member:
            sp.add_argument("--as", dest="member", required=True, help="the member acting (e.g. sigrid)")
        return sp

    d = add("demo", "seed the demo workspace (the credit union's quarter) if it is empty")
    d.add_argument("--if-empty", action="store_true", help="do nothing when the workspace already has data")
    d.add_argument("--until", help="simulate up to this UTC time (default: now)")
    add("serve", "run the engine headless: scheduler, event dispatch, retries, intake endpoint")
    f = add("fire", "run an automation now", member=True)
    f.add_argument("definition")
    e = add("emit", "record a workspace change that raises an event (e.g. incident.closed)")
    e.add_argument("event", help="a change a register declares, e.g. incident.closed")
    e.add_argument("--subject", required=True, help="the record's id, e.g. INC-701")
    s = add("signal", "deliver an integration signal")
    s.add_argument("source")
    s.add_argument("--payload", required=True, help="a JSON file, or - for standard input")
    r = add("retry", "retry a run's failed items, or one item", member=True)
    r.add_argument("run")
    r.add_argument("item", nargs="?")
    c = add("cancel", "cancel a running run", member=True)
    c.add_argument("run")
    c.add_argument("--reason", required=True)
    a = add("approve", "approve an item awaiting approval", member=True)
    a.add_argument("item")
    di = add("dismiss", "dismiss an item awaiting approval", member=True)
    di.add_argument("item")
    di.add_argument("--reason", required=True)
    pv = add("preview", "what an automation would match and do now (or --at a time), without running it",
             member=True)
    pv.add_argument("definition")
    pv.add_argument("--at", help="the time to preview at (ISO, UTC: 2026-10-05 or 2026-10-05T06:00); default now")
    dp = add("disposition", "record why a failed item that will not be retried may stay failed", member=True)
    dp.add_argument("item")
    dp.add_argument("--kind", required=True, choices=DISPOSITION_KINDS,
                    help="waived: risk accepted; resolved-outside: done by hand (give --reference); "
                         "superseded: a later run or item did it (give --superseded-by)")
    dp.add_argument("--reason", required=True)
    dp.add_argument("--reference", help="resolved-outside: the external ticket or letter number")
    dp.add_argument("--superseded-by", dest="superseded_by", help="superseded: the later run or item id")
    va = add("verify-audit", "prove the audit chain intact, or name the first broken entry")
    va.add_argument("--archive", dest="archives", action="append", default=[], metavar="DIR",
                    help="an archive folder retention wrote (or the folder of archives): verify the whole chain "
                         "through it (repeatable)")
    b = add("bundle", "write a run's evidence bundle (a zip an auditor verifies offline)", member=True)
    b.add_argument("run")
    b.add_argument("--out", help="the zip to write, or a folder for RUN-evidence.zip (default: this folder)")
    sj = add("subject", "write a subject's story (every run, attempt, record, change and decision about it)",
             member=True)
    sj.add_argument("kind", help="the register, e.g. accounts")
    sj.add_argument("subject_id", help="the subject's id, e.g. ACC-10060")
    sj.add_argument("--out", required=True, help="the file to write: FILE.pdf or FILE.csv (or a folder: a PDF)")
    br = add("brief", "write the audit committee brief (a PDF) for a period", member=True)
    _add_period_args(br)
    br.add_argument("--out", required=True, help="the PDF to write (or a folder to write it in)")
    ex = add("export", "export an analytics chart or table for a period", member=True)
    ex.add_argument("what", choices=("chart", "table"))
    ex.add_argument("name", help="which chart or table, e.g. outcome-trend or per-automation")
    _add_period_args(ex)
    ex.add_argument("--format", dest="fmt", required=True,
                    help="png, svg or pdf (charts); csv, xlsx or parquet (tables)")
    ex.add_argument("--out", required=True, help="the file to write (or a folder to write it in)")
    sm = add("summary", "counts per automation and outcome for a period")
    sm.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    sm.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD (inclusive)")
    sm.add_argument("--json", action="store_true")
    add("definitions", "load the definitions folder and report each file's verdict")
    add("integrations", "load the integrations folder and report each file's verdict and unset secrets")
    so = add("sources", "integration sources that may deliver signals (add one, or list them)")
    so_sub = so.add_subparsers(dest="sources_command", required=True)
    so_add = so_sub.add_parser("add", help="register a source; prints its secret once")
    so_add.add_argument("source")
    so_add.add_argument("--register", required=True, help="where its signals land, e.g. rule_changes")
    so_add.add_argument("--as", dest="member", required=True, help="an admin member")
    so_sub.add_parser("list", help="the registered sources (without secrets)")
    member_cli.add_parsers(sub)
    cli_registers.add_parsers(sub)
    reader_cli.add_parsers(sub)
    retention_cli.add_parsers(sub)
    return p


def _add_period_args(sp: argparse.ArgumentParser) -> None:
    """--from/--to (days, both included) and --definition (repeatable): the period a report covers."""
    sp.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    sp.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD (inclusive)")
    sp.add_argument("--definition", dest="only_definitions", action="append", default=[], metavar="ID",
                    help="only this automation (repeat for several; default: all)")


def _date(text: str, flag: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:  # a usage error, said through ``out`` like every other message
        raise BadRequest(f"{flag} must be a date like 2026-07-01, not {text!r}") from None


def _open_engine(args: argparse.Namespace) -> Any:
    from engine.runtime import Engine
    ws = Workspace(resolve_workspace_path(args.db))
    return Engine(ws, definitions_dir=args.definitions, registers_dir=args.registers,
                  integrations_dir=args.integrations)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _dispatch(args, out)
    except WorkspaceHeld as exc:
        from engine.intake.client import FORWARDABLE, forward_if_possible
        forwarded = forward_if_possible(args, exc, out)
        if forwarded is not None:
            return forwarded
        from engine.intake.server import discovery_path
        out(f"error: {exc}")
        named = operation_of(args)
        if named not in FORWARDABLE:
            out(f"`{args.command}` reads the workspace itself and cannot go through the engine; "
                "run it once that process has stopped.")
        else:  # forward_if_possible leaves the explaining to us
            out(f"`{args.command}` was not forwarded: no running engine serves this workspace "
                f"({discovery_path(exc.path)} is missing or stale); run it once that process has stopped.")
        return EXIT_REFUSED
    except BadRequest as exc:
        out(f"error: {exc}")
        return EXIT_USAGE
    except (NotAuthorized, CommandRefused, SignalRejected) as exc:
        out(f"refused: {exc}")
        return EXIT_REFUSED
    except (NotFound, UnknownMember, UnknownDefinition, UnknownSubject) as exc:
        out(f"error: {exc}")
        return EXIT_REFUSED
    except StoreError as exc:
        out(f"error: {exc}")
        return EXIT_BROKEN


def _dispatch(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    cmd = args.command
    if cmd in member_cli.COMMANDS:
        return member_cli.dispatch(args, out, _open_engine, resolve_workspace_path(args.db))
    if cmd in reader_cli.COMMANDS:  # a database role: no engine, no definitions
        return reader_cli.dispatch(args, out)
    if cmd == "demo":
        from demo.seed import seed_demo, workspace_is_empty
        path = resolve_workspace_path(args.db)
        if Path(path).exists():
            ws = Workspace(path)
            empty = workspace_is_empty(ws)
            ws.close()
            if not empty:
                out(f"{path} already holds a workspace; nothing seeded." if args.if_empty else
                    f"error: {path} already holds a workspace; the demo seeds only an empty one "
                    "(choose another with --db or RUNLEDGER_DB).")
                return EXIT_OK if args.if_empty else EXIT_REFUSED
        try:
            until = dt.datetime.fromisoformat(args.until).replace(tzinfo=dt.UTC) if args.until else None
        except ValueError:
            raise BadRequest(f"--until {args.until}: expected a UTC time like 2026-11-30T12:00:00") from None
        from demo.world import QUARTER_END
        if until is not None and until < QUARTER_END:  # the demo's story is a whole quarter
            raise BadRequest(f"--until {args.until}: the demo simulates its whole quarter (July–September "
                             f"2026); give a time from {QUARTER_END:%Y-%m-%d} on, or leave --until out")
        try:
            engine = seed_demo(path, args.definitions, until=until, say=out)
        except (OSError, RuntimeError) as exc:  # its gateway's port in use, or its integration missing
            out(f"error: {exc}; nothing was seeded.")
            return EXIT_REFUSED
        engine.ws.close()
        return EXIT_OK
    if cmd == "serve":
        from engine.serve import serve_forever
        return serve_forever(resolve_workspace_path(args.db), args.definitions, out, args.registers,
                             args.integrations)
    engine = _open_engine(args)
    try:
        return _run_command(engine, args, out)
    finally:
        engine.shutdown()
        engine.ws.close()


def _run_command(engine: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    cmd = args.command
    if cmd == "verify-audit":
        v = engine.ws.verify_audit(args.archives)
        if v.intact:
            after = (f" (entries {v.first_seq} on; the checkpoint of {v.checkpoint} records those before)"
                     if v.first_seq > 1 else "")
            through = (f" ({v.archived_entries} of them re-hashed from the archives, from entry {v.first_seq})"
                       if args.archives else "")
            out(f"audit chain intact: {v.entries} entries{after if not args.archives else through}, "
                f"head {v.head_hash}")
            return EXIT_OK
        where = f" at entry {v.first_broken_seq}" if v.first_broken_seq is not None else ""
        out(f"audit chain BROKEN{where}: {v.problem} ({v.entries} entries verified before it)")
        return EXIT_BROKEN
    if cmd == "summary":
        from store.views.summary import summarize_period
        start, end = _date(args.date_from, "--from"), _date(args.date_to, "--to") + dt.timedelta(days=1)
        with engine.ws.read() as conn:
            rows = summarize_period(conn, start, end)
        if args.json:
            out(json.dumps(rows, indent=2, default=str))
        else:
            from reporting.summary_text import format_summary
            out(format_summary(rows, args.date_from, args.date_to))
        return EXIT_OK
    if cmd == "definitions":
        report = engine.load_definitions(actor="engine:cli")
        for path, d in report.definitions:
            out(f"ok       {path}: {d.id} ({d.trigger.describe()})")
        for err in report.errors:
            out(f"rejected {err}")
        return EXIT_OK if not report.errors else EXIT_REFUSED
    if cmd == "integrations":
        loaded = engine.load_integrations(actor="engine:cli")
        for path, spec, version in loaded.taken:
            state = f"version {version} taken" if version else "unchanged"
            out(f"ok       {path}: {spec.actioner} — {spec.described()} ({state})")
            for sentence in loaded.unset.get(spec.id, []):
                out(f"  unset  {sentence}")
        for err in loaded.errors:
            out(f"rejected {err}")
        if not loaded.taken and not loaded.errors:
            out(f"no integrations declared in {engine.integrations_dir}")
        return EXIT_OK if not loaded.errors else EXIT_REFUSED
    if cmd == "sources":
        return _sources(engine, args, out)
    if cmd == "registers":
        return cli_registers.run(engine, args, out)
    if cmd == "bundle":
        return _bundle(engine, args, out)
    if cmd in ("brief", "export"):
        return _report(engine, args, out)
    if cmd == "subject":
        return _subject(engine, args, out)
    if cmd in retention_cli.COMMANDS:
        return retention_cli.run(engine, args, out)
    engine.load_definitions()
    answer = perform(engine, cmd, params_from_args(args))
    for line in answer.lines:
        out(line)
    return EXIT_OK


def _bundle(engine: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Build (authorized and audited by the engine), then write; the folder is checked first so that no
    export is recorded for a file that could not be written."""
    from engine.authz import load_actor
    from reporting.bundle import build_run_bundle
    target = Path(args.out or ".")
    if not (target.is_dir() or target.parent.is_dir()):
        raise BadRequest(f"--out {args.out}: the folder {target.parent} does not exist; create it or choose "
                         "another path.")
    name, content = build_run_bundle(engine, load_actor(engine.ws, args.member), args.run)
    target = target / name if target.is_dir() else target
    target.write_bytes(content)
    out(f"wrote {target} ({len(content):,} bytes, sha256 {hashlib.sha256(content).hexdigest()})")
    out(f"verify it offline: unzip it and run `python verify_bundle.py` in its {args.run.strip()} folder")
    return EXIT_OK


def _subject(engine: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """A subject's story as PDF or CSV (by the file's extension), through the audited export path; the folder
    and the register are checked first, so that no export is recorded for a file that was never written."""
    from engine.authz import load_actor
    from reporting.exports import ExportRefused
    from reporting.subject_story import export_subject_story, story_file_name
    from store.registers import read_registers
    target = Path(args.out)
    fmt = "pdf" if target.is_dir() else target.suffix.lower().lstrip(".")
    if not (target.is_dir() or target.parent.is_dir()):
        raise BadRequest(f"--out {args.out}: the folder {target.parent} does not exist; create it or choose "
                         "another path.")
    with engine.ws.read() as conn:
        registers = sorted(read_registers(conn))
    if args.kind not in registers:
        raise BadRequest(f"there is no register {args.kind!r}; the registers are: {', '.join(registers)}")
    try:
        exported = export_subject_story(engine.ws, load_actor(engine.ws, args.member), args.kind, args.subject_id,
                                        fmt)
    except ExportRefused as exc:
        raise BadRequest(f"--out {args.out}: {exc} (name the file .pdf or .csv)") from exc
    target = target / story_file_name(args.kind, args.subject_id, fmt) if target.is_dir() else target
    target.write_bytes(exported.content)
    out(f"wrote {target} ({len(exported.content):,} bytes, sha256 {exported.sha256})")
    return EXIT_OK


def _report(engine: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """The audit committee brief, or one analytics chart or table, for a period. The engine authorizes
    and audits the export; the folder and the automations are checked first, so that no export is
    recorded for a file that could not be written, and an unknown chart, table or format is a usage error."""
    from core.periods import PeriodError, period_from_dates
    from engine.authz import load_actor
    from reporting.exports import ExportRefused
    from store.definitions import read_definitions
    target = Path(args.out)
    if not (target.is_dir() or target.parent.is_dir()):
        raise BadRequest(f"--out {args.out}: the folder {target.parent} does not exist; create it or choose "
                         "another path.")
    with engine.ws.read() as conn:
        known = sorted(d["definition_id"] for d in read_definitions(conn))
    unknown = sorted(set(args.only_definitions) - set(known))
    if unknown:
        raise BadRequest(f"--definition {', '.join(unknown)}: no such automation; the automations are: "
                         f"{', '.join(known)}")
    try:
        period = period_from_dates(_date(args.date_from, "--from").date(), _date(args.date_to, "--to").date(),
                                   args.only_definitions)
        actor = load_actor(engine.ws, args.member)
        if args.command == "brief":
            from reporting.brief import generate_brief
            exported = generate_brief(engine.ws, actor, period)
        else:
            from reporting.analytics import build_analytics
            from reporting.exports import export_chart, export_table
            export = export_chart if args.what == "chart" else export_table
            exported = export(engine.ws, actor, build_analytics(engine.ws, period), args.name, args.fmt)
    except (ExportRefused, PeriodError) as exc:
        raise BadRequest(str(exc)) from exc
    target = target / exported.file_name if target.is_dir() else target
    target.write_bytes(exported.content)
    out(f"wrote {target} ({len(exported.content):,} bytes, sha256 {exported.sha256})")
    return EXIT_OK


def _sources(engine: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from engine.authz import load_actor
    from engine.commands.sources import add_intake_source, list_intake_sources
    if args.sources_command == "add":
        secret = add_intake_source(engine, load_actor(engine.ws, args.member), args.source, args.register)
        out(f"source {args.source} added; its signals land in {args.register}.")
        out(f"secret (shown once; give it to the integration, which signs each request with it): {secret}")
        return EXIT_OK
    rows = list_intake_sources(engine)
    if not rows:
        out("no sources yet: add one with `python -m engine sources add NAME --register REGISTER --as ADMIN`")
    for r in rows:
        out(f"{r['source_id']:24} → {r['register']:16} since {r['created_at']:%Y-%m-%d %H:%M} UTC")
    return EXIT_OK

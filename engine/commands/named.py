"""The state-changing commands (emit, signal, fire, retry, cancel, approve, dismiss, disposition, import, and the
member commands of ``engine.commands.member_operations``), performed one way.

The CLI performs them on a workspace it opened itself; the intake endpoint performs them for a CLI in
another process while the engine holds the file. Both call ``perform`` with the same parameters, so a
forwarded command runs exactly the engine code (and checks) a direct one does, and answers the same lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import commands
from engine.authz import load_actor
from engine.commands.holds import HOLD_OPERATIONS
from engine.commands.member_operations import MEMBER_OPERATIONS
from engine.commands.operation import Answer, BadRequest, Operation
from engine.commands.operation import optional_text_param as _optional_text
from engine.commands.operation import text_param as _text
from engine.signals import deliver_signal
from store import runs as run_store
from store.registers import read_registers
from store.subjects import emit_change

if TYPE_CHECKING:
    from engine.runtime import Engine


def _runs_of_event(engine: Engine, event_id: str) -> list[str]:
    """The runs an event started, read back (the scheduler's poll may have dispatched it first)."""
    with engine.ws.read() as conn:
        return run_store.read_run_ids_for_event(conn, event_id)


def _emit(engine: Engine, p: dict[str, Any]) -> Answer:
    event, subject = _text(p, "event"), _text(p, "subject")
    with engine.ws.read() as conn:
        known = read_registers(conn).events
    if event not in known:
        raise BadRequest(f"unknown event {event!r}; known: {', '.join(sorted(known)) or 'none declared'}")
    with engine.ws.transaction() as tx:
        event_id = emit_change(tx, event, subject, source="cli", actor="engine:cli")
    engine.dispatch_events()
    runs = _runs_of_event(engine, event_id)
    return Answer([f"event {event_id} recorded; runs started: {', '.join(runs) or 'none'}"],
                  {"event_id": event_id, "runs": runs})


def _signal(engine: Engine, p: dict[str, Any]) -> Answer:
    source = _text(p, "source")
    payload = p.get("payload")
    if not isinstance(payload, (str, dict)):
        raise BadRequest("'payload' must be the signal's JSON text (or a JSON object)")
    event_id = deliver_signal(engine, source, payload)
    runs = _runs_of_event(engine, event_id)
    return Answer([f"signal accepted as {event_id}; runs started: {', '.join(runs) or 'none'}"],
                  {"event_id": event_id, "runs": runs})


def _fire(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    runs = commands.run_now(engine, actor, _text(p, "definition"))
    return Answer([f"runs started: {', '.join(runs) or 'none'}"], {"runs": runs})


def _retry(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    run_id, item_id = _text(p, "run"), _optional_text(p, "item")
    if item_id:
        outcome = commands.retry_item(engine, actor, item_id)
        return Answer([f"{item_id}: {outcome}"], {"results": {item_id: outcome}})
    plan, results = commands.retry_run(engine, actor, run_id)
    lines = [f"{item['item_id']}: not retried: {why}" for item, why in plan.not_eligible]
    lines += [f"{i}: {outcome}" for i, outcome in results.items()]
    if not plan.eligible and not plan.not_eligible:
        lines.append(f"run {run_id} has no failed items")
    return Answer(lines, {"results": results,
                          "not_retried": {item["item_id"]: why for item, why in plan.not_eligible}})


def _cancel(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    run_id = _text(p, "run")
    status = commands.cancel_run(engine, actor, run_id, _text(p, "reason"))
    return Answer([f"run {run_id}: {status}"], {"status": status})


def _approve(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    item_id = _text(p, "item")
    outcome = commands.approve_item(engine, actor, item_id)
    return Answer([f"{item_id}: {outcome}"], {"outcome": outcome})


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def _import(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    report = commands.import_register(engine, actor, _text(p, "register"), _text(p, "file"),
                                      fmt=_optional_text(p, "format"), mode=_optional_text(p, "mode") or "upsert",
                                      skip_bad_rows=_flag(p, "skip_bad_rows"),
                                      ignore_extra_columns=_flag(p, "ignore_extra_columns"))
    r = report.outcome.result
    return Answer(report.lines(), {"import_id": r.import_id, "counts": r.counts(), "runs": report.runs,
                                   "events": len(r.events)})


def _dismiss(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    item_id = _text(p, "item")
    outcome = commands.dismiss_item(engine, actor, item_id, _text(p, "reason"))
    return Answer([f"{item_id}: {outcome}"], {"outcome": outcome})


def _disposition(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    item_id = _text(p, "item")
    kind = commands.disposition_item(engine, actor, item_id, _text(p, "kind"), _text(p, "reason"),
                                     _optional_text(p, "reference"), _optional_text(p, "superseded_by"))
    return Answer([f"{item_id}: failed, dispositioned as {kind}"], {"disposition": kind})


def _preview(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, _text(p, "member"))
    at_text = _optional_text(p, "at")
    try:
        at = dt.datetime.fromisoformat(at_text) if at_text else None
    except ValueError:
        raise BadRequest(f"--at {at_text!r} is not a time; give it as 2026-10-05 or 2026-10-05T06:00") from None
    preview = commands.preview_definition(engine, actor, _text(p, "definition"), at)
    return Answer(preview.lines(), {"matched": preview.matched, "excluded": preview.excluded,
                                    "version": preview.version})


OPERATIONS: dict[str, Operation] = {
    "emit": Operation(_emit, ("event", "subject")),
    "signal": Operation(_signal, ("source", "payload")),
    "fire": Operation(_fire, ("member", "definition")),
    "retry": Operation(_retry, ("member", "run"), ("item",)),
    "cancel": Operation(_cancel, ("member", "run", "reason")),
    "approve": Operation(_approve, ("member", "item")),
    "dismiss": Operation(_dismiss, ("member", "item", "reason")),
    "preview": Operation(_preview, ("member", "definition"), ("at",)),
    "disposition": Operation(_disposition, ("member", "item", "kind", "reason"), ("reference", "superseded_by")),
    **MEMBER_OPERATIONS,
    **HOLD_OPERATIONS,
    "import": Operation(_import, ("member", "register", "file"),
                        ("format", "mode", "skip_bad_rows", "ignore_extra_columns")),
}


def operation_of(args: argparse.Namespace) -> str | None:
    """The state-changing command a parsed CLI line names (``registers import`` is ``import``; ``members add``
    is ``members-add``, named by ``cli.members.prepare``), or None."""
    if getattr(args, "operation", None):
        return str(args.operation)
    if args.command == "registers":
        return "import" if args.registers_command == "import" else None
    return args.command if args.command in OPERATIONS else None


def perform(engine: Engine, name: str, params: dict[str, Any]) -> Answer:
    """Run one state-changing command; raises the commands' named errors, or ``BadRequest``."""
    op = OPERATIONS.get(name)
    if op is None:
        raise BadRequest(f"unknown command {name!r}; known: {', '.join(OPERATIONS)}")
    unknown = sorted(k for k in params if k not in op.required + op.optional)
    if unknown:
        raise BadRequest(f"{name} takes {', '.join(op.required + op.optional)}; "
                         f"not {', '.join(unknown)}")
    missing = [k for k in op.required if params.get(k) is None]
    if missing:
        raise BadRequest(f"{name} needs {', '.join(missing)}")
    return op.run(engine, params)


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters of a parsed CLI command; a signal's payload file (or stdin) is read here. A command
    whose module gathered its parameters already (the member commands read passwords once, before the
    workspace is opened) hands them over as ``args.operation_params``."""
    prepared = getattr(args, "operation_params", None)
    if prepared is not None:
        return dict(prepared)
    name = operation_of(args)
    if name is None:
        raise BadRequest(f"`{args.command}` is not a command that changes the workspace")
    op = OPERATIONS[name]
    params = {k: getattr(args, k) for k in op.required + op.optional
              if k != "payload" and getattr(args, k, None) is not None}
    if name == "import":  # the engine may run elsewhere in the file system: it is handed the absolute path
        params["file"] = str(Path(args.file).resolve())
    if args.command == "signal":
        try:
            params["payload"] = (sys.stdin.read() if args.payload == "-"
                                 else Path(args.payload).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise BadRequest(f"cannot read the payload {args.payload}: {exc}") from None
    return params

"""Loading a register from the organization's own systems: ``registers import ID FILE`` (a member), and
the events the load raises dispatched at once, so the runs they start exist when the command returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.roles import Actor
from engine.authz import check_permission
from engine.commands.refusals import CommandRefused
from store.errors import WriteFailed
from store.imports import ImportOutcome, ImportRefused, import_file
from store.registers import UnknownRegister, read_registers
from store.runs import read_run_ids_for_events

if TYPE_CHECKING:
    from engine.runtime import Engine

IMPORT_MODES = ("upsert", "replace")


@dataclass
class ImportReport:
    outcome: ImportOutcome
    runs: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        r, f = self.outcome.result, self.outcome.file
        # The counts first: they are what a member reads; the file's identity follows on its own line.
        out = [f"{r.import_id} into {r.register}: "
               f"{r.rows:,} rows — {r.added:,} added, {r.changed:,} changed, {r.unchanged:,} unchanged, "
               f"{r.withdrawn:,} withdrawn, {r.refused:,} refused; "
               f"{len(r.events):,} {'event' if len(r.events) == 1 else 'events'} raised",
               f"  file: {f.name} ({f.bytes:,} bytes, sha256 {f.sha256})"]
        out += [f"  refused: {why}" for why in self.outcome.refused_rows]
        if r.refused > len(self.outcome.refused_rows):
            out.append(f"  … and {r.refused - len(self.outcome.refused_rows):,} more refused rows")
        counted: dict[str, int] = {}
        for _, name, _ in r.events:
            counted[name] = counted.get(name, 0) + 1
        out += [f"  event {name}: {n:,}" for name, n in sorted(counted.items())]
        out.append(f"runs started: {', '.join(self.runs) or 'none'}")
        return out


def import_register(engine: Engine, actor: Actor, register_id: str, path: str | Path, *, fmt: str | None = None,
                    mode: str = "upsert", skip_bad_rows: bool = False,
                    ignore_extra_columns: bool = False) -> ImportReport:
    """Load the file into the register (one transaction: all of it, or nothing), then dispatch its events."""
    check_permission(engine.ws, actor, "import_subjects", "register", register_id)
    if mode not in IMPORT_MODES:
        raise CommandRefused(f"--mode must be one of {', '.join(IMPORT_MODES)}, not {mode!r}")
    with engine.ws.read() as conn:
        try:
            reg = read_registers(conn)[register_id]
        except UnknownRegister as exc:
            raise CommandRefused(str(exc)) from None
    if not reg.declared:
        raise CommandRefused(f"{register_id} holds Runledger's own records; only declared registers are imported")
    try:
        with engine.ws.transaction() as tx:
            outcome = import_file(tx, reg, Path(path), actor=actor.audit_name, fmt=fmt, mode=mode,
                                  skip_bad_rows=skip_bad_rows, ignore_extra_columns=ignore_extra_columns)
    except (ImportRefused, WriteFailed) as exc:  # a bad file, or one the database could not take (memory)
        with engine.ws.transaction() as tx:  # the refusal is in the trail, though nothing was loaded
            tx.audit(actor.audit_name, "register.import_refused", "register", register_id,
                     {"file": Path(path).name, "reason": str(exc)})
        raise CommandRefused(str(exc)) from None
    engine.dispatch_events()
    with engine.ws.read() as conn:
        runs = read_run_ids_for_events(conn, [e[0] for e in outcome.result.events])
    return ImportReport(outcome, runs)

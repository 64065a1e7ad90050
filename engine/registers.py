"""The registers the engine knows: declared in the workspace's registers folder (one YAML file each), taken
into the workspace as versions, each change audited. A file that does not parse, or changes a register in a
way the evidence forbids (a field removed or retyped, the key changed), is rejected with a sentence — once
per content — and the version in effect keeps working."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.registers import RegisterError, RegisterSpec, parse_register
from engine.catalog import DefinitionCatalog
from engine.settings import declared_folder
from store.registers import RESERVED, RegisterRefused, record_register_rejection, save_register_version
from store.workspace import Workspace

log = logging.getLogger("runledger.registers")


def resolve_registers_dir(explicit: str | Path | None, definitions_dir: str | Path) -> Path:
    """``--registers`` wins, then ``RUNLEDGER_REGISTERS``, then ``registers/`` beside the definitions."""
    return declared_folder(explicit, "RUNLEDGER_REGISTERS", definitions_dir, "registers")


@dataclass
class RegisterLoadReport:
    taken: list[tuple[str, RegisterSpec, int | None]] = field(default_factory=list)  # (path, spec, new version)
    errors: list[str] = field(default_factory=list)


def parse_register_files(directory: Path) -> tuple[list[tuple[str, RegisterSpec]], list[tuple[str, str, str]]]:
    """Every ``*.yaml``/``*.yml`` file parsed: (path, spec) and (path, content hash, error)."""
    specs: list[tuple[str, RegisterSpec]] = []
    errors: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    for p in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        raw = p.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        try:
            spec = parse_register(raw.decode("utf-8"), str(p), RESERVED)
        except RegisterError as exc:
            errors.append((str(p), digest, str(exc)))
            continue
        except UnicodeDecodeError:
            errors.append((str(p), digest, f"{p}: field '(whole file)': expected UTF-8 text; found binary content."))
            continue
        if spec.id in seen:
            errors.append((str(p), digest, f"{p}: field 'id': expected an id no other file uses; found "
                                           f"{spec.id!r}. Fix: {seen[spec.id]} already declares it"))
            continue
        seen[spec.id] = str(p)
        specs.append((str(p), spec))
    return specs, errors


def load_register_folder(ws: Workspace, directory: Path, actor: str) -> RegisterLoadReport:
    """Take every register file: new registers get their tables, changed ones their new fields; each file
    in its own transaction, so one refused change leaves the others taken."""
    report = RegisterLoadReport()
    if not directory.is_dir():
        return report
    specs, errors = parse_register_files(directory)
    for path, spec in specs:
        try:
            with ws.transaction() as tx:
                version = save_register_version(tx, spec, path, actor)
            report.taken.append((path, spec, version))
        except RegisterRefused as exc:
            errors.append((path, spec.content_hash, str(exc)))
    for path, digest, message in errors:
        report.errors.append(message)
        log.warning("register rejected: %s", message)
        with ws.transaction() as tx:
            record_register_rejection(tx, path, digest, [message], actor)
    return report


def definitions_using(catalog: DefinitionCatalog, register_id: str) -> list[str]:
    """The automations (latest versions, enabled or not) whose condition is over the register."""
    return sorted(row["definition_id"] for row in catalog.rows()
                  if catalog.get(row["definition_id"], row["latest_version"]).condition.subject == register_id)

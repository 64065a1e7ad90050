"""The integrations the engine knows: declared in the integrations folder (``--integrations DIR``,
``RUNLEDGER_INTEGRATIONS``, default ``integrations/`` beside the definitions), taken into the workspace as
versions (audited), and built into the actioners definitions name as ``webhook:ID`` and ``email:ID``.

A file that does not parse is reported and left out (the others load). An integration whose secrets are
not set loads anyway, and says so: its actions fail transiently with the variable to set, and succeed on
a retry once it is."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.integrations import IntegrationSpec, load_integration_files, parse_integration
from engine.integrations.secrets import missing_secrets
from engine.integrations.smtp import EmailActioner
from engine.integrations.webhook import WebhookActioner
from engine.settings import declared_folder
from store.integrations import read_integration_declarations, save_integration_version
from store.workspace import Workspace

log = logging.getLogger("runledger.integrations")


def resolve_integrations_dir(explicit: str | Path | None, definitions_dir: str | Path) -> Path:
    """``--integrations`` wins, then ``RUNLEDGER_INTEGRATIONS``, then ``integrations/`` beside the definitions."""
    return declared_folder(explicit, "RUNLEDGER_INTEGRATIONS", definitions_dir, "integrations")


@dataclass
class IntegrationLoadReport:
    taken: list[tuple[str, IntegrationSpec, int | None]] = field(default_factory=list)  # (path, spec, new version)
    errors: list[str] = field(default_factory=list)
    unset: dict[str, list[str]] = field(default_factory=dict)  # integration → sentences for its unset secrets
    unset_names: dict[str, list[str]] = field(default_factory=dict)  # integration → its variables not set


def build_actioner(spec: IntegrationSpec) -> Any:
    return WebhookActioner(spec) if spec.kind == "webhook" else EmailActioner(spec)


def load_integration_folder(ws: Workspace, directory: Path, actor: str) -> tuple[IntegrationLoadReport, dict[str, Any]]:
    """Take every integration file of ``directory`` into the workspace; return the report and the actioners."""
    found = load_integration_files(directory, os.environ)
    report = IntegrationLoadReport(errors=[str(e) for e in found.errors])
    with ws.transaction() as tx:
        for path, spec in found.integrations:
            version = save_integration_version(tx, integration_id=spec.id, kind=spec.kind, content=spec.content,
                                               content_hash=spec.content_hash, source_path=path,
                                               described=spec.described(), actor=actor)
            report.taken.append((path, spec, version))
    for err in report.errors:
        log.warning("integration rejected: %s", err)
    actioners = {}
    for _, spec, _ in report.taken:
        unset = missing_secrets(spec.env_names(), spec.id)
        if unset:
            report.unset[spec.id] = unset
            report.unset_names[spec.id] = [n for n in spec.env_names() if any(f" {n}," in x for x in unset)]
            for sentence in unset:
                log.warning("%s", sentence)
        actioners[spec.actioner] = build_actioner(spec)
    return report, actioners


def workspace_integrations(ws: Workspace) -> list[IntegrationSpec]:
    """Every integration the workspace has taken, at its latest version (definitions are checked against
    them: a run pinned to a definition naming one can always be read back, even once its file is gone)."""
    with ws.read() as conn:
        rows = read_integration_declarations(conn)
    out = []
    for row in rows:
        try:
            out.append(parse_integration(row["content"], f"{row['integration_id']}@v{row['version']}", os.environ))
        except ValueError as exc:  # taken by an older Runledger under other rules: said, not fatal
            log.warning("integration %s v%s no longer parses: %s", row["integration_id"], row["version"], exc)
    return out

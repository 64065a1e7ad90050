"""Preview an automation before it acts: what its condition would match now (or at a given time), each
subject's rendered action parameters, and the subjects it excludes with the clauses that exclude them.

Nothing runs and nothing acts: no run, no item, no record. The preview itself is audited
(``definition.previewed``: who looked, at which version and time, and the counts), because what a member
saw before enabling or running an automation is part of the decision's trail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.roles import Actor
from core.templates import TemplateError, compile_template
from engine.authz import check_permission
from store.matching import explain_condition
from store.registers import read_registers

if TYPE_CHECKING:
    from engine.runtime import Engine

PREVIEW_ROWS = 500  # subjects listed per side; the counts are always whole


@dataclass(frozen=True)
class PreviewedSubject:
    subject_id: str
    label: str
    parameters: tuple[dict[str, Any], ...] = ()  # matched: one per action, as the run would render them
    excluded_by: tuple[str, ...] = ()  # excluded: each clause that does not hold, with its reason


@dataclass
class DefinitionPreview:
    definition_id: str
    version: int
    enabled: bool
    at: dt.datetime
    subject_kind: str
    actions: tuple[str, ...]
    matched: int = 0
    excluded: int = 0
    matched_subjects: list[PreviewedSubject] = field(default_factory=list)
    excluded_subjects: list[PreviewedSubject] = field(default_factory=list)
    excluded_by_clause: dict[str, int] = field(default_factory=dict)  # clause → subjects it excludes

    def lines(self) -> list[str]:
        """The preview as the command line prints it."""
        out = [f"{self.definition_id} v{self.version} ({'enabled' if self.enabled else 'disabled'}) at "
               f"{self.at:%Y-%m-%d %H:%M} UTC: {self.matched:,} {self.subject_kind} would match, "
               f"{self.excluded:,} excluded; actions: {', '.join(self.actions)}. Nothing was run."]
        for s in self.matched_subjects:
            out.append(f"  match {s.subject_id} ({s.label}): " + "; ".join(
                f"{a}: {p}" for a, p in zip(self.actions, s.parameters, strict=True)))
        for clause, n in self.excluded_by_clause.items():
            out.append(f"  excluded by {clause}: {n:,}")
        for s in self.excluded_subjects:
            out.append(f"  excluded {s.subject_id} ({s.label}): {'; '.join(s.excluded_by)}")
        shown = len(self.matched_subjects) + len(self.excluded_subjects)
        if shown < self.matched + self.excluded:
            out.append(f"  ({shown:,} of {self.matched + self.excluded:,} subjects listed)")
        return out


def preview_definition(engine: Engine, actor: Actor, definition_id: str, at: dt.datetime | None = None,
                       rows: int = PREVIEW_ROWS) -> DefinitionPreview:
    """What the latest version of ``definition_id`` would match and do at ``at`` (default: now)."""
    check_permission(engine.ws, actor, "view", "definition", definition_id)
    definition, version, enabled = engine.catalog.latest(definition_id)
    at = at or engine.clock.now()
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    cond = definition.condition
    renderers = [compile_template(a.params) for a in definition.actions]
    trigger_ctx = {"event_id": "(preview)", "kind": "preview", "source": actor.audit_name, "event_type": "",
                   "occurred_at": at}
    def_ctx = {"id": definition.id, "title": definition.title, "version": version}
    p = DefinitionPreview(definition_id, version, enabled, at, cond.subject,
                          tuple(a.actioner for a in definition.actions))
    with engine.ws.read() as conn:
        reg = read_registers(conn)[cond.subject]
        for subject, failing in explain_condition(conn, cond, at):
            sid, label = str(subject[reg.key]), str(subject.get(reg.label) or subject[reg.key])
            if not failing:
                p.matched += 1
                if len(p.matched_subjects) < rows:
                    ctx = {"subject": subject, "trigger": trigger_ctx, "definition": def_ctx}
                    p.matched_subjects.append(PreviewedSubject(sid, label, tuple(_render(r, ctx) for r in renderers)))
                continue
            p.excluded += 1
            why = tuple(f"{cond.where[i].reason} (needs {cond.where[i].describe()})" for i in failing)
            for w in why:
                p.excluded_by_clause[w] = p.excluded_by_clause.get(w, 0) + 1
            if len(p.excluded_subjects) < rows:
                p.excluded_subjects.append(PreviewedSubject(sid, label, excluded_by=why))
    with engine.ws.transaction() as tx:
        tx.audit(actor.audit_name, "definition.previewed", "definition", definition_id,
                 {"version": version, "at": at.isoformat(), "matched": p.matched, "excluded": p.excluded})
    return p


def _render(renderer: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(renderer(ctx))
    except TemplateError as exc:  # shown as the run would record it
        return {"_template_error": str(exc)}

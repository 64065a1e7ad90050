"""Commands on an automation: run it now (operators, after seeing what it would match), enable or disable it
(admins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.roles import Actor
from engine.authz import check_permission
from engine.catalog import UnknownDefinition
from engine.commands.refusals import COMMAND_REFUSALS, NotEligible
from store.definitions import set_definition_enabled
from store.matching import count_matching_subjects

if TYPE_CHECKING:
    from engine.runtime import Engine


def run_now(engine: Engine, actor: Actor, definition_id: str, background: bool = False) -> list[str]:
    check_permission(engine.ws, actor, "run_now", "definition", definition_id)
    _, _, enabled = engine.catalog.latest(definition_id)
    if not enabled:
        raise NotEligible(f"{definition_id} is disabled; an admin must enable it before it can run.")
    return engine.fire(definition_id, kind="manual", actor_name=actor.audit_name, background=background)


# What "run now" or enable/disable may answer instead: a command refusal, or an automation that is unknown.
AUTOMATION_REFUSALS: tuple[type[Exception], ...] = (*COMMAND_REFUSALS, UnknownDefinition)


@dataclass(frozen=True)
class RunNowPreview:
    """What "run now" would do at this moment: asked before it is done, so an operator confirms knowingly."""

    definition_id: str
    title: str
    subject_kind: str
    subjects: int
    actions: tuple[str, ...]


def preview_run_now(engine: Engine, definition_id: str) -> RunNowPreview:
    """How many subjects the definition's latest version would match now (read only: no run, no audit)."""
    definition, _, _ = engine.catalog.latest(definition_id)
    with engine.ws.read() as conn:
        n = count_matching_subjects(conn, definition.condition, engine.clock.now())
    return RunNowPreview(definition_id, definition.title, definition.condition.subject, n,
                         tuple(a.actioner for a in definition.actions))


def set_enabled(engine: Engine, actor: Actor, definition_id: str, enabled: bool) -> None:
    check_permission(engine.ws, actor, "manage_definitions", "definition", definition_id)
    engine.catalog.latest(definition_id)
    with engine.ws.transaction() as tx:
        set_definition_enabled(tx, definition_id, enabled, actor.audit_name)
    engine.reschedule()

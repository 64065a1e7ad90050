"""A run's matched population against the previous run of the same automation: who entered and who left,
each with the clause that changed (core.population), and, when the definition's version changed between the
two, how many each version matches on the same data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.conditions import Related
from core.definitions import Definition, DefinitionError, parse_definition
from core.population import (
    NOT_EXPLAINED,
    MovedSubject,
    PopulationChange,
    explain_by_version,
    explain_move,
    split_population,
)
from engine.vocabulary import workspace_vocabulary
from store.definitions import read_definition_version
from store.matching import count_matching_subjects
from store.registers import read_registers
from store.views.population import read_acted, read_changes_between, read_matched, read_previous_run
from store.workspace import Workspace

LISTED = 200  # subjects explained per side on the page; the counts are whole


@dataclass(frozen=True)
class VersionChange:
    """Two versions' matches on the same data (the workspace now, at this run's trigger time)."""

    previous_version: int
    version: int
    previous_matches: int
    matches: int


def _definition(ws: Workspace, definition_id: str, version: int) -> Definition | None:
    with ws.read() as conn:
        v = read_definition_version(conn, definition_id, version)
    if v is None:
        return None
    try:
        return parse_definition(v.content, f"{definition_id}@v{version}", workspace_vocabulary(ws))
    except DefinitionError:
        return None


def _apply(fields: dict[str, Any], changes: list[dict[str, Any]], forwards: bool) -> tuple[dict[str, Any], str]:
    """The fields after replaying ``changes`` forwards (``after`` values) or undoing them backwards (``before``
    values); and whether the subject was there: "present", "withdrawn" or "absent" (not yet added)."""
    state, out = "present", dict(fields)
    for ch in (changes if forwards else list(reversed(changes))):
        kind, side = ch["change"], ch["after"] if forwards else ch["before"]
        values = json.loads(side) if side else {}
        if forwards:
            state = "withdrawn" if kind == "withdrawn" else "present"
        else:
            state = {"added": "absent", "restored": "withdrawn"}.get(kind, state)
        if isinstance(values, dict):
            out.update(values)
    return out, state


def compare_with_previous(ws: Workspace, run: dict[str, Any], listed: int = LISTED
                          ) -> tuple[PopulationChange, VersionChange | None] | None:
    """None for an automation's first run (nothing to compare with) or a definition that no longer parses."""
    with ws.read() as conn:
        previous = read_previous_run(conn, run)
        if previous is None:
            return None
        cur, prev = read_matched(conn, run["run_id"]), read_matched(conn, previous["run_id"])
    definition = _definition(ws, run["definition_id"], run["definition_version"])
    if definition is None:
        return None
    cond = definition.condition
    old = (_definition(ws, run["definition_id"], previous["definition_version"])
           if previous["definition_version"] != run["definition_version"] else None)
    if old is not None and old.condition.subject != cond.subject:
        old = None  # another register: nothing to compare subject by subject

    def by_version(why: list[str], fields: dict[str, Any], at: Any, entered: bool) -> list[str]:
        """No field explains it, but the definition changed: the clause of the version that excludes it."""
        if why != [NOT_EXPLAINED] or old is None:
            return why
        if entered:  # the old version would not have matched it now
            found = explain_by_version(old.condition, previous["definition_version"], field_types, fields, at)
        else:  # the new version does not match it
            found = explain_by_version(cond, run["definition_version"], field_types, fields, at)
        return found or why

    with ws.read() as conn:
        reg = read_registers(conn)[cond.subject]
        field_types = dict(reg.fields)
        entered_ids, left_ids, stayed = split_population(list(cur), list(prev))
        shown_entered, shown_left = entered_ids[:listed], left_ids[:listed]
        changes = read_changes_between(conn, reg.kind, shown_entered + shown_left, previous["triggered_at"],
                                       run["triggered_at"])
        acted = read_acted(conn, previous["run_id"], shown_left)

    def by_own_record(why: list[str], sid: str) -> list[str]:
        """Left, unexplained by its fields: the previous run's own action made the record a "no such record"
        clause now finds (the demo's KYC review: an evidence request is already open for the account)."""
        if why != [NOT_EXPLAINED]:
            return why
        found = [f"{clause.reason}: {previous['run_id']}'s item {item['item_id']} made "
                 f"{item['record_ref'] or 'its record'}"
                 for clause in cond.where if isinstance(clause.test, Related) and not clause.test.exists
                 for item in acted.get(sid, []) if item["action"].split(".", 1)[0] == clause.test.register]
        return found or why
    before_at, after_at = previous["triggered_at"], run["triggered_at"]
    entered = []
    for sid in shown_entered:
        label, now = cur[sid]
        then, state = _apply(now, changes.get(sid, []), forwards=False)
        why = ([f"added to the {reg.kind} register since"] if state == "absent" else
               [f"restored to the {reg.kind} register"] if state == "withdrawn" else
               by_version(explain_move(cond, field_types, then, before_at, now, after_at), now, after_at, True))
        entered.append(MovedSubject(sid, label, tuple(why)))
    left = []
    for sid in shown_left:
        label, then = prev[sid]
        now, state = _apply(then, changes.get(sid, []), forwards=True)
        why = ([f"withdrawn from the {reg.kind} register"] if state == "withdrawn" else
               by_own_record(by_version(explain_move(cond, field_types, then, before_at, now, after_at), now,
                                        after_at, False), sid))
        left.append(MovedSubject(sid, label, tuple(why)))
    change = PopulationChange(previous["run_id"], previous["definition_version"], len(cur), len(prev), stayed,
                              len(entered_ids), len(left_ids), tuple(entered), tuple(left))
    version_change = None
    if old is not None:
        with ws.read() as conn:
            version_change = VersionChange(
                previous["definition_version"], run["definition_version"],
                count_matching_subjects(conn, old.condition, run["triggered_at"]),
                count_matching_subjects(conn, cond, run["triggered_at"]))
    return change, version_change

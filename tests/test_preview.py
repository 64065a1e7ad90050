"""Preview before it acts: what an automation would match now or at a time, each match's rendered parameters,
the excluded subjects with the clauses that exclude them — no run, no item, no action; the preview audited."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cli.main import EXIT_OK, main
from core.roles import Actor
from engine import commands
from engine.authz import NotAuthorized
from engine.catalog import UnknownDefinition
from tests.support import actor, audit_of, build_engine, scalar

DUE = """\
id: due
title: Reviews due
trigger: {kind: schedule, cron: "0 6 * * mon"}
condition:
  subject: accounts
  where:
    - {field: status, op: eq, value: active, reason: the account is no longer active}
    - {field: kyc_review_due, op: lte, value: {days_after_trigger: 0}, reason: the KYC review is not due yet}
actions:
  - actioner: findings.create
    params: {title: "Review {{ subject.name }} by {{ subject.kyc_review_due }}", severity: low,
             owner: "{{ subject.manager }}"}
policies: {retry: {max_attempts: 1}}
"""


def _engine(make_engine):  # noqa: ANN001, ANN202
    engine = make_engine({"due": DUE}, accounts=4)
    with engine.ws.transaction() as tx:  # ACC-002 inactive; ACC-003 due only in 2027; ACC-004 both
        tx.conn.exec_driver_sql("UPDATE accounts SET status = 'inactive' WHERE account_id IN ('ACC-002', 'ACC-004')")
        tx.conn.exec_driver_sql("UPDATE accounts SET kyc_review_due = DATE '2027-03-01' "
                                "WHERE account_id IN ('ACC-003', 'ACC-004')")
    return engine


def test_a_preview_says_what_would_match_and_why_the_rest_would_not_and_runs_nothing(make_engine) -> None:
    engine = _engine(make_engine)
    p = commands.preview_definition(engine, actor(engine, "viewer"), "due")
    assert (p.matched, p.excluded, p.subject_kind, p.actions, p.version) == (1, 3, "accounts", ("findings.create",), 1)
    [m] = p.matched_subjects
    assert (m.subject_id, m.label) == ("ACC-001", "Member 1")
    assert m.parameters == ({"title": "Review Member 1 by 2026-07-01", "severity": "low", "owner": "m.one"},)
    inactive = "the account is no longer active (needs status is 'active')"
    why = {s.subject_id: s.excluded_by for s in p.excluded_subjects}
    assert why["ACC-002"] == (inactive,)
    assert len(why["ACC-003"]) == 1 and why["ACC-003"][0].startswith("the KYC review is not due yet (needs kyc")
    assert why["ACC-004"] == (inactive, why["ACC-003"][0])  # every clause that fails, not only the first
    assert p.excluded_by_clause == {inactive: 2, why["ACC-003"][0]: 2}
    assert scalar(engine, "SELECT count(*) FROM runs") == 0  # nothing ran, nothing acted
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
    [entry] = audit_of(engine, "definition.previewed")
    assert (entry["actor"], entry["entity_id"]) == ("member:viewer", "due")
    assert entry["payload"]["matched"] == 1 and entry["payload"]["excluded"] == 3 and entry["payload"]["version"] == 1


def test_a_preview_at_a_later_time_matches_what_will_be_due(make_engine) -> None:
    engine = _engine(make_engine)
    later = commands.preview_definition(engine, actor(engine, "admin"), "due", dt.datetime(2027, 3, 1, 6))
    assert [s.subject_id for s in later.matched_subjects] == ["ACC-001", "ACC-003"]
    assert later.at == dt.datetime(2027, 3, 1, 6, tzinfo=dt.UTC)
    assert audit_of(engine, "definition.previewed")[0]["payload"]["at"] == "2027-03-01T06:00:00+00:00"


def test_a_preview_of_an_unknown_automation_or_by_no_member_is_refused(make_engine) -> None:
    engine = _engine(make_engine)
    with pytest.raises(UnknownDefinition, match="no automation 'nope'"):
        commands.preview_definition(engine, actor(engine, "admin"), "nope")
    with pytest.raises(NotAuthorized, match="may not view definition due"):
        commands.preview_definition(engine, Actor("ghost", frozenset()), "due")
    assert audit_of(engine, "definition.previewed") == []


def test_the_command_line_prints_the_preview(tmp_path: Path) -> None:
    engine = build_engine(tmp_path, {"due": DUE}, accounts=3)
    definitions = str(engine.definitions_dir)
    engine.shutdown()
    engine.ws.close()
    lines: list[str] = []
    db = str(tmp_path / "ws.duckdb")
    code = main(["--db", db, "--definitions", definitions, "preview", "due", "--as", "sigrid", "--at",
                 "2026-10-05T06:00"], out=lines.append)
    assert code == EXIT_OK, lines
    assert lines[0] == ("due v1 (enabled) at 2026-10-05 06:00 UTC: 3 accounts would match, 0 excluded; actions: "
                        "findings.create. Nothing was run.")
    assert lines[1].startswith("  match ACC-001 (Member 1): findings.create: {'title': 'Review Member 1 by")
    lines.clear()
    assert main(["--db", db, "--definitions", definitions, "preview", "due", "--as", "sigrid", "--at", "soon"],
                out=lines.append) != EXIT_OK
    assert "'soon' is not a time" in " ".join(lines)

"""Every class of bad definition file gets one exact message — file, field, what was expected, what was found,
and how to fix it — and a valid definition in the same folder still loads, versions and runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.definitions import DefinitionError, load_definition_files
from tests.support import audit_of, demo_vocabulary, finding_definition, items_of, run_of

GOOD = finding_definition("good")
ACCOUNT_FIELDS = "account_id, name, manager, status, kyc_review_due, risk_rating"
CRON = 'a 5-field cron expression such as "0 6 * * mon" (minute hour day month weekday)'
CRON_FIX = '; for example "0 6 * * mon" fires at 06:00 every Monday'

# name → (file text, the exact message with {path} for the file)
CASES: dict[str, tuple[str, str]] = {
    "invalid-yaml": (
        "id: [unclosed\ntitle: x\n",
        "{path}: field '(whole file)': expected valid YAML; found \"a syntax error at line 2, column 6 "
        "(expected ',' or ']', but got ':')\". Fix: correct the YAML at line 2, column 6 (brackets, quotes and "
        "indentation); each definition is one YAML mapping"),
    "empty-file": (
        "",
        "{path}: field '(whole file)': expected a mapping of keys to values; found 'nothing'. Fix: write the "
        "definition as one YAML mapping with id, title, trigger, condition and actions"),
    "missing-title": (
        GOOD.replace("title: Test good\n", ""),
        "{path}: field 'title': expected a text value; found 'nothing (the field is missing)'. Fix: add 'title:'"),
    "missing-trigger": (
        GOOD.replace('trigger: {kind: schedule, cron: "0 6 * * mon"}\n', ""),
        "{path}: field 'trigger': expected a mapping of keys to values; found 'nothing'. Fix: add 'trigger:' with "
        "its keys indented below it"),
    "missing-actions": (
        GOOD.split("actions:")[0],
        "{path}: field 'actions': expected a list of one or more actions; found 'nothing'. Fix: add 'actions:' "
        "with at least one '- actioner: …' and its params"),
    "missing-param": (
        GOOD.replace("      severity: medium\n", ""),
        "{path}: field 'actions[0].params.severity': expected a value for 'severity' (required by "
        "findings.create); found 'nothing'. Fix: add 'severity:' under params"),
    "unknown-actioner": (
        GOOD.replace("findings.create", "findings.destroy"),
        "{path}: field 'actions[0].actioner': expected a known actioner (findings.create, "
        "evidence_requests.create, assessments.schedule, lifecycle.open); found 'findings.destroy'. Fix: did you "
        "mean 'findings.create'? Otherwise use one of the actioners listed"),
    "unknown-subject": (
        GOOD.replace("subject: accounts", "subject: planets"),
        "{path}: field 'condition.subject': expected a subject kind (accounts, aml_monitor_results, "
        "exceptions, incident_reviews, incidents, rule_changes, suppliers, findings, evidence_requests, "
        "assessments, lifecycle_instances); found 'planets'. Fix: use one of the subject kinds listed"),
    "misspelt-subject": (
        GOOD.replace("subject: accounts", "subject: acounts"),
        "{path}: field 'condition.subject': expected a subject kind (accounts, aml_monitor_results, "
        "exceptions, incident_reviews, incidents, rule_changes, suppliers, findings, evidence_requests, "
        "assessments, lifecycle_instances); found 'acounts'. Fix: did you mean 'accounts'? Otherwise use one "
        "of the subject kinds listed"),
    "unknown-approval-key": (
        GOOD.replace("approval: {required: false}", "approval: {required: false, due_in: 3}"),
        "{path}: field 'policies.approval.due_in': expected one of due_within_hours, required; found 'due_in'. "
        "Fix: remove it or correct its spelling"),
    "approval-due-not-a-number": (
        GOOD.replace("approval: {required: false}", "approval: {required: true, due_within_hours: soon}"),
        "{path}: field 'policies.approval.due_within_hours': expected a positive number of hours; found 'soon'. "
        "Fix: write how many hours an approval may wait, e.g. due_within_hours: 72"),
    "approval-required-not-a-flag": (
        GOOD.replace("approval: {required: false}", "approval: {required: sometimes}"),
        "{path}: field 'policies.approval.required': expected true or false; found 'sometimes'."),
    "bad-cron": (
        GOOD.replace('"0 6 * * mon"', '"61 6 * * mon"'),
        "{path}: field 'trigger.cron': expected " + CRON + "; found '61 6 * * mon'. Fix: correct the expression "
        "(Error validating expression '61': the last value (61) is higher than the maximum value (59))" + CRON_FIX),
    "short-cron": (
        GOOD.replace('"0 6 * * mon"', '"0 6 * *"'),
        "{path}: field 'trigger.cron': expected " + CRON + "; found '0 6 * *'. Fix: correct the expression "
        "(Wrong number of fields; got 4, expected 5)" + CRON_FIX),
    "condition-field": (
        GOOD.replace("field: status", "field: colour"),
        "{path}: field 'condition.where[0].field': expected a field of accounts (" + ACCOUNT_FIELDS + "); found "
        "'colour'. Fix: use one of the fields of accounts listed"),
    "condition-op": (
        GOOD.replace("op: eq", "op: equals"),
        "{path}: field 'condition.where[0].op': expected one of eq, ne, lt, lte, gt, gte, in, not_in, is_null, "
        "not_null; found 'equals'. Fix: use one of the operators listed"),
    "template-field": (
        GOOD.replace("subject.manager", "subject.managr"),
        "{path}: field 'actions[0].params.owner': expected placeholders naming a field of accounts (e.g. "
        "{{ subject.account_id }}) or trigger/definition; found '{{ subject.managr }}'. Fix: 'managr' does not "
        "exist on subject; name one of " + ACCOUNT_FIELDS + " (did you mean 'manager'?)"),
    "unknown-event": (
        GOOD.replace('{kind: schedule, cron: "0 6 * * mon"}', "{kind: event, event: planet.exploded}"),
        "{path}: field 'trigger.event': expected one of account.deactivated, aml_monitor_result.failed, "
        "exception.closed, incident.closed; found 'planet.exploded'. Fix: use one of the events listed"),
    "title-not-text": (
        GOOD.replace("title: Test good", "title: 2026"),
        "{path}: field 'title': expected a non-empty text value; found 2026. Fix: write some text after 'title:' "
        "(quote it if it looks like a number, a date or true/false)"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_error_class_has_one_exact_message_and_the_valid_file_still_loads(tmp_path: Path, name: str) -> None:
    text, message = CASES[name]
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(text)
    (tmp_path / "fine.yaml").write_text(finding_definition("fine"))
    report = load_definition_files(tmp_path, demo_vocabulary())
    assert [d.id for _, d in report.definitions] == ["fine"]
    [err] = report.errors
    assert isinstance(err, DefinitionError) and err.path == str(bad)
    assert str(err) == message.replace("{path}", str(bad))


def test_a_rejected_file_is_audited_with_its_message_and_the_others_keep_running(make_engine) -> None:
    defs = {name: text for name, (text, _) in CASES.items()}
    engine = make_engine({**defs, "good": GOOD}, accounts=3, allow_rejected=True)
    assert engine.catalog.latest("good")[1] == 1
    rejected = {Path(e["entity_id"]).stem: e["payload"]["errors"] for e in audit_of(engine, "definition.rejected")}
    folder = engine.definitions_dir
    assert rejected == {name: [message.replace("{path}", str(folder / f"{name}.yaml"))]
                        for name, (_, message) in CASES.items()}
    [run_id] = engine.fire("good")
    assert run_of(engine, run_id)["status"] == "completed"
    assert {i["outcome"] for i in items_of(engine, run_id).values()} == {"succeeded"}
    assert len(items_of(engine, run_id)) == 3

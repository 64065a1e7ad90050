"""Each kind of definition error names the file, the field, what was expected and what was found."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definitions import load_definition_files
from tests.engine_fixtures import definition

GOOD = definition("good")


@pytest.mark.parametrize(("text", "expected"), [
    ("id: [unclosed", "field '(whole file)': expected valid YAML; found 'a syntax error at line"),
    (GOOD.replace("title: Test good\n", ""), "field 'title': expected a text value; found 'nothing (the field is missing)'"),
    (GOOD.replace("findings.create", "findings.destroy"), "field 'actions[0].actioner': expected a known actioner"),
    (GOOD.replace("subject: accounts", "subject: planets"), "field 'condition.subject': expected a subject kind"),
    (GOOD.replace('"0 6 * * mon"', '"61 6 * * mon"'), "field 'trigger.cron': expected a 5-field cron expression"),
    (GOOD.replace("field: status", "field: colour"), "field 'condition.where[0].field': expected a field of accounts"),
    (GOOD.replace("subject.manager", "subject.favourite_colour"),
     "field 'actions[0].params.owner': expected placeholders naming a field of accounts"),
    (GOOD.replace('{kind: schedule, cron: "0 6 * * mon"}', "{kind: event, event: planet.exploded}"),
     "field 'trigger.event': expected one of"),
])
def test_error_message_names_file_field_expected_found(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "good.yaml").write_text(GOOD.replace("id: good", "id: fine"))
    report = load_definition_files(tmp_path)
    assert [d.id for _, d in report.definitions] == ["fine"]  # the valid file still loads
    [err] = report.errors
    assert str(err).startswith(f"{tmp_path / 'bad.yaml'}: ")
    assert expected in str(err)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    report = load_definition_files(tmp_path)
    assert len(report.definitions) == 1
    assert "expected an id no other file uses" in str(report.errors[0])


def test_each_distinct_content_is_a_new_version(tmp_path: Path) -> None:
    from tests.engine_fixtures import make_engine
    engine, _ = make_engine(tmp_path, {"d": GOOD.replace("id: good", "id: d")})
    [run1] = engine.fire("d")
    engine.load_definitions()  # unchanged: no new version
    assert engine.catalog.latest("d")[1] == 1
    (engine.definitions_dir / "d.yaml").write_text(GOOD.replace("id: good", "id: d").replace("medium", "high"))
    engine.load_definitions()
    assert engine.catalog.latest("d")[1] == 2
    [run2] = engine.fire("d", kind="manual", actor_name="member:sigrid")
    from store.runs import read_run
    with engine.ws.read() as conn:
        assert (read_run(conn, run1)["definition_version"], read_run(conn, run2)["definition_version"]) == (1, 2)

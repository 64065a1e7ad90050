"""Definitions: every error names the file, the field, what was expected and what was found; a bad file
never stops the valid ones; each distinct content is a new version, and a run pins the version it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.definitions import DefinitionError, load_definition_files
from store.definitions import read_definition_versions
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import audit_of, demo_vocabulary, finding_definition, items_of, run_of

GOOD = finding_definition("good")

# name → (file text, field, words of "expected", words of "found")
BAD = {
    "invalid-yaml": ("id: [unclosed\ntitle: x\n", "(whole file)", "valid YAML", "a syntax error at line 2"),
    "missing-field": (GOOD.replace("title: Test good\n", ""), "title", "a text value",
                      "nothing (the field is missing)"),
    "unknown-actioner": (GOOD.replace("findings.create", "findings.destroy"), "actions[0].actioner",
                         "a known actioner (findings.create", "findings.destroy"),
    "unknown-subject": (GOOD.replace("subject: accounts", "subject: planets"), "condition.subject",
                        "a subject kind (accounts", "planets"),
    "bad-cron": (GOOD.replace('"0 6 * * mon"', '"61 6 * * mon"'), "trigger.cron",
                 "a 5-field cron expression", "61 6 * * mon"),
    "short-cron": (GOOD.replace('"0 6 * * mon"', '"0 6 * *"'), "trigger.cron", "a 5-field cron expression",
                   "0 6 * *"),
    "condition-field": (GOOD.replace("field: status", "field: colour"), "condition.where[0].field",
                        "a field of accounts (account_id", "colour"),
    "template-field": (GOOD.replace("subject.manager", "subject.favourite_colour"), "actions[0].params.owner",
                       "placeholders naming a field of accounts", "{{ subject.favourite_colour }}"),
    "unknown-event": (GOOD.replace('{kind: schedule, cron: "0 6 * * mon"}', "{kind: event, event: planet.exploded}"),
                      "trigger.event", "one of account.deactivated", "planet.exploded"),
}


@pytest.mark.parametrize("name", BAD)
def test_error_names_file_field_expected_and_found(tmp_path: Path, name: str) -> None:
    text, fld, expected, found = BAD[name]
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(text)
    (tmp_path / "fine.yaml").write_text(finding_definition("fine"))
    report = load_definition_files(tmp_path, demo_vocabulary())
    assert [d.id for _, d in report.definitions] == ["fine"]  # the valid file still loads
    [err] = report.errors
    assert isinstance(err, DefinitionError)
    assert (err.path, err.field) == (str(bad), fld)
    assert expected in err.expected
    assert found in str(err.found)
    message = str(err)
    assert message.startswith(f"{bad}: field '{fld}': expected ")
    assert expected in message and found in message


def test_duplicate_id_is_refused_naming_the_file_that_has_it(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    report = load_definition_files(tmp_path, demo_vocabulary())
    assert [(p, d.id) for p, d in report.definitions] == [(str(tmp_path / "a.yaml"), "good")]
    [err] = report.errors
    assert (err.path, err.field, err.found) == (str(tmp_path / "b.yaml"), "id", "good")
    assert "expected an id no other file uses" in str(err)
    assert f"{tmp_path / 'a.yaml'} already defines it" in str(err)


def test_bad_files_never_stop_the_valid_ones(tmp_path: Path) -> None:
    for name, (text, *_rest) in BAD.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    for def_id in ("alpha", "omega", "zulu"):
        (tmp_path / f"{def_id}.yaml").write_text(finding_definition(def_id))
    (tmp_path / "zz-duplicate.yaml").write_text(finding_definition("alpha"))
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00garbage")
    report = load_definition_files(tmp_path, demo_vocabulary())
    assert sorted(d.id for _, d in report.definitions) == ["alpha", "omega", "zulu"]
    assert sorted(Path(e.path).stem for e in report.errors) == sorted(
        [*BAD, "zz-duplicate", "binary"])  # one error per bad file, each naming its own file


def test_the_catalog_versions_valid_files_and_records_each_rejection_once(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d"), "broken": BAD["bad-cron"][0]},
                         allow_rejected=True)
    assert engine.catalog.latest("d")[1] == 1
    [rejected] = audit_of(engine, "definition.rejected")
    assert rejected["entity_id"].endswith("broken.yaml")
    assert "field 'trigger.cron'" in rejected["payload"]["errors"][0]
    engine.load_definitions()  # the same bad content again: not recorded again
    assert len(audit_of(engine, "definition.rejected")) == 1


def test_each_distinct_content_is_a_new_version_and_runs_pin_theirs(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    path = engine.definitions_dir / "d.yaml"
    run_v1 = engine.fire("d")[0]

    engine.catalog.load_directory(engine.definitions_dir, "member:admin")  # unchanged: no new version
    assert engine.catalog.latest("d")[1] == 1
    assert len(audit_of(engine, "definition.versioned", "d")) == 1

    path.write_text(finding_definition("d", severity="high"))
    engine.catalog.load_directory(engine.definitions_dir, "member:admin")
    assert engine.catalog.latest("d")[1] == 2
    engine.catalog.load_directory(engine.definitions_dir, "member:admin")  # re-read: still 2
    assert engine.catalog.latest("d")[1] == 2

    path.write_text(finding_definition("d"))  # back to the first content: distinct from v2, so v3
    engine.catalog.load_directory(engine.definitions_dir, "member:admin")
    assert engine.catalog.latest("d")[1] == 3
    path.write_text(finding_definition("d", severity="high"))
    engine.catalog.load_directory(engine.definitions_dir, "member:admin")
    run_v4 = engine.fire("d", kind="manual", actor_name="member:sigrid")[0]

    with engine.ws.read() as conn:
        versions = read_definition_versions(conn, "d")
    assert [v.version for v in versions] == [1, 2, 3, 4]
    assert versions[0].content_hash == versions[2].content_hash != versions[1].content_hash
    assert [e["payload"]["version"] for e in audit_of(engine, "definition.versioned", "d")] == [1, 2, 3, 4]

    assert (run_of(engine, run_v1)["definition_version"], run_of(engine, run_v4)["definition_version"]) == (1, 4)
    # Each run executed exactly what its version said, and its items snapshot the rendered parameters.
    assert {json.loads(i["parameters"])["severity"] for i in items_of(engine, run_v1).values()} == {"medium"}
    assert {json.loads(i["parameters"])["severity"] for i in items_of(engine, run_v4).values()} == {"high"}
    assert engine.catalog.get("d", 1).content == finding_definition("d")
    assert engine.catalog.get("d", 2).content == finding_definition("d", severity="high")

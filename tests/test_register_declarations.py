"""Registers declared as data: a bad declaration is refused with its file, field and fix; a new register
gets its table and version; a field added is a new column (rows loaded before hold nothing there) and a new
version, audited; a field removed or retyped, or the key changed, is refused with what to do instead — once
per content — and the version in effect keeps working; definitions are checked against the declared
fields and events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.registers import RegisterError, parse_register
from engine.registers import load_register_folder
from store.registers import RESERVED
from store.subjects import insert_subjects, load_rows
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import pg_server_fixture, workspace_db_fixture  # noqa: F401

MERCHANTS = """\
id: merchants
title: Merchants
key: merchant_id
label: name
fields:
  merchant_id: string
  name: string
  status: string
  city: string
events:
  merchant.suspended: {field: status, becomes: suspended}
"""


def error_of(text: str) -> str:
    with pytest.raises(RegisterError) as caught:
        parse_register(text, "registers/x.yaml", RESERVED)
    return str(caught.value)


@pytest.mark.parametrize(("text", "message"), [
    (MERCHANTS.replace("id: merchants", "id: Merchants!"), "registers/x.yaml: field 'id': expected a table name: "
     "lowercase letters, digits and underscores, starting with a letter; found 'Merchants!'. Fix: rename it, e.g. "
     "merchants"),
    (MERCHANTS.replace("id: merchants", "id: runs"), "registers/x.yaml: field 'id': expected a name that is not "
     "one of Runledger's own tables; found 'runs'."),
    (MERCHANTS.replace("status: string", "status: text"), "registers/x.yaml: field 'fields.status': expected one "
     "of string, integer, number, boolean, date, timestamp; found 'text'. Fix: give the field one of these types"),
    (MERCHANTS.replace("key: merchant_id", "key: merchant"), "registers/x.yaml: field 'key': expected one of the "
     "fields (merchant_id, name, status, city); found 'merchant'. Fix: declare the key among the fields"),
    (MERCHANTS.replace("field: status", "field: state"), "registers/x.yaml: field "
     "'events.merchant.suspended.field': expected one of the fields (merchant_id, name, status, city); found "
     "'state'."),
    (MERCHANTS + "colour: blue\n", "registers/x.yaml: field 'colour': expected one of description, events, "
     "fields, id, key, label, required, signals, source, title; found 'colour'. Fix: remove it or correct its "
     "spelling"),
    ("fields: [\n", "registers/x.yaml: field '(whole file)': expected valid YAML; found 'a syntax error at line 2, "
                    "column 1'. Fix: correct the YAML at line 2, column 1"),
])
def test_a_bad_register_names_its_file_field_and_fix(text: str, message: str) -> None:
    got = error_of(text)
    assert got.startswith(message), got


@pytest.fixture
def ws(workspace_db: str) -> Iterator[Workspace]:
    w = Workspace(workspace_db)
    yield w
    w.close()


def declare(ws: Workspace, folder: Path, text: str) -> list[str]:
    folder.mkdir(exist_ok=True)
    (folder / "merchants.yaml").write_text(text)
    return load_register_folder(ws, folder, "member:admin").errors


def audit(ws: Workspace, event: str) -> list[tuple[str, str]]:
    with ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT entity_id, payload FROM audit_log WHERE event = :e ORDER BY seq"), {"e": event}).all()]


def test_a_field_added_is_a_new_column_and_a_new_version(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "registers"
    assert declare(ws, folder, MERCHANTS) == []
    with ws.transaction() as tx:
        insert_subjects(tx, "merchants", [{"merchant_id": "M-1", "name": "Nordlys", "status": "active"}])
    text = MERCHANTS.replace("  city: string\n", "  city: string\n  risk_tier: string\n")
    assert declare(ws, folder, text) == []
    with ws.read() as conn:
        assert conn.execute(sa.text("SELECT merchant_id, risk_tier FROM merchants")).all() == [("M-1", None)]
        versions = conn.execute(sa.text("SELECT version FROM register_versions WHERE register_id = 'merchants' "
                                        "ORDER BY 1")).scalars().all()
    assert versions[-1] == len(versions) and len(versions) >= 2
    assert json.loads(audit(ws, "register.versioned")[-1][1])["added_fields"] == ["risk_tier"]
    assert declare(ws, folder, text) == []  # the same content again: no new version
    assert len(audit(ws, "register.versioned")) == len(versions)


@pytest.mark.parametrize(("change", "said"), [
    (lambda t: t.replace("  city: string\n", ""), "field city was removed: fields are kept for the evidence "
                                                  "already recorded; put it back"),
    (lambda t: t.replace("city: string", "city: integer"), "field city changed type from string to integer: "
                                                           "add a new field of the new type instead"),
    (lambda t: t.replace("key: merchant_id", "key: name"), "the key changed from merchant_id to name: a register's "
                                                           "key cannot change; declare a new register"),
])
def test_an_incompatible_change_is_refused_once_and_the_version_in_effect_keeps_working(
        ws: Workspace, tmp_path: Path, change, said: str) -> None:  # noqa: ANN001
    folder = tmp_path / "registers"
    assert declare(ws, folder, MERCHANTS) == []
    [error] = declare(ws, folder, change(MERCHANTS))
    assert "the change to register merchants is refused, and version 1 stays in effect: " in error and said in error
    declare(ws, folder, change(MERCHANTS))  # read again: refused again, recorded and audited once
    assert len(audit(ws, "register.rejected")) == 1
    with ws.transaction() as tx:  # the declaration in effect still takes rows
        insert_subjects(tx, "merchants", [{"merchant_id": "M-2", "name": "Fjord", "status": "suspended",
                                           "city": "Tromsø"}])
    with ws.read() as conn:
        assert conn.execute(sa.text("SELECT status FROM merchants")).scalars().all() == ["suspended"]


def test_each_subject_is_held_once_without_a_key_index_in_memory(ws: Workspace, tmp_path: Path,
                                                                 backend: str) -> None:
    """On DuckDB a register's key carries no PRIMARY KEY (its index would be held whole in memory by an
    import of millions of rows): the one load path keeps it unique — a load whose rows repeat a key is
    refused and writes nothing, and loading a key again changes its row instead of adding one. PostgreSQL's
    indexes spill to disk, so there the key is the PRIMARY KEY too; the load path behaves alike."""
    assert declare(ws, tmp_path / "registers", MERCHANTS) == []
    with ws.read() as conn:
        if backend == "duckdb":
            assert conn.execute(sa.text("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'merchants' "
                                        "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')")).scalar() == 0
        else:
            assert conn.execute(sa.text(
                "SELECT kcu.column_name FROM information_schema.table_constraints tc JOIN "
                "information_schema.key_column_usage kcu USING (constraint_schema, constraint_name) "
                "WHERE tc.table_name = 'merchants' AND tc.constraint_type = 'PRIMARY KEY'")).scalars().all() \
                == ["merchant_id"]
        assert conn.execute(sa.text("SELECT is_nullable FROM information_schema.columns WHERE table_name = "
                                    "'merchants' AND column_name = 'merchant_id'")).scalar() == "NO"
    with pytest.raises(ValueError, match=r"^the rows loaded into merchants repeat the key 'M-1'; each subject once$"):
        with ws.transaction() as tx:
            load_rows(tx, "merchants", [{"merchant_id": "M-1", "name": "A"}, {"merchant_id": "M-1", "name": "B"}],
                      origin="test", source="test", actor="member:admin")
    with ws.transaction() as tx:
        load_rows(tx, "merchants", [{"merchant_id": "M-1", "name": "A"}], origin="test", source="test",
                  actor="member:admin")
    with ws.transaction() as tx:
        load_rows(tx, "merchants", [{"merchant_id": "M-1", "name": "B"}], origin="test", source="test",
                  actor="member:admin")
    with ws.read() as conn:
        assert conn.execute(sa.text("SELECT merchant_id, name FROM merchants")).all() == [("M-1", "B")]
        assert conn.execute(sa.text("SELECT change FROM subject_changes WHERE register_id = 'merchants' "
                                    "ORDER BY changed_at, change")).scalars().all() == ["added", "changed"]

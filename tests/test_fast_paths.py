"""The executor's fast paths give exactly what the plain code they replaced gives.

Throughput work (bench/bench_executor.py) replaced per-call JSON encoders, per-item template parsing, the
audit timestamp format, aware-datetime conversion to Arrow, long IN lists and re-parsing parameters to hash
them. Each stand-in must be indistinguishable: hashes and audit chains depend on the exact text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from core.conditions import Clause, Compare, Condition
from core.templates import TemplateError, compile_template, render
from engine.executor import _dumps_params, _dumps_sorted, _jsonable_for, params_hash
from store import audit
from store.bulk import _array
from store.matching import check_subjects
from store.registers import read_registers
from store.subjects import insert_subjects, to_jsonable
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import demo_workspace

UTC = dt.UTC
CONTEXT = {
    "subject": {"name": "Ålesund Credit", "manager": "m.one", "count": 3, "due": dt.date(2026, 7, 1),
                "seen": dt.datetime(2026, 7, 6, 6, 0, tzinfo=UTC), "empty": None, "flag": False},
    "trigger": {"event_id": "EV-0000001", "kind": "schedule"},
    "definition": {"id": "d", "version": 2},
}
TEMPLATES = [
    "plain text", "", "{{ subject.name }}", "  {{subject.count}}  ", "{{ subject.due }}", "{{ subject.seen }}",
    "{{ subject.empty }}", "{{ subject.flag }}",
    "Review {{ subject.name }} ({{ subject.count }}) by {{ subject.manager }}",
    "{{ subject.empty }} and {{ subject.flag }}", "{{ trigger.event_id }}/{{ definition.version }}{{ subject.due }}",
    "{{ not a placeholder }", 7, None, True,
    {"title": "T {{ subject.name }}", "n": "{{ subject.count }}", "nested": {"l": ["{{ definition.id }}", 1]}},
    ["{{ subject.due }}", {"x": "{{ trigger.kind }}!"}],
]


@pytest.mark.parametrize("template", TEMPLATES, ids=[repr(t)[:40] for t in TEMPLATES])
def test_a_compiled_template_renders_exactly_as_render(template: object) -> None:
    assert compile_template(template)(CONTEXT) == render(template, CONTEXT)


@pytest.mark.parametrize("template", ["{{ subject.missing }}", "x {{ nothing.here }} y", {"a": ["{{ subject.nope }}"]}])
def test_a_compiled_template_fails_as_render_fails(template: object) -> None:
    with pytest.raises(TemplateError) as plain:
        render(template, CONTEXT)
    with pytest.raises(TemplateError) as compiled:
        compile_template(template)(CONTEXT)
    assert str(compiled.value) == str(plain.value)


@pytest.mark.parametrize("value", [
    dt.datetime(2026, 7, 6, 6, 0, 0, 123456, tzinfo=UTC), dt.datetime(2026, 7, 6, 6, 0, tzinfo=UTC),
    dt.datetime(2026, 7, 6, 8, 0, 0, 5, tzinfo=ZoneInfo("Europe/Oslo")),
    dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
])
def test_the_audit_timestamp_format_is_unchanged(value: dt.datetime) -> None:
    assert audit.format_ts(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_prebuilt_encoders_spell_json_as_json_dumps() -> None:
    values = [{"b": 1, "a": [1.5, None, True], "ü": "ß€", "d": dt.date(2026, 7, 1)}, "text", 3, {"z": {"y": 1}}]
    for v in values:
        assert audit.canonical_json(v) == json.dumps(v, sort_keys=True, separators=(",", ":"), default=str,
                                                     ensure_ascii=False)
        assert _dumps_params(v) == json.dumps(v, sort_keys=True, default=str)
    for v in values[1:]:
        assert _dumps_sorted(v) == json.dumps(v, sort_keys=True)


def test_hashing_the_stored_parameters_is_params_hash() -> None:
    for params in [{"title": "Review Ålesund (ACC-001)", "severity": "medium", "owner": "m.one"},
                   {"n": 3, "f": 1.25, "none": None, "l": [1, "x"], "nested": {"b": 2, "a": 1}},
                   {"due": dt.date(2026, 7, 1)}, {"_template_error": "{{ subject.x }} has no value"}]:
        text = _dumps_params(params)  # what the executor stores as the item's parameters
        assert hashlib.sha256(text.encode()).hexdigest() == params_hash(json.loads(text))


def test_register_rows_become_json_as_to_jsonable_makes_them(workspace_db: str) -> None:
    row = {"account_id": "ACC-001", "name": "N", "manager": "m", "status": "active",
           "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"}
    opened = dt.datetime(2026, 7, 6, 6, 0, 1, 2, tzinfo=UTC)
    ws = demo_workspace(workspace_db)  # the registers as each backend reads their declarations back
    try:
        with ws.read() as conn:
            registers = read_registers(conn)
    finally:
        ws.close()
    assert _jsonable_for(registers["accounts"])(row) == to_jsonable(row)
    assert _jsonable_for(registers["incidents"])({"closed_at": None, "opened_at": opened}) == \
        to_jsonable({"closed_at": None, "opened_at": opened})


def test_timestamps_reach_arrow_as_pyarrow_would_convert_them() -> None:
    values = [dt.datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC), None,
              dt.datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Europe/Oslo")), dt.datetime(2026, 7, 1, 12, 0)]
    typ = pa.timestamp("us", tz="UTC")
    assert _array(values, typ).equals(pa.array(values, type=typ))


def test_a_long_id_list_finds_exactly_the_subjects_asked_for(workspace_db: str) -> None:
    """DuckDB matches more than 64 ids through a registered array; PostgreSQL binds them as a list."""
    ws = demo_workspace(workspace_db)
    with ws.transaction() as tx:
        insert_subjects(tx, "accounts", [
            {"account_id": f"ACC-{i:04d}", "name": f"M {i}", "manager": "m",
             "status": "active" if i % 7 else "inactive",
             "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"} for i in range(1, 1001)])
    wanted = [f"ACC-{i:04d}" for i in range(100, 900, 3)] + ["ACC-9999", "ACC-0150x"]  # two that do not exist
    cond = Condition("accounts", (Clause(Compare("status", "eq", "active"), "the account is no longer active"),), ())
    with ws.read() as conn:
        checks = check_subjects(conn, cond, dt.datetime(2026, 7, 6, tzinfo=UTC), wanted)
    assert sorted(checks) == sorted(wanted)
    for sid in wanted[:-2]:
        reason, subject = checks[sid]
        assert subject["account_id"] == sid and subject["kyc_review_due"] == dt.date(2026, 7, 1)
        assert reason == (None if int(sid[4:]) % 7 else "the account is no longer active")
    assert checks["ACC-9999"] == ("the accounts record ACC-9999 no longer exists", {})
    ws.close()

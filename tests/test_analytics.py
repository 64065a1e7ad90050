"""Quarterly analytics and exports: figures equal SQL over the tables, expected-vs-actual firing catches a
paused schedule, and every chart and table export is a valid file that carries its provenance and is
audited (and refused to a viewer).

The firing checks, over an engine's own workspace, run on both backends (tests/backends.py); the figures and
exports read the demo quarter seeded on DuckDB (the same read models over the demo seeded on PostgreSQL:
tests/test_demo_postgres.py)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import zipfile
from collections.abc import Iterator

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from pypdf import PdfReader

from core.periods import AnalyticsPeriod
from engine.authz import NotAuthorized, load_actor
from engine.commands import set_enabled
from reporting.analytics import build_analytics
from reporting.exports import ExportRefused, export_chart, export_table, render_table
from reporting.provenance import Provenance
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import START, finding_definition

UTC = dt.UTC
Q3 = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC),
                     "Q3 2026 (2026-07-01 to 2026-09-30)")
IN_Q3 = ("r.triggered_at >= TIMESTAMPTZ '2026-07-01 00:00:00+00' "
         "AND r.triggered_at < TIMESTAMPTZ '2026-10-01 00:00:00+00'")


@pytest.fixture(scope="module")
def demo_copy(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("analytics") / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    return str(path)


@pytest.fixture
def ws(demo_copy: str) -> Iterator[Workspace]:
    w = Workspace(demo_copy)
    yield w
    w.close()


def sql(path: str, query: str) -> list[tuple]:
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_the_quarter_per_automation_equals_sql_over_the_tables(demo_copy: str) -> None:
    ws = Workspace(demo_copy)
    try:
        a = build_analytics(ws, Q3)
    finally:
        ws.close()
    runs = dict((d, (n, acts)) for d, n, acts in sql(
        demo_copy, f"SELECT definition_id, count(*), sum(actions_invoked) FROM runs r WHERE {IN_Q3} GROUP BY 1"))
    items = {}
    for d, outcome, n in sql(demo_copy, f"SELECT r.definition_id, i.outcome, count(*) FROM run_items i "
                                        f"JOIN runs r USING (run_id) WHERE {IN_Q3} GROUP BY 1, 2"):
        items.setdefault(d, {})[outcome] = n
    for row in a.per_definition.iter_rows(named=True):
        d = row["definition_id"]
        assert (row["runs"], row["actions_invoked"]) == runs[d]
        assert row["items"] == sum(items[d].values())
        assert {o: row[o] for o in items[d]} == items[d]
    assert a.totals["runs"] == 59 == sum(n for n, _ in runs.values())
    assert a.totals["actions_invoked"] == sum(acts for _, acts in runs.values())
    # Failed attempts count even when a retry recovered them: the quarter's 18 messaging failures.
    [(failed_attempts,)] = sql(demo_copy, f"SELECT count(*) FROM item_attempts t JOIN runs r USING (run_id) "
                                          f"WHERE t.outcome = 'failed' AND {IN_Q3}")
    causes = a.failure_causes
    assert int(causes["attempts"].sum()) == failed_attempts == 18
    assert causes.height == 1 and causes["recovered"][0] == 18 and causes["still_failed"][0] == 0
    assert int(a.weekly_outcomes["items"].sum()) == a.totals["items"]
    assert all(not c.flagged for c in a.firing), [(c.definition_id, c.expected, c.actual) for c in a.firing]


def test_a_definition_filter_narrows_every_figure(ws: Workspace) -> None:
    kyc = build_analytics(ws, AnalyticsPeriod(Q3.start, Q3.end, Q3.label, ("kyc-weekly-review",)))
    assert kyc.per_definition["definition_id"].to_list() == ["kyc-weekly-review"]
    assert kyc.totals["runs"] == 13 and kyc.totals["items"] == 620
    assert [c.definition_id for c in kyc.firing] == ["kyc-weekly-review"]
    assert set(kyc.weekly_runs["definition_id"].to_list()) == {"kyc-weekly-review"}


def test_a_schedule_paused_for_two_weeks_is_flagged(make_engine) -> None:  # noqa: ANN001
    engine = make_engine({"weekly": finding_definition("weekly")})
    admin = load_actor(engine.ws, "admin")
    mondays = [START + dt.timedelta(weeks=w) for w in range(6)]  # 6 Mondays from 2026-07-06, 06:00 UTC
    for week, monday in enumerate(mondays):
        engine.clock.advance_to(monday)
        engine.fire("weekly", monday)
        if week == 1:  # Tuesday of the second week an admin pauses it; two Mondays later it is back
            engine.clock.advance_to(monday + dt.timedelta(days=1))
            set_enabled(engine, admin, "weekly", False)
        if week == 3:
            engine.clock.advance_to(monday + dt.timedelta(days=1))
            set_enabled(engine, admin, "weekly", True)
    engine.clock.advance_to(mondays[-1] + dt.timedelta(days=2))
    period = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3")
    [check] = build_analytics(engine.ws, period).firing
    assert (check.expected, check.actual) == (6, 4)  # the Mondays 2026-07-20 and 07-27 fell while disabled
    assert check.flagged and check.verdict == "fewer than expected"
    assert check.expected_while_disabled == 2
    assert "disabled 2026-07-14 06:00 → 2026-07-28 06:00 UTC by member:admin" in check.explanation()
    # Only the part of the period that has passed is expected: the future Mondays of Q3 are not.
    assert check.expected == len(mondays)


def test_an_event_received_while_disabled_is_flagged(make_engine) -> None:  # noqa: ANN001
    definition = finding_definition("on-close").replace(
        'trigger: {kind: schedule, cron: "0 6 * * mon"}', "trigger: {kind: event, event: account.deactivated}")
    engine = make_engine({"on-close": definition})
    from store.subjects import emit_change
    set_enabled(engine, load_actor(engine.ws, "admin"), "on-close", False)
    with engine.ws.transaction() as tx:
        emit_change(tx, "account.deactivated", "ACC-001", source="workspace", actor="test",
                       occurred_at=engine.clock.now())
    engine.dispatch_events()
    period = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3")
    [check] = build_analytics(engine.ws, period).firing
    assert (check.expected, check.actual, check.verdict) == (1, 0, "fewer than expected")


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg"), ("pdf", b"%PDF")])
def test_chart_exports_are_valid_files_with_provenance(ws: Workspace, fmt: str, magic: bytes) -> None:
    a = build_analytics(ws, Q3)
    sigrid = load_actor(ws, "sigrid")
    out = export_chart(ws, sigrid, a, "outcome-trend", fmt)
    assert out.content.startswith(magic) and out.file_name == f"runledger-outcome-trend-20260701-20260930.{fmt}"
    if fmt == "png":
        assert b"tEXtRunledger-Provenance" in out.content
        from PIL import Image
        Image.open(io.BytesIO(out.content)).verify()
    elif fmt == "svg":
        text = out.content.decode()
        assert "<metadata><runledger-provenance" in text and text.rstrip().endswith("</svg>")
    else:
        reader = PdfReader(io.BytesIO(out.content))
        assert len(reader.pages) == 1
        meta = json.loads(reader.metadata["/RunledgerProvenance"])
        assert meta["generated_by"] == "sigrid" and meta["period"] == Q3.label
    [entry] = [e for e in _audit(ws, "chart.exported") if e["entity_id"] == out.file_name][-1:]
    payload = json.loads(entry["payload"])
    assert entry["actor"] == "member:sigrid" and payload["sha256"] == out.sha256 and payload["format"] == fmt


def _audit(ws: Workspace, event: str) -> list[dict]:
    import sqlalchemy as sa

    from store.schema import audit_log
    with ws.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(audit_log).where(audit_log.c.event == event)
                                              .order_by(audit_log.c.seq)).mappings()]


def test_table_exports_carry_provenance_in_every_format(ws: Workspace) -> None:
    a = build_analytics(ws, Q3)
    auditor = load_actor(ws, "auditor")
    csv = export_table(ws, auditor, a, "per-automation", "csv").content.decode()
    header = [line for line in csv.splitlines() if line.startswith("# ")]
    assert "# Period: Q3 2026 (2026-07-01 to 2026-09-30)" in header
    assert any(line.startswith("# Audit chain head: entry ") for line in header)
    frame = pl.read_csv(io.StringIO(csv), comment_prefix="#")
    assert frame["runs"].sum() == 59
    xlsx = export_table(ws, auditor, a, "per-automation", "xlsx").content
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        workbook = z.read("xl/workbook.xml").decode()
    assert 'name="data"' in workbook and 'name="provenance"' in workbook
    assert pl.read_excel(io.BytesIO(xlsx), sheet_name="data", engine="openpyxl")["runs"].sum() == 59
    parquet = export_table(ws, auditor, a, "per-automation", "parquet").content
    table = pq.read_table(io.BytesIO(parquet))
    assert json.loads(table.schema.metadata[b"runledger.provenance"])["generated_by"] == "auditor"
    assert pl.from_arrow(table)["runs"].sum() == 59
    assert len(_audit(ws, "table.exported")) >= 3


def test_a_viewer_may_not_export_and_the_refusal_is_audited(ws: Workspace) -> None:
    a = build_analytics(ws, Q3)
    viewer = load_actor(ws, "viewer")
    before = len(_audit(ws, "command.refused"))
    with pytest.raises(NotAuthorized, match="viewer may not export"):
        export_chart(ws, viewer, a, "approvals", "png")
    with pytest.raises(NotAuthorized):
        export_table(ws, viewer, a, "firing", "csv")
    assert len(_audit(ws, "command.refused")) == before + 2


def test_unknown_charts_tables_and_formats_are_refused_with_the_choices(ws: Workspace) -> None:
    a = build_analytics(ws, Q3)
    sigrid = load_actor(ws, "sigrid")
    with pytest.raises(ExportRefused, match="the charts are: outcome-trend"):
        export_chart(ws, sigrid, a, "pie", "png")
    with pytest.raises(ExportRefused, match="tables export as csv, xlsx, parquet"):
        export_table(ws, sigrid, a, "firing", "docx")


def test_text_a_spreadsheet_would_run_is_written_inert() -> None:
    prov = Provenance("ws.duckdb", "Q3", generated_by="sigrid", chain_head="0" * 64)
    frame = pl.DataFrame({"subject": ['=HYPERLINK("http://evil","click")', "+1", "Ada Berg"], "n": [1, -2, 3]})
    csv = render_table(frame, "csv", prov, "hostile").decode()
    data = pl.read_csv(io.StringIO(csv), comment_prefix="#")
    assert data["subject"].to_list() == ['\'=HYPERLINK("http://evil","click")', "'+1", "Ada Berg"]
    assert data["n"].to_list() == [1, -2, 3]  # numbers are numbers, untouched

"""Failed items, Approvals, Audit log, Records, Automations and Members with AppTest on the demo quarter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.links import PAGES, subject_link
from engine.authz import NotAuthorized, load_actor
from engine.commands import CommandRefused, approve_item, preview_run_now, set_enabled
from engine.signals import deliver_signal
from store.matching import count_matching_subjects
from tests.apptest_support import app_engine, open_app
from tests.test_app_runs import _run_failed_on_outage, sql


def _button(at, label: str):  # noqa: ANN001, ANN202
    return next(b for b in at.button if b.label.startswith(label))


def _awaiting(n: int) -> list[str]:
    engine = app_engine()
    for i in range(n):
        deliver_signal(engine, "regulator-feed", {"reference": f"T-{i}", "regulator": "NCUA", "title": f"Rule {i}"})
    return [r for (r,) in sql("SELECT item_id FROM run_items WHERE outcome = 'awaiting-approval' ORDER BY item_id")]


# --- failed items ---------------------------------------------------------------------------------------
def test_failed_items_are_grouped_and_bulk_retried(app_workspace: str) -> None:
    with _run_failed_on_outage() as run_id:
        failed = sql("SELECT count(*) FROM run_items WHERE run_id = :r AND outcome = 'failed'", r=run_id)[0][0]
        at = open_app("sigrid", page=PAGES["failed"][0])
        groups = at.dataframe[0].value
        assert groups["Items"].sum() == failed and set(groups["Class"]) == {"transient"}
        _button(at, "Plan a bulk retry").click().run()
        assert any(f"{failed:,} of {failed:,} failed items are eligible" in m.value for m in at.markdown)
        _button(at, "Retry all").click().run()
        assert any("Bulk retry finished" in s.value for s in at.success)
        assert sql("SELECT count(*) FROM run_items WHERE outcome = 'failed'") == [(0,)]


def test_failed_items_filters_live_in_the_url_and_viewers_cannot_retry(app_workspace: str) -> None:
    with _run_failed_on_outage():
        at = open_app("viewer", page=PAGES["failed"][0], params={"definition": "aml-monitor-failure"})
        assert any("No failed items" in s.value for s in at.success)
        at = open_app("viewer", page=PAGES["failed"][0], params={"from": "not-a-date"})
        assert any("not a date" in w.value for w in at.warning)
        _button(at, "Plan a bulk retry").click().run()
        assert _button(at, "Retry all").disabled


# --- approvals ------------------------------------------------------------------------------------------
def test_an_approver_approves_one_item_and_dismisses_another(app_workspace: str) -> None:
    first, second = _awaiting(2)
    at = open_app("sigrid", page=PAGES["approvals"][0])
    at.button(key=f"approve-{first}").click().run()
    assert any(f"Approved {first}" in s.value for s in at.success)
    at.text_input(key=f"reason-{second}").input("not applicable to credit unions")
    next(b for b in at.button if b.label == "Dismiss").click().run()
    assert any(f"Dismissed {second}" in s.value for s in at.success)
    assert sql("SELECT item_id, outcome FROM run_items WHERE item_id IN (:a, :b) ORDER BY item_id",
               a=first, b=second) == [(first, "succeeded"), (second, "skipped")]
    assert sql("SELECT count(*) FROM audit_log WHERE event IN ('item.approved', 'item.dismissed') "
               "AND entity_id IN (:a, :b)", a=first, b=second) == [(2,)]


def test_a_dismissal_needs_a_reason(app_workspace: str) -> None:
    [item] = _awaiting(1)
    at = open_app("sigrid", page=PAGES["approvals"][0])
    next(b for b in at.button if b.label == "Dismiss").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    assert sql("SELECT outcome FROM run_items WHERE item_id = :i", i=item) == [("awaiting-approval",)]


def test_a_viewer_cannot_approve_and_the_engine_refuses_anyway(app_workspace: str) -> None:
    [item] = _awaiting(1)
    at = open_app("viewer", page=PAGES["approvals"][0])
    assert at.button(key=f"approve-{item}").disabled
    engine = app_engine()
    with pytest.raises(NotAuthorized):
        approve_item(engine, load_actor(engine.ws, "viewer"), item)


# --- audit log ------------------------------------------------------------------------------------------
def test_the_audit_log_filters_from_the_url_and_shows_one_entry(app_workspace: str) -> None:
    at = open_app("auditor", page=PAGES["audit"][0], params={"event": "item.retried"})
    frame = at.dataframe[0].value
    assert set(frame["Event"]) == {"item.retried"} and len(frame) == 18  # the KYC outage items, retried
    seq = sql("SELECT min(seq) FROM audit_log WHERE event = 'item.retried'")[0][0]
    at = open_app("auditor", page=PAGES["audit"][0], params={"seq": str(seq)})
    assert at.subheader[0].value == f"Entry {seq}: item.retried"
    at = open_app("auditor", page=PAGES["audit"][0], params={"seq": "99999999"})
    assert "There is no audit entry" in at.error[0].value


def test_verify_reports_intact_then_the_first_broken_entry(app_workspace: str) -> None:
    at = open_app("auditor", page=PAGES["audit"][0])
    _button(at, "Verify the chain").click().run()
    assert at.success[0].value.startswith("Intact:")
    with app_engine().ws.transaction() as tx:
        tx.conn.execute(sa.text("UPDATE audit_log SET payload = '{\"edited\": true}' WHERE seq = 40"))
    _button(at, "Verify the chain").click().run()
    assert "Broken at entry 40" in at.error[0].value


# --- records --------------------------------------------------------------------------------------------
def test_a_record_traces_to_its_item_and_the_subject_to_its_items(app_workspace: str) -> None:
    [(item_id, ref, kind, subject)] = sql("SELECT item_id, record_ref, subject_kind, subject_id FROM run_items "
                                          "WHERE record_ref LIKE 'findings:%' ORDER BY item_id LIMIT 1")
    at = open_app("auditor", page=PAGES["records"][0], params={"module": "findings", "id": ref.split(":")[1]})
    fields = dict(zip(at.dataframe[0].value["Field"], at.dataframe[0].value["Value"], strict=True))
    assert fields["source_item_id"] == item_id
    at = open_app("auditor", page=PAGES["records"][0], params={"register": kind, "id": subject})
    assert f"item?id={item_id}" in list(at.dataframe[1].value["Item"])
    at = open_app("auditor", page=PAGES["records"][0], params={"module": "findings", "id": "FND-NOPE"})
    assert "There is no findings record" in at.error[0].value


# --- automations and members ----------------------------------------------------------------------------
def test_run_now_and_enable_disable_are_role_checked_and_audited(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGES["automations"][0], params={"id": "supplier-attestation-renewal"})
    assert _button(at, "Disable").disabled  # admins only
    runs_before = sql("SELECT count(*) FROM runs")
    _button(at, "Run now").click().run()
    # asked first, naming the automation and what it would match now; nothing has run yet
    engine = app_engine()
    preview = preview_run_now(engine, "supplier-attestation-renewal")
    with engine.ws.read() as conn:
        definition = engine.catalog.latest("supplier-attestation-renewal")[0]
        assert preview.subjects == count_matching_subjects(conn, definition.condition, engine.clock.now())
    asked = " ".join(m.value for m in at.markdown)
    assert (f"Run Supplier attestation renewal (supplier\\-attestation\\-renewal) now?** It would match "
            f"**{preview.subjects:,}** suppliers now") in asked, asked
    assert sql("SELECT count(*) FROM runs") == runs_before and _button(at, "Run now").disabled
    _button(at, "Cancel").click().run()
    assert sql("SELECT count(*) FROM runs") == runs_before and not _button(at, "Run now").disabled
    _button(at, "Run now").click().run()
    _button(at, f"Yes, run it on {preview.subjects:,} suppliers").click().run()
    assert any(s.value.startswith("Started RUN-") for s in at.success)
    at = open_app("admin", page=PAGES["automations"][0], params={"id": "supplier-attestation-renewal"})
    assert _button(at, "Run now").disabled  # operators only
    _button(at, "Disable").click().run()
    assert sql("SELECT enabled FROM definitions WHERE definition_id = 'supplier-attestation-renewal'") == [(False,)]
    with pytest.raises(NotAuthorized):
        set_enabled(engine, load_actor(engine.ws, "sigrid"), "supplier-attestation-renewal", True)


def test_an_unknown_automation_is_named_and_versions_show_their_text(app_workspace: str) -> None:
    at = open_app("viewer", page=PAGES["automations"][0], params={"id": "nope"})
    assert "There is no automation 'nope'" in at.error[0].value
    at = open_app("viewer", page=PAGES["automations"][0], params={"id": "kyc-weekly-review", "version": "7"})
    assert any("has no version 7" in w.value for w in at.warning)
    assert any("id: kyc-weekly-review" in c.value for c in at.code)


def test_members_are_listed_for_admins_only(app_workspace: str) -> None:
    at = open_app("admin", page=PAGES["members"][0])
    assert len(at.dataframe[0].value) == 4
    at = open_app("viewer", page=PAGES["members"][0])
    assert list(at.dataframe[0].value["Member"]) == ["viewer"]


def test_approvals_say_how_long_each_waited_flag_the_overdue_and_link_their_ids(app_workspace: str) -> None:
    fresh, old = _awaiting(2)
    engine = app_engine()
    with engine.ws.transaction() as tx:  # the second has waited 100 hours; its definition allows 72
        tx.conn.execute(sa.text("UPDATE approvals SET opened_at = opened_at - INTERVAL 100 HOUR WHERE item_id = :i"),
                        {"i": old})
    at = open_app("sigrid", page=PAGES["approvals"][0])
    assert not at.exception
    flagged = [e.value for e in at.error]
    assert len(flagged) == 1 and flagged[0].startswith("Waiting 4 days 4 h: overdue by 28 h")
    assert flagged[0].endswith("(due within 72 h)")
    assert any(i.value.startswith("Waiting ") and i.value.endswith("due within 72 h") for i in at.info)
    summary = " ".join(m.value for m in at.markdown)
    assert "**2** waiting · oldest has waited **4 days 4 h** · :red[**1 overdue**]" in summary
    run_id = old.rsplit("-", 1)[0]
    assert f"Item [{old}](item?id={old}) of run [{run_id}](run?id={run_id})" in summary


def test_the_member_who_started_a_run_sees_why_they_may_not_decide_it(app_workspace: str) -> None:
    engine = app_engine()
    sigrid = load_actor(engine.ws, "sigrid")
    [item] = _awaiting(1)
    with engine.ws.transaction() as tx:  # as if sigrid had started it with run now
        tx.conn.execute(sa.text("UPDATE runs SET trigger_kind = 'manual', trigger_source = 'member:sigrid' "
                                "WHERE run_id = :r"), {"r": item.rsplit("-", 1)[0]})
    at = open_app("sigrid", page=PAGES["approvals"][0])
    assert at.button(key=f"approve-{item}").disabled
    assert any("four eyes" in w.value and "started run" in w.value for w in at.warning)
    with pytest.raises(CommandRefused, match=r"four eyes"):
        approve_item(engine, sigrid, item)


# --- dispositions -----------------------------------------------------------------------------------------
def _add_approver(member_id: str) -> None:
    """A second approver: the outage run was started by sigrid, who may not disposition its failures."""
    from store.members import create_member
    from tests.support import quick_password_hash
    with app_engine().ws.transaction() as tx:
        create_member(tx, member_id, member_id.title(), quick_password_hash(member_id), ["approver"], "member:admin")


def test_a_failure_group_is_dispositioned_in_bulk_after_its_plan(app_workspace: str) -> None:
    with _run_failed_on_outage() as run_id:
        failed = sql("SELECT count(*) FROM run_items WHERE run_id = :r AND outcome = 'failed'", r=run_id)[0][0]
        _add_approver("olav")
        at = open_app("olav", page=PAGES["failed"][0])
        assert any(f"**{failed:,} open**" in m.value for m in at.markdown)
        groups = at.dataframe[0].value
        assert list(groups["Open"]) == list(groups["Items"]) and groups["Dispositioned"].sum() == 0
        at.text_input(key="bulk_disposition_reason").input("Gateway outage; members contacted by branch staff")
        at.selectbox(key="bulk_disposition_kind").set_value("resolved-outside").run()
        at.text_input(key="bulk_disposition_reference").input("INC-2026-118").run()
        _button(at, "Plan the disposition").click().run()
        assert any(f"{failed:,} of {failed:,} failed items in the group can be dispositioned by olav" in m.value
                   for m in at.markdown)
        _button(at, f"Disposition {failed:,} items as resolved-outside").click().run()
        assert not at.exception
        assert any(f"{failed:,} dispositioned as resolved-outside" in s.value for s in at.success)
        assert sql("SELECT kind, reference, decided_by, count(*) FROM item_dispositions GROUP BY ALL") == [
            ("resolved-outside", "INC-2026-118", "member:olav", failed)]
        assert sql("SELECT count(*) FROM run_items WHERE run_id = :r AND outcome = 'failed'", r=run_id) == [(failed,)]
        groups = at.dataframe[0].value
        assert groups["Open"].sum() == 0 and groups["Dispositioned"].sum() == failed
        assert set(at.dataframe[-1].value["Disposition"]) == {"resolved-outside"}


def test_the_item_page_shows_an_open_failure_and_records_its_disposition(app_workspace: str) -> None:
    with _run_failed_on_outage() as run_id:
        item_id = sql("SELECT min(item_id) FROM run_items WHERE run_id = :r AND outcome = 'failed'", r=run_id)[0][0]
        at = open_app("sigrid", page=PAGES["item"][0], params={"id": item_id})
        assert any("Open failure" in w.value for w in at.warning)
        shown = [i.value.replace("\\", "") for i in at.info]  # as markdown: its punctuation escaped
        assert f"sigrid started run {run_id} (run now) and so may not disposition its items (four eyes); ask " \
               "another approver." in shown
        _add_approver("olav")
        at = open_app("olav", page=PAGES["item"][0], params={"id": item_id})
        at.text_input(key="item_disposition_reason").input("Member closed the account").run()
        _button(at, "Record the disposition").click().run()
        assert any("Dispositioned as waived; the outcome stays failed." in s.value for s in at.success), \
            [e.value for e in at.error]
        assert any("Failure dispositioned:" in m.value and "**waived** by member:olav" in m.value.replace("\\", "")
                   and "Member closed the account" in m.value for m in at.markdown), [m.value for m in at.markdown]
        assert any("Not retryable" in i.value and "dispositioned \\(waived\\)" in i.value for i in at.info)


# --- preview ----------------------------------------------------------------------------------------------
def test_an_admin_previews_an_automation_before_enabling_it(app_workspace: str) -> None:
    """What the KYC review would match now, counted as the engine would, and nothing run; the preview audited."""
    engine = app_engine()
    with engine.ws.read() as conn:
        matched = count_matching_subjects(conn, engine.catalog.latest("kyc-weekly-review")[0].condition,
                                          engine.clock.now())
    runs_before = sql("SELECT count(*) FROM runs")
    at = open_app("admin", page=PAGES["automations"][0], params={"id": "kyc-weekly-review"})
    _button(at, "Preview").click().run()
    assert not at.exception
    said = next(m.value for m in at.markdown if "would match" in m.value)
    assert f"would match **{matched:,}** accounts" in said and "Nothing was run" in said
    assert sql("SELECT count(*) FROM runs") == runs_before
    assert sql("SELECT actor, entity_id FROM audit_log WHERE event = 'definition.previewed'") == [
        ("member:admin", "kyc-weekly-review")]
    excluded = next(d.value for d in at.dataframe if "Excluded because" in d.value.columns)
    assert len(excluded) > 0 and all("(needs " in why for why in excluded["Excluded because"])


# --- the matched population compared -----------------------------------------------------------------------
def test_a_kyc_run_shows_who_entered_and_left_since_the_previous_week(app_workspace: str) -> None:
    (prev, prev_n), (run_id, n) = sql(
        "SELECT r.run_id, count(DISTINCT i.subject_id) FROM runs r JOIN run_items i USING (run_id) "
        "WHERE r.definition_id = 'kyc-weekly-review' AND r.trigger_kind = 'schedule' "
        "GROUP BY r.run_id, r.run_number ORDER BY r.run_number LIMIT 2")
    entered = sql("SELECT count(DISTINCT subject_id) FROM run_items WHERE run_id = :r AND subject_id NOT IN "
                  "(SELECT subject_id FROM run_items WHERE run_id = :p)", r=run_id, p=prev)[0][0]
    at = open_app("auditor", page=PAGES["run"][0], params={"id": run_id})
    assert not at.exception
    [exp] = [e for e in at.expander if e.label.startswith("Compared with the previous run")]
    assert exp.label == (f"Compared with the previous run: {entered:,} entered, {prev_n - (n - entered):,} left, "
                         f"{n - entered:,} stayed")
    tables = [d.value for d in exp.dataframe]
    assert all(t["What changed"].str.len().min() > 0 for t in tables)
    left = tables[-1]
    assert left["What changed"].str.startswith(f"an evidence request is already open for this account: {prev}'s "
                                               "item").all()
    assert tables[0]["What changed"].str.startswith("kyc_review_due moved inside the window").all()


# --- a subject's story -------------------------------------------------------------------------------------
def test_an_auditor_opens_one_accounts_story_reached_from_its_item(app_workspace: str) -> None:
    [(item_id, subject, run_id)] = sql("SELECT item_id, subject_id, run_id FROM run_items WHERE subject_kind = "
                                       "'accounts' AND attempts = 2 ORDER BY item_id LIMIT 1")  # a recovered failure
    assert subject_link("accounts", subject).href == f"subject?kind=accounts&id={subject}"  # every subject id's link
    at = open_app("auditor", page=PAGES["subject"][0], params={"kind": "accounts", "id": subject})
    assert not at.exception and at.title[0].value.startswith("accounts ")
    story = at.dataframe[-1].value
    assert f"run?id={run_id}" in set(story["run_id"]) and f"item?id={item_id}" in set(story["item_id"])
    whats = list(story["what"])
    assert whats[0] == "register load: added" and "attempt 1: failed" in whats and "attempt 2: succeeded" in whats
    assert whats.index("attempt 1: failed") < whats.index("attempt 2: succeeded")
    at = open_app("auditor", page=PAGES["subject"][0], params={"kind": "nope", "id": "X"})
    assert "There is no register 'nope'" in at.error[0].value


def test_the_runs_page_flags_a_population_that_moved_more_than_its_automation_allows(
        app_workspace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kyc-weekly-review given policies.population.alert_percent: 20 (a new version): its weekly runs, whose
    populations turn over almost whole (last week's accounts now have an open evidence request), are flagged."""
    folder = tmp_path / "definitions"
    shutil.copytree(Path(__file__).resolve().parent.parent / "definitions", folder)
    kyc = folder / "kyc-weekly-review.yaml"
    kyc.write_text(kyc.read_text().replace("policies:\n", "policies:\n  population: {alert_percent: 20}\n", 1))
    monkeypatch.setenv("RUNLEDGER_DEFINITIONS", str(folder))
    at = open_app("auditor", page=PAGES["runs"][0], params={"definition": "kyc-weekly-review", "period": "all"})
    assert not at.exception
    [flag] = [w.value.replace("\\", "") for w in at.warning if "Matched population moved more than" in w.value]
    first = sql("SELECT run_id FROM runs WHERE definition_id = 'kyc-weekly-review' AND trigger_kind = 'schedule' "
                "ORDER BY run_number DESC LIMIT 1")[0][0]
    assert f"[{first}](run?id={first}) kyc-weekly-review: +" in flag and "% > 20%" in flag
    at = open_app("auditor", page=PAGES["runs"][0], params={"definition": "aml-monitor-failure", "period": "all"})
    assert not [w for w in at.warning if "Matched population moved" in w.value]  # no threshold declared

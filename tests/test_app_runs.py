"""The Runs, Run and Run item pages with AppTest on the demo quarter: filters in the URL, keyset pages,
the run's facts and items, cancel and retry with their refusals, unknown ids, hostile text."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from core.links import PAGES
from demo.gateway import DemoGateway
from demo.seed import messaging_location
from engine.authz import NotAuthorized, load_actor
from engine.commands import cancel_run
from store.runs import claim_event, create_run, read_undispatched_events
from store.subjects import insert_subjects, record_trigger_event
from tests.apptest_support import app_engine, open_app

RUNS, RUN, ITEM = PAGES["runs"][0], PAGES["run"][0], PAGES["item"][0]


def sql(query: str, **params: object) -> list[tuple]:
    with app_engine().ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query), params)]


def grid(at, i: int = 0):  # noqa: ANN001, ANN201 - AppTest's dataframe as pandas
    return at.dataframe[i].value


# --- Runs -----------------------------------------------------------------------------------------------
def test_filters_come_from_the_url_and_bad_ones_are_named(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS, params={"definition": "kyc-weekly-review", "status": ["completed", "bogus"],
                                               "period": "custom", "from": "2026-07-01", "to": "2026-09-30"})
    assert not at.exception
    assert any("bogus" in w.value for w in at.warning)
    frame = grid(at)
    assert len(frame) == 13 and set(frame["Definition"]) == {"kyc-weekly-review v1"}
    assert at.metric[0].value == "13"  # counts above the table, from the same filter
    assert sql("SELECT count(*) FROM runs WHERE definition_id = 'kyc-weekly-review' AND status = 'completed' "
               "AND triggered_at >= '2026-07-01' AND triggered_at < '2026-10-01'") == [(13,)]


def test_a_widget_change_rewrites_the_url(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS)
    at.multiselect[0].select("aml-monitor-failure").run()
    assert at.query_params["definition"] in ("aml-monitor-failure", ["aml-monitor-failure"])
    assert set(grid(at)["Definition"]) == {"aml-monitor-failure v1"}
    at.selectbox[1].select("subjects").run()  # sort by subjects matched
    assert at.query_params["sort"] in ("subjects", ["subjects"])


def test_keyset_pages_follow_each_other_without_overlap(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS)
    first = list(grid(at)["Run"])
    assert len(first) == 50
    next_button = [b for b in at.button if b.label == "Next page"][0]
    next_button.click().run()
    assert "after" in at.query_params
    second = list(grid(at)["Run"])
    total = sql("SELECT count(*) FROM runs")[0][0]
    assert not set(first) & set(second) and len(first) + len(second) == total
    # newest completion first by default: the first page's runs completed no earlier than the second's
    ids = [h.split("=")[-1] for h in first + second]
    completed = dict(sql("SELECT run_id, completed_at FROM runs"))
    times = [completed[i] for i in ids if completed[i] is not None]
    assert times == sorted(times, reverse=True)


def test_a_broken_page_position_starts_over_with_a_warning(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS, params={"after": "not-a-cursor"})
    assert any("page position" in w.value for w in at.warning) and len(grid(at)) == 50


# --- Run ------------------------------------------------------------------------------------------------
def test_a_run_shows_its_facts_breakdown_and_items(app_workspace: str) -> None:
    [(run_id, matched)] = sql("SELECT run_id, subjects_matched FROM runs WHERE definition_id = 'kyc-weekly-review' "
                              "ORDER BY run_number LIMIT 1")
    at = open_app("viewer", page=RUN, params={"id": run_id})
    assert at.title[0].value == f"Run {run_id}"
    assert at.metric[0].value == str(matched)
    items = grid(at, 1)  # 0: the times; 1: the breakdown numbers; then the items
    assert any("evidence_requests" in str(a) for a in items.iloc[:, 0])
    listed = grid(at, 2)
    assert len(listed) == min(matched, 100)
    assert listed["Item"].iloc[0].startswith("item?id=")


def test_the_items_filter_lives_in_the_url(app_workspace: str) -> None:
    [(run_id,)] = sql("SELECT run_id FROM run_items WHERE outcome = 'skipped' GROUP BY run_id ORDER BY run_id LIMIT 1")
    at = open_app("viewer", page=RUN, params={"id": run_id, "outcome": "skipped"})
    assert set(grid(at, 2)["Outcome"]) == {"skipped"}
    at = open_app("viewer", page=RUN, params={"id": run_id, "outcome": "exploded"})
    assert any("Unknown outcome" in w.value for w in at.warning)


@pytest.mark.parametrize("page,bad", [(RUN, "RUN-999999"), (RUN, "<script>"), (ITEM, "RUN-000001-999999")])
def test_an_unknown_id_gets_a_message_not_a_traceback(app_workspace: str, page: str, bad: str) -> None:
    at = open_app("viewer", page=page, params={"id": bad})
    assert not at.exception and "There is no" in at.error[0].value


def _due_accounts(n: int = 5) -> None:
    """Accounts whose KYC review is due and that have no open evidence request: the KYC review matches them."""
    engine = app_engine()
    with engine.ws.transaction() as tx:
        insert_subjects(tx, "accounts", [
            {"account_id": f"ACC-T{i}-{time.monotonic_ns()}", "name": f"Test Member {i}", "manager": "t.lead",
             "status": "active", "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"}
            for i in range(n)])


def _running_run() -> str:
    """A run that has matched its subjects but not started acting: items pending, as mid-run."""
    engine = app_engine()
    _due_accounts()
    with engine.ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=engine.clock.now(), definition_id="kyc-weekly-review")
    with engine.ws.read() as conn:
        event = read_undispatched_events(conn)[0]
    with engine.ws.transaction() as tx:
        run_id = create_run(tx, definition_id="kyc-weekly-review", definition_version=1, event=event,
                            actor="member:sigrid")
        claim_event(tx, event["event_id"])
    engine.executor.match_run(run_id, "member:sigrid")
    return run_id


def test_an_operator_cancels_a_running_run_and_not_started_items_are_skipped(app_workspace: str) -> None:
    run_id = _running_run()
    pending = sql("SELECT count(*) FROM run_items WHERE run_id = :r AND outcome = 'pending'", r=run_id)[0][0]
    assert pending > 0
    at = open_app("sigrid", page=RUN, params={"id": run_id})
    at.text_area[0].input("Wrong accounts selected")
    at.checkbox[0].check()
    [b for b in at.button if b.label == "Cancel run"][0].click().run()
    assert not at.exception
    assert any("Cancel request recorded" in s.value for s in at.success)
    assert sql("SELECT status, cancel_reason, cancel_requested_by FROM runs WHERE run_id = :r", r=run_id) == \
        [("cancelled", "Wrong accounts selected", "member:sigrid")]
    assert sql("SELECT outcome, skip_reason, count(*) FROM run_items WHERE run_id = :r GROUP BY ALL", r=run_id) == \
        [("skipped", "cancelled", pending)]
    assert sql("SELECT count(*) FROM audit_log WHERE event = 'run.cancel_requested' AND entity_id = :r",
               r=run_id) == [(1,)]


def test_a_viewer_sees_cancel_disabled_and_the_engine_refuses_anyway(app_workspace: str) -> None:
    run_id = _running_run()
    at = open_app("viewer", page=RUN, params={"id": run_id})
    assert [b for b in at.button if b.label == "Cancel run"][0].disabled
    assert any("needs the operator role" in c.value for c in at.caption)
    engine = app_engine()
    with pytest.raises(NotAuthorized):
        cancel_run(engine, load_actor(engine.ws, "viewer"), run_id, "trying")
    assert sql("SELECT count(*) FROM audit_log WHERE event = 'command.refused' AND entity_id = :r", r=run_id) == [(1,)]


@contextmanager
def _run_failed_on_outage() -> Iterator[str]:
    """KYC evidence requests fired while the messaging gateway (a real SMTP server) is down, which it stops
    being once the run has finished: every item fails transiently, and a retry afterwards succeeds —
    whatever the machine's load (the outage ends when the test says so, not after a second of the real
    clock)."""
    engine = app_engine()
    _due_accounts()
    now = engine.clock.now()
    with DemoGateway(engine.clock, *messaging_location(engine)) as gateway:
        gateway.add_outage(now - dt.timedelta(minutes=1), now + dt.timedelta(days=1), "test outage")
        [run_id] = engine.fire("kyc-weekly-review", kind="manual", actor_name="member:sigrid")
        gateway.outages.clear()  # the gateway is back
        yield run_id


def test_retry_shows_the_plan_then_recovers_transient_failures(app_workspace: str) -> None:
    with _run_failed_on_outage() as run_id:
        failed = sql("SELECT count(*) FROM run_items WHERE run_id = :r AND outcome = 'failed'", r=run_id)[0][0]
        assert failed > 0
        at = open_app("sigrid", page=RUN, params={"id": run_id})
        assert any(f"{failed:,} eligible" in m.value for m in at.markdown)
        [b for b in at.button if b.label.startswith("Retry ")][0].click().run()
        assert not at.exception
        assert any("Retry finished" in s.value and "succeeded" in s.value for s in at.success)
        assert sql("SELECT outcome, count(*) FROM run_items WHERE run_id = :r AND attempts = 2 GROUP BY ALL",
                   r=run_id) == [("succeeded", failed)]
        assert sql("SELECT count(*) FROM audit_log WHERE event = 'item.retried'")[0][0] >= failed


# --- Run item -------------------------------------------------------------------------------------------
def test_an_item_shows_its_attempts_record_and_audit(app_workspace: str) -> None:
    [(item_id, record_ref)] = sql("SELECT item_id, record_ref FROM run_items WHERE attempts = 2 AND outcome = "
                                  "'succeeded' ORDER BY item_id LIMIT 1")  # a KYC item recovered by retry
    at = open_app("viewer", page=ITEM, params={"id": item_id})
    assert at.title[0].value == f"Item {item_id}"
    frames = [f.value for f in at.dataframe]
    attempts = next(f for f in frames if "Attempt" in f.columns)
    assert list(attempts["Outcome"]) == ["failed", "succeeded"]
    audit = next(f for f in frames if "Event" in f.columns)
    assert "item.retried" in set(audit["Event"])
    assert record_ref in list(attempts["Record"])  # the second attempt made the record


def test_a_failed_item_offers_retry_only_to_operators(app_workspace: str) -> None:
    with _run_failed_on_outage() as run_id:
        [(item_id,)] = sql("SELECT item_id FROM run_items WHERE run_id = :r AND outcome = 'failed' LIMIT 1",
                           r=run_id)
        at = open_app("viewer", page=ITEM, params={"id": item_id})
        assert [b for b in at.button if b.label == "Retry this item"][0].disabled
        at = open_app("sigrid", page=ITEM, params={"id": item_id})
        [b for b in at.button if b.label == "Retry this item"][0].click().run()
        assert any("now succeeded" in s.value for s in at.success)


def test_hostile_subject_text_renders_as_text(app_workspace: str) -> None:
    hostile = '<img src=x onerror=alert(1)> **bold** [x](javascript:alert(1))'
    engine = app_engine()
    with engine.ws.transaction() as tx:
        tx.conn.execute(sa.text("UPDATE run_items SET subject_label = :h, failure_cause = :h, "
                                "subject_snapshot = :s WHERE item_id = 'RUN-000001-000001'"),
                        {"h": hostile, "s": '{"name": "' + hostile.replace('"', "'") + '"}'})
    at = open_app("viewer", page=ITEM, params={"id": "RUN-000001-000001"})
    assert not at.exception
    assert hostile in [t.value for t in at.text]  # shown by st.text, verbatim
    assert not any("<img" in m.value and "\\<img" not in m.value for m in at.markdown)


# --- failures a retry recovered, and the one period picker ---------------------------------------------
def test_runs_whose_failures_were_recovered_are_found_and_marked(app_workspace: str) -> None:
    """The messaging outage's KYC run completed cleanly after the retry; the filter and the mark show it."""
    at = open_app("viewer", page=RUNS, params={"period": "quarter", "quarter": "2026-Q3", "attempts": "failed"})
    assert not at.exception and not at.warning
    frame = grid(at)
    [(run_id,)] = sql("SELECT DISTINCT run_id FROM item_attempts WHERE outcome = 'failed' "
                      "AND run_id IN (SELECT run_id FROM runs WHERE triggered_at < '2026-10-01')")
    assert list(frame["Run"]) == [f"run?id={run_id}"]
    row = frame.iloc[0]
    assert row["Status"] == "✓ completed" and row["Outcomes"].endswith(" · ↻ 18 recovered")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["With failed attempts"] == "1" and metrics["Runs in view"] == "1"
    # the toggle writes the filter into the URL; unfiltered, the quarter's 59 runs come back
    at.toggle[0].set_value(False).run()
    assert "attempts" not in at.query_params and len(grid(at)) == 50
    assert {m.label: m.value for m in at.metric}["With failed attempts"] == "1"


def test_a_named_quarter_and_custom_dates_that_keep_what_was_chosen(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS)
    period = next(s for s in at.selectbox if s.label == "Period")
    assert "Q3 2026" in period.options  # a named quarter, offered because the workspace has its runs
    period.set_value("2026-Q3").run()
    assert (at.query_params["period"], at.query_params["quarter"]) in (("quarter", "2026-Q3"),
                                                                       (["quarter"], ["2026-Q3"]))
    assert at.metric[0].value == "59"
    # switching to custom dates starts from the quarter that was shown, not from "the last 30 days"
    next(s for s in at.selectbox if s.label == "Period").set_value("custom").run()
    dates = {d.label: d.value for d in at.date_input}
    assert dates == {"From": dt.date(2026, 7, 1), "To (included)": dt.date(2026, 9, 30)}
    assert at.metric[0].value == "59"
    # a chosen date stays chosen, in the URL
    next(d for d in at.date_input if d.label == "From").set_value(dt.date(2026, 8, 1)).run()
    assert {d.label: d.value for d in at.date_input}["From"] == dt.date(2026, 8, 1)
    assert at.query_params["from"] in ("2026-08-01", ["2026-08-01"])
    at.run()  # and survives another rerun
    assert {d.label: d.value for d in at.date_input}["From"] == dt.date(2026, 8, 1)


def test_empty_states_say_what_is_true(app_workspace: str) -> None:
    at = open_app("viewer", page=RUNS, params={"period": "quarter", "quarter": "2025-Q1"})
    said = " ".join(i.value for i in at.info)
    assert "No runs match these filters" in said and "make run" not in said and "holds 59 runs" in said


def test_a_run_says_how_many_items_failed_first_and_links_them(app_workspace: str) -> None:
    [(run_id,)] = sql("SELECT DISTINCT run_id FROM item_attempts WHERE outcome = 'failed' "
                      "AND run_id IN (SELECT run_id FROM runs WHERE triggered_at < '2026-10-01')")
    at = open_app("viewer", page=RUN, params={"id": run_id})
    assert not at.exception
    [line] = [w.value for w in at.warning if "failed at first" in w.value]
    assert line == (f"**18** items failed at first and were recovered by a retry — "
                    f"[show them](run?id={run_id}&attempts=failed)")
    at = open_app("viewer", page=RUN, params={"id": run_id, "attempts": "failed"})
    items = next(d.value for d in at.dataframe if "Item" in d.value.columns)
    assert len(items) == 18 and set(items["Outcome"]) == {"succeeded"} and set(items["Attempts"]) == {2}


def test_a_completed_run_that_matched_nothing_says_so(app_workspace: str) -> None:
    engine = app_engine()
    with engine.ws.transaction() as tx:  # no attestation falls due any more
        tx.conn.execute(sa.text("UPDATE suppliers SET attestation_expires = DATE '2099-01-01'"))
    [run_id] = engine.fire("supplier-attestation-renewal", kind="manual", actor_name="member:sigrid")
    at = open_app("viewer", page=RUN, params={"id": run_id})
    said = " ".join(i.value for i in at.info)
    assert "This run matched no subjects: its condition held for none of the suppliers when it ran" in said
    assert "has not matched its subjects" not in said

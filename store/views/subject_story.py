"""A subject's story: everything Runledger recorded about one subject, in time order.

Every run that matched it (and the re-checks that excluded it, as skipped items), every attempt with its
outcome, every record created for it, every change a register load made to it, every event raised for it,
the approvals and dispositions of its items. Read by a handful of statements keyed by the subject (its items
and their attempts by index: store/views/subject_items.py), never by scanning runs.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from store.schema import approvals, item_dispositions, subject_changes, trigger_events
from store.views.subject_items import read_items_attempts, read_subject_items

STORY_ITEMS = 5000  # items read per subject; a story longer than that says so


# Within one instant, the order things happen in: a match before its attempt, an attempt before its record.
_ORDER = {"matched": 0, "approval requested": 1, "attempt": 2, "record created": 3, "approval": 2,
          "excluded": 4, "failure dispositioned": 5}


def _entry(at: Any, what: str, detail: str = "", run_id: str = "", item_id: str = "", by: str = "") -> dict[str, Any]:
    return {"at": at, "what": what, "detail": detail, "run_id": run_id, "item_id": item_id, "by": by}


def _sort_key(e: dict[str, Any]) -> tuple[Any, int, str]:
    head = e["what"] if e["what"] in _ORDER else e["what"].split(" ", 1)[0].rstrip(":")
    return e["at"], _ORDER.get(head, _ORDER.get(e["what"].split(":")[0], 0)), e["item_id"]


def read_subject_story(conn: sa.Connection, kind: str, subject_id: str) -> tuple[list[dict[str, Any]], bool]:
    """(entries oldest first, whether items were cut at STORY_ITEMS)."""
    items = read_subject_items(conn, kind, subject_id, STORY_ITEMS + 1)
    cut = len(items) > STORY_ITEMS
    items = items[:STORY_ITEMS]
    ids = [i["item_id"] for i in items]
    out: list[dict[str, Any]] = []
    for i in items:
        out.append(_entry(i["triggered_at"], "matched",
                          f"{i['definition_id']} v{i['definition_version']} ({i['trigger_kind']} by "
                          f"{i['trigger_source']}): {i['action']}; now {i['outcome']}", i["run_id"], i["item_id"]))
        if i["outcome"] == "skipped" and i["skip_reason"]:
            out.append(_entry(i["updated_at"], "excluded", i["skip_reason"], i["run_id"], i["item_id"]))
    if ids:
        run_of = {i["item_id"]: i["run_id"] for i in items}
        for a in read_items_attempts(conn, ids):
            detail = a["failure_cause"] or (f"record {a['record_ref']}" if a["record_ref"] else "")
            run_id = run_of[a["item_id"]]
            out.append(_entry(a["started_at"], f"attempt {a['attempt']}: {a['outcome']}", detail, run_id,
                              a["item_id"], a["actor"]))
            if a["record_ref"] and a["outcome"] == "succeeded":
                out.append(_entry(a["finished_at"] or a["started_at"], "record created", a["record_ref"], run_id,
                                  a["item_id"], a["actor"]))
        for ap in conn.execute(sa.select(approvals).where(approvals.c.item_id.in_(ids))).mappings():
            out.append(_entry(ap["opened_at"], "approval requested", "", ap["run_id"], ap["item_id"]))
            if ap["decision"]:
                out.append(_entry(ap["decided_at"], f"approval {ap['decision']}", ap["reason"] or "", ap["run_id"],
                                  ap["item_id"], ap["decided_by"] or ""))
        for d in conn.execute(sa.select(item_dispositions).where(item_dispositions.c.item_id.in_(ids))).mappings():
            tail = d["reference"] or d["superseded_by"] or ""
            out.append(_entry(d["decided_at"], f"failure dispositioned: {d['kind']}",
                              d["reason"] + (f" ({tail})" if tail else ""), d["run_id"], d["item_id"], d["decided_by"]))
    for ch in conn.execute(sa.select(subject_changes).where(subject_changes.c.register_id == kind,
                                                            subject_changes.c.subject_id == subject_id)).mappings():
        out.append(_entry(ch["changed_at"], f"register load: {ch['change']}", _change(ch["before"], ch["after"]),
                          by=f"import {ch['import_id']}"))
    for ev in conn.execute(sa.select(trigger_events).where(trigger_events.c.subject_kind == kind,
                                                           trigger_events.c.subject_id == subject_id)).mappings():
        out.append(_entry(ev["occurred_at"], f"event {ev['event_type']}", f"{ev['kind']} from {ev['source']}",
                          by=ev["source"]))
    out.sort(key=_sort_key)
    return out, cut


def _change(before: str | None, after: str | None) -> str:
    b, a = (json.loads(before) if before else {}), (json.loads(after) if after else {})
    if not isinstance(b, dict) or not isinstance(a, dict):
        return ""
    if not b:
        return ", ".join(f"{k} = {v!r}" for k, v in a.items())
    return ", ".join(f"{k}: {b.get(k)!r} → {a.get(k)!r}" for k in sorted(set(a) | set(b)))

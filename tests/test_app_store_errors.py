"""A store error during a member's command (a DuckDB write conflict, a failed write) reaches the member as
its sentence on the page, never as a traceback; nothing of the command is saved."""

from __future__ import annotations

import pytest

from core.links import PAGES
from store.errors import WriteConflict, WriteFailed
from tests.apptest_support import open_app
from tests.test_app_oversight import _awaiting
from tests.test_app_runs import RUN, _running_run, sql


def _raise(error: Exception):  # noqa: ANN202
    def command(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise error
    return command


def test_a_write_conflict_on_cancel_is_a_sentence(app_workspace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ui.run_actions
    run_id = _running_run()
    monkeypatch.setattr(ui.run_actions, "cancel_run", _raise(WriteConflict(
        "Another change touched the same record at the same moment; nothing of this one was saved. "
        "Reload and try again.")))
    at = open_app("sigrid", page=RUN, params={"id": run_id})
    at.text_area[0].input("Wrong accounts selected")
    at.checkbox[0].check()
    [b for b in at.button if b.label == "Cancel run"][0].click().run()
    assert not at.exception
    assert any("nothing of this one was saved" in e.value for e in at.error)
    assert sql("SELECT cancel_requested_at IS NULL FROM runs WHERE run_id = :r", r=run_id) == [(True,)]


def test_a_failed_write_on_approve_is_a_sentence(app_workspace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.commands
    [item] = _awaiting(1)
    monkeypatch.setattr(engine.commands, "approve_item", _raise(WriteFailed(
        "The workspace could not be written (disk full); this change was rolled back and nothing of it was saved.")))
    at = open_app("sigrid", page=PAGES["approvals"][0])
    at.button(key=f"approve-{item}").click().run()
    assert not at.exception
    assert any("nothing of it was saved" in e.value for e in at.error)
    assert sql("SELECT outcome FROM run_items WHERE item_id = :i", i=item) == [("awaiting-approval",)]

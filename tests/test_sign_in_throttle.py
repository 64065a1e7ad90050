"""Repeated failed sign-ins lock a member name for a while, counted from the audit log."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.authz import SignInRefused, SignInThrottled, sign_in
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import audit_of


def _fail(engine, member: str, n: int) -> None:  # noqa: ANN001
    for _ in range(n):
        with pytest.raises(SignInRefused):
            sign_in(engine.ws, member, "not the password")


def test_five_failures_lock_the_name_until_the_window_passes(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    _fail(engine, "sigrid", 5)
    with pytest.raises(SignInThrottled,
                       match=r"Too many failed sign-ins .* \(5 in 15 minutes\)\. Try again in about 15"):
        sign_in(engine.ws, "sigrid", "sigrid")  # the right password is not even checked while locked
    [throttled] = audit_of(engine, "member.sign_in_throttled")
    assert throttled["entity_id"] == "sigrid" and throttled["payload"]["failures"] == 5
    engine.clock.advance_to(engine.clock.now() + dt.timedelta(minutes=15, seconds=1))
    assert sign_in(engine.ws, "sigrid", "sigrid").member_id == "sigrid"


def test_an_unknown_name_locks_the_same_way_and_a_success_resets_the_count(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    _fail(engine, "mallory", 5)  # no such member: same lock, so a lock tells nothing about who exists
    with pytest.raises(SignInThrottled):
        sign_in(engine.ws, "mallory", "anything")
    _fail(engine, "auditor", 4)
    assert sign_in(engine.ws, "auditor", "auditor").member_id == "auditor"  # 4 failures: not locked
    _fail(engine, "auditor", 4)  # counted again from the success
    assert sign_in(engine.ws, "auditor", "auditor").member_id == "auditor"
    assert engine.ws.verify_audit().intact

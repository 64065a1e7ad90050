"""Integration sources: an admin adds one (audited, secret shown once), others are refused, and a signal
from an unknown source tells the operator how to register it."""

from __future__ import annotations

import pytest

from engine.authz import NotAuthorized
from engine.commands import CommandRefused
from engine.commands.sources import add_intake_source, list_intake_sources
from engine.signals import SignalRejected, deliver_signal
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import actor, audit_of


def test_an_admin_adds_a_source_whose_signals_are_then_accepted(make_engine) -> None:
    engine = make_engine()
    secret = add_intake_source(engine, actor(engine, "admin"), "rule-feed-2", "rule_changes")
    assert len(secret) == 64
    listed = {s["source_id"]: s for s in list_intake_sources(engine)}
    assert listed["rule-feed-2"]["register"] == "rule_changes" and "secret" not in listed["rule-feed-2"]
    [entry] = audit_of(engine, "intake_source.created", "rule-feed-2")
    assert entry["actor"] == "member:admin" and secret not in entry["payload"]
    deliver_signal(engine, "rule-feed-2", b'{"reference": "R-1", "regulator": "NCUA", "title": "T"}',
                   dispatch=False)
    assert audit_of(engine, "signal.accepted")


@pytest.mark.parametrize("source,register,says", [
    ("Bad Name!", "rule_changes", "not a usable source name"),
    ("core-banking", "accounts",
     r"registers that accept signals \(a `signals:` section in their declaration\): rule_changes"),
    ("regulator-feed", "rule_changes", "already exists"),
])
def test_a_bad_source_is_refused_with_what_to_do(make_engine, source: str, register: str, says: str) -> None:
    engine = make_engine()
    with pytest.raises(CommandRefused, match=says):
        add_intake_source(engine, actor(engine, "admin"), source, register)


def test_only_admins_add_sources_and_a_refusal_is_audited(make_engine) -> None:
    engine = make_engine()
    with pytest.raises(NotAuthorized, match="needs the admin role"):
        add_intake_source(engine, actor(engine, "sigrid"), "feed", "rule_changes")
    assert audit_of(engine, "command.refused", "feed")
    assert "feed" not in {s["source_id"] for s in list_intake_sources(engine)}


def test_an_unknown_source_is_told_how_to_register(make_engine) -> None:
    engine = make_engine()
    with pytest.raises(SignalRejected, match="python -m engine sources add NAME --register REGISTER"):
        deliver_signal(engine, "nobody", b"{}", dispatch=False)

"""A run whose condition matches nothing is still a run: it starts, completes, and says so in its trail.

(Regression: such a run tried to go straight from pending to completed, which the state machine refuses,
and the fire failed with TransitionRefused.)"""

from __future__ import annotations

from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import audit_of, finding_definition, fire_one, run_of


def test_a_run_matching_no_subject_completes_through_running(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=0)
    run_id = fire_one(engine)
    run = run_of(engine, run_id)
    assert (run["status"], run["subjects_matched"], run["actions_invoked"]) == ("completed", 0, 0)
    assert run["started_at"] is not None and run["completed_at"] is not None
    events = [e["event"] for e in audit_of(engine, entity_id=run_id)]
    assert events.index("run.started") < events.index("run.completed")

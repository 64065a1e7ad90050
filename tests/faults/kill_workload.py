"""The kill-anywhere workload: what the engine process does in rounds, each step resumable from the workspace.

Round ``r`` fires six schedule definitions at ``START + r weeks`` (a schedule fire is recorded once per
definition and fire time, so a round fired again after a restart is a no-op), over 36 accounts:

- ``bulk``: a finding for every account (the in-process findings actioner, batches of 16);
- ``notify``: an evidence request for every medium-risk account, sent through the messaging
  integration (an external system with its own delivery ledger, called on a thread under a timeout);
- ``flaky``: a finding for every high-risk account, whose register times out on some subjects a scripted
  number of times (automatic retries, then a member's retries) and on one acts and loses its answer (the
  retry replays it);
- ``review``: a finding for the accounts of one manager, each held for approval; the member approves,
  dismisses or leaves open each by a fixed rule;
- ``halt``: a finding for every account; the member cancels the run while its second batch acts;
- ``ticket``: a ticket for the accounts of one manager, POSTed to a tracker outside the engine process (the
  harness's receiver), which dedupes by Idempotency-Key as a real tracker does.

Then the member's work: due retries until none, a retry of every run with failed items, the approvals.
Every step reads what is left to do from the workspace, so a process killed anywhere resumes it.
``expected_violations`` says what the end state must be once every round is worked to rest.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from core.roles import Actor
from engine import commands
from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord, TransientFailure
from engine.actioners.modules import FindingsActioner
from engine.authz import load_actor
from engine.executor import params_hash
from engine.runtime import Engine, schedule_event_id
from store import items as item_store
from store.records import insert_idempotency, insert_records
from store.subjects import insert_subjects
from store.workspace import Workspace

START = dt.datetime(2026, 7, 6, 6, 0, tzinfo=dt.UTC)  # a Monday
ACCOUNTS = 36
MEMBER = "sigrid"  # operator and approver; the definitions are authored by admin (segregation of duties)
DEFINITIONS = ("bulk", "notify", "flaky", "review", "halt", "ticket")
CANCEL_AT_CALL = 20  # the halt run is cancelled while its second batch (of 16) acts
FLAKY_FAILURES = (0, 1, 2, 3, "lose")  # by a high-risk account's rank: timeouts before success, or "lose"


def _definition(def_id: str, where: str, action: str, *, approval: bool = False, retry: int = 1) -> str:
    """A schedule definition over active accounts (and ``where``, one more clause), with one action."""
    clause = f"\n    - {where}" if where else ""
    return textwrap.dedent("""\
        id: {def_id}
        title: Kill-anywhere {def_id}
        trigger: {{kind: schedule, cron: "0 6 * * mon"}}
        condition:
          subject: accounts
          where:
            - {{field: status, op: eq, value: active, reason: the account is no longer active}}{clause}
        actions:
          - {action}
        policies:
          approval: {{required: {approval}}}
          retry: {{max_attempts: {retry}, backoff_seconds: 0}}
        """).format(def_id=def_id, clause=clause, action=action, approval=str(approval).lower(), retry=retry)


_FINDING = ('actioner: findings.create\n    params: {title: "Finding for {{ subject.name }}", severity: medium, '
            'owner: "{{ subject.manager }}"}')
_EVIDENCE = ('actioner: evidence_requests.create\n    params: {recipient: "{{ subject.manager }}", '
             'title: "Evidence from {{ subject.name }}", due_in_days: 14}')
_TICKET = ('actioner: webhook:tracker\n    params: {title: "Ticket for {{ subject.name }}", '
           'account: "{{ subject.account_id }}", round: "{{ trigger.occurred_at }}"}')
DEFINITION_TEXTS = {
    "bulk": _definition("bulk", "", _FINDING),
    "notify": _definition("notify", "{field: risk_rating, op: eq, value: medium, reason: risk changed}", _EVIDENCE),
    "flaky": _definition("flaky", "{field: risk_rating, op: eq, value: high, reason: risk changed}", _FINDING,
                         retry=2),
    "review": _definition("review", "{field: manager, op: eq, value: m.0, reason: manager changed}", _FINDING,
                          approval=True),
    "halt": _definition("halt", "", _FINDING),
    # A tracker outside the engine process (the harness's receiver), reached over HTTP with the item's key.
    "ticket": _definition("ticket", "{field: manager, op: eq, value: m.1, reason: manager changed}", _TICKET),
}


def write_integrations(folder: Path, tracker_url: str, messaging_port: int) -> None:
    """The tracker the ``ticket`` definition posts to (the harness's receiver on loopback), and the messaging
    gateway ``notify``'s evidence requests go through (the harness's SMTP server)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracker.yaml").write_text(f"id: tracker\nkind: webhook\nurl: {tracker_url}\nrecord_id: data.id\n"
                                         "timeout_seconds: 10\n")
    (folder / "messaging.yaml").write_text(f"id: messaging\nkind: smtp\nhost: 127.0.0.1\nport: {messaging_port}\n"
                                           "from: requests@harness.example\ntimeout_seconds: 10\n")


def account_rows() -> list[dict[str, Any]]:
    """Ranks 0–2 of every six are low risk, 3–4 medium, 5 high; managers m.0 … m.9."""
    return [{"account_id": f"ACC-{i:03d}", "name": f"Member {i}", "manager": f"m.{i % 10}", "status": "active",
             "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": ("low", "low", "low", "medium", "medium",
                                                                    "high")[i % 6]}
            for i in range(1, ACCOUNTS + 1)]


def flaky_plan(subject_id: str) -> int | str:
    """How the ``flaky`` register treats an account: timeouts before it succeeds, or "lose" (acts once and
    loses its answer)."""
    return FLAKY_FAILURES[(int(subject_id[4:]) // 6) % len(FLAKY_FAILURES)]


def approval_rule(subject_id: str) -> str:
    """What the member decides for a ``review`` item: the same for a subject in every round."""
    return ("approve", "dismiss", "open")[(int(subject_id[4:]) // 10) % 3]


def write_definitions(defs: Path) -> None:
    defs.mkdir(parents=True, exist_ok=True)
    for def_id, text in DEFINITION_TEXTS.items():
        (defs / f"{def_id}.yaml").write_text(text)


def seed_accounts(ws: Workspace) -> None:
    with ws.transaction() as tx:
        insert_subjects(tx, "accounts", account_rows())


class Hooks(Protocol):
    """Where the engine process may be killed: named points, and the phase (member command) around them."""

    def during(self, phase: str) -> AbstractContextManager[None]: ...

    def point(self, where: str) -> None: ...


class WorkloadFindings:
    """The real findings actioner, behaving per definition as the workload needs (see the module doc)."""

    in_process = True

    def __init__(self, ws: Workspace, hooks: Hooks) -> None:
        self.inner, self.ws, self.hooks = FindingsActioner(), ws, hooks
        self.spec = self.inner.spec
        self.engine: Engine | None = None
        self.halt_calls = 0

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        created = self.inner.execute(req, ctx)
        if req.definition_id == "flaky":
            self._flaky(req, created)
        elif req.definition_id == "halt":
            self.halt_calls += 1
            if self.halt_calls % CANCEL_AT_CALL == 0:
                self._cancel(req.run_id)
        return created

    def _flaky(self, req: ActionRequest, created: CreatedRecord) -> None:
        plan = flaky_plan(req.subject_id)
        with self.ws.read() as conn:
            attempts = item_store.read_item(conn, req.item_id)["attempts"]
        if plan == "lose" and attempts == 0:  # the register commits, then the answer is lost on the way back
            with self.ws.transaction() as tx:
                insert_records(tx, created.module, [created.row])
                insert_idempotency(tx, [dict(idempotency_key=req.idempotency_key, actioner=self.spec.name,
                                             params_hash=params_hash(req.params), outcome="succeeded",
                                             record_ref=created.ref, item_id=req.item_id, created_at=tx.now())])
            self.hooks.point("effect")  # the record is committed, its item not yet settled
            raise TransientFailure("connection reset while reading the findings register's answer")
        if isinstance(plan, int) and attempts < plan:
            raise TransientFailure(f"findings register timed out (attempt {attempts + 1})")

    def _cancel(self, run_id: str) -> None:
        assert self.engine is not None
        with self.hooks.during("cancel"):
            self.hooks.point("cancelling")
            try:
                commands.cancel_run(self.engine, _member(self.engine), run_id, "stopped by the kill workload")
            except commands.CommandRefused:
                pass  # already cancelled (before a restart): the run goes on settling


def _member(engine: Engine) -> Actor:
    return load_actor(engine.ws, MEMBER)


def fire_rounds(engine: Engine, rounds: int) -> None:
    """Fire every definition for rounds 0 … rounds−1 that has not been fired (its trigger event recorded;
    the engine would find it so itself, one read per fire, and recovery dispatches it if it was not)."""
    with engine.ws.read() as conn:
        fired = set(conn.execute(sa.text("SELECT event_id FROM trigger_events")).scalars())
    for r in range(rounds):
        for def_id in DEFINITIONS:
            at = START + dt.timedelta(weeks=r)
            if schedule_event_id(def_id, at) not in fired:
                engine.fire(def_id, at)


def retry_failed_runs(engine: Engine, hooks: Hooks) -> None:
    """The member retries every run that has failed items, until none is left (each retry is one more
    attempt; the scripted register gives in after at most three timeouts)."""
    member = _member(engine)
    for _ in range(max(p for p in FLAKY_FAILURES if isinstance(p, int)) + 1):
        with engine.ws.read() as conn:
            runs = sorted({run_id for run_id, _ in item_store.read_failed_item_ids(conn)})
        if not runs:
            return
        for run_id in runs:
            with hooks.during("retry"):
                commands.retry_run(engine, member, run_id)


def decide_approvals(engine: Engine, hooks: Hooks) -> None:
    """The member decides every open approval by ``approval_rule`` (some stay open on purpose)."""
    member = _member(engine)
    with engine.ws.read() as conn:
        waiting = item_store.read_open_approval_items(conn)
    for item in waiting:
        rule = approval_rule(item["subject_id"])
        with hooks.during("approval"):
            if rule == "approve":
                commands.approve_item(engine, member, item["item_id"])
            elif rule == "dismiss":
                commands.dismiss_item(engine, member, item["item_id"], "not applicable this week")


def expected_outcomes() -> dict[tuple[str, str], int]:
    """(definition, outcome) → items per round, for the definitions whose outcomes are fixed."""
    want: dict[tuple[str, str], int] = {}
    for account in account_rows():
        sid = account["account_id"]
        outcomes = {"bulk": "succeeded", "notify": "succeeded", "ticket": "succeeded",
                    "flaky": "idempotent-replay" if flaky_plan(sid) == "lose" else "succeeded",
                    "review": {"approve": "succeeded", "dismiss": "skipped", "open": "awaiting-approval"}[
                        approval_rule(sid)]}
        for def_id, outcome in outcomes.items():
            if _matches(def_id, account):
                want[(def_id, outcome)] = want.get((def_id, outcome), 0) + 1
    return want


def _matches(def_id: str, account: dict[str, Any]) -> bool:
    return {"notify": account["risk_rating"] == "medium", "flaky": account["risk_rating"] == "high",
            "review": account["manager"] == "m.0", "ticket": account["manager"] == "m.1"}.get(def_id, True)


def expected_violations(conn: sa.Connection, rounds: int) -> list[str]:
    """The workload's own end state once every round is worked to rest; empty if it is reached."""
    q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
    out = []
    per_def = dict(q("SELECT definition_id, count(*) FROM runs GROUP BY 1"))
    if per_def != {d: rounds for d in DEFINITIONS}:
        out.append(f"runs per definition {per_def}, expected {rounds} of each")
    got = {(d, o): n for d, o, n in q("SELECT r.definition_id, i.outcome, count(*) FROM run_items i "
                                      "JOIN runs r USING (run_id) GROUP BY 1, 2")}
    want = {key: n * rounds for key, n in expected_outcomes().items()}
    fixed = {key: n for key, n in got.items() if key[0] != "halt"}
    if fixed != want:
        out.append(f"items by (definition, outcome) {sorted(fixed.items())}, expected {sorted(want.items())}")
    halt = {o: n for (d, o), n in got.items() if d == "halt"}
    if set(halt) - {"succeeded", "skipped"} or sum(halt.values()) != ACCOUNTS * rounds:
        out.append(f"halt items {halt}: expected {ACCOUNTS * rounds}, each succeeded or skipped by the cancel")
    statuses = dict(q("SELECT status, count(*) FROM runs WHERE definition_id <> 'review' GROUP BY 1"))
    if set(statuses) - {"completed", "cancelled"}:
        out.append(f"runs not closed: {statuses}")
    return out

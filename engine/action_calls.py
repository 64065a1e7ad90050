"""Calling an actioner that reaches outside the process, under a timeout, and checking what it answers.

An integration can hang; the engine must not hang with it. Such a call runs on a thread of its own and is
waited for at most ``RUNLEDGER_ACTION_TIMEOUT_SECONDS`` (30 s); then the item fails transiently. Should the
call answer later, its record and ledger entry are written then, so the item's retry replays it; while it
has not answered, that idempotency key is not called again. An answer that is not a record of the
actioner's register (garbage) is refused (``check_created``) before it could fail a batch's write.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from core.states import SUCCEEDED
from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord
from engine.settings import number_from_env
from store.records import RECORD_TABLES, field_value_types, insert_idempotency, insert_records, read_idempotency
from store.workspace import Workspace

log = logging.getLogger("runledger.executor")

DEFAULT_ACTION_TIMEOUT_SECONDS = 30.0


def action_timeout_seconds() -> float:
    """How long the executor waits for an actioner's answer: ``RUNLEDGER_ACTION_TIMEOUT_SECONDS`` or 30 s.
    The same for every definition: a hung upstream is the engine's problem, not a definition's choice."""
    return number_from_env("RUNLEDGER_ACTION_TIMEOUT_SECONDS", DEFAULT_ACTION_TIMEOUT_SECONDS, "seconds")


class _Call:
    """One actioner call on its own (daemon) thread, so that the executor can stop waiting for it.

    If the executor gives up on it (``abandoned``) and it later answers, the call records its record and
    ledger entry itself (as an upstream that acted would have), so the item's retry replays it instead
    of acting again; ``settled`` is set once that is decided either way.
    """

    __slots__ = ("lock", "answered", "settled", "created", "error", "abandoned")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = threading.Event()
        self.settled = threading.Event()
        self.created: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class _RecordCheck(NamedTuple):
    allowed: frozenset[str]
    required: tuple[str, ...]
    key: str
    types: dict[str, tuple[tuple[type, ...], str]]  # field → (the Python types it takes, how to say so)


def _record_checks() -> dict[str, _RecordCheck]:
    checks = {}
    for module, table in RECORD_TABLES.items():
        key = list(table.primary_key.columns)[0].name
        required = tuple(c.name for c in table.columns
                         if not c.nullable and c.default is None and c.server_default is None)
        checks[module] = _RecordCheck(frozenset(table.columns.keys()), required, key,
                                      field_value_types(table))
    return checks


def _wrongly_typed(row: dict[str, Any], types: dict[str, tuple[tuple[type, ...], str]]) -> str | None:
    """The first field whose value the register's column cannot take as it is, said as a sentence part."""
    for name, value in row.items():
        if value is None:
            continue
        takes, said = types[name]
        if type(value) not in takes:
            return f"whose {name} is a {type(value).__name__}, not {said}"
    return None


_RECORD_CHECKS = _record_checks()


def check_created(action: str, created: Any, module: str | None) -> str | None:
    """Why an actioner's answer is not a record the engine can write, or None if it is.

    Garbage must be refused here, item by item: written as it is, it would fail the whole batch's
    commit, and every recovery would replay it into the same failure."""
    if not isinstance(created, CreatedRecord):
        return (f"{action} answered with {type(created).__name__} instead of the record it created; the "
                "answer was refused and nothing was recorded")
    if created.module is None and module is None:  # a remote system's record: the reference names it there
        prefix = action + ":"
        if not isinstance(created.ref, str) or not created.ref.startswith(prefix) or len(created.ref) == len(prefix):
            return (f"{action} answered without a reference to the remote record (got {created.ref!r}); the "
                    "answer was refused and nothing was recorded")
        return None
    check = _RECORD_CHECKS.get(created.module) if created.module is not None else None
    if check is None or (module is not None and created.module != module):
        expected = f"not {module!r}" if module is not None else "which this engine does not know"
        return (f"{action} answered with a record for register {created.module!r}, {expected}; the "
                "answer was refused and nothing was recorded")
    row = created.row
    if not isinstance(row, dict):
        return (f"{action} answered with a {type(row).__name__} as its record's row; the answer was refused "
                "and nothing was recorded")
    if not (row.keys() <= check.allowed and None not in map(row.get, check.required)):
        unknown = ", ".join(sorted(map(str, row.keys() - check.allowed)))
        if unknown:
            return (f"{action} answered with fields the {created.module} register does not have ({unknown}); "
                    "the answer was refused and nothing was recorded")
        missing = ", ".join(c for c in check.required if row.get(c) is None)
        return (f"{action} answered with a record missing {missing}; the answer was refused and nothing was "
                "recorded")
    wrong = _wrongly_typed(row, check.types)
    if wrong is not None:
        return f"{action} answered with a record {wrong}; the answer was refused and nothing was recorded"
    if not isinstance(created.ref, str) or created.ref != f"{created.module}:{row[check.key]}":
        return (f"{action} answered without a reference to the record it created (got {created.ref!r}); the "
                "answer was refused and nothing was recorded")
    return None


class NoAnswer(Exception):
    """The actioner did not answer within the action timeout."""


class TimedCalls:
    """The executor's calls to out-of-process actioners, and those that did not answer in time."""

    def __init__(self, ws: Workspace, ctx: ActionContext) -> None:
        self.ws, self.ctx = ws, ctx
        self.timeout = action_timeout_seconds()
        self._late_lock = threading.Lock()
        self._late: dict[str, _Call] = {}  # idempotency key → a call that did not answer in time

    def has_late(self, key: str) -> bool:
        return bool(self._late) and key in self._late

    def still_out(self, key: str) -> bool:
        """Whether the late call for ``key`` may still act; once settled, it is forgotten."""
        with self._late_lock:
            late = self._late.get(key)
            if late is None or late.settled.is_set():
                self._late.pop(key, None)
                return False
            return True

    def call(self, actioner: Any, request: ActionRequest, action: str, ph: str, module: str | None,
             actor: str) -> Any:
        """``actioner.execute`` on a thread of its own, waited for up to ``action_timeout`` seconds.

        An actioner that reaches outside the process (an integration) can hang; the engine must not hang
        with it. One that only builds its record in memory declares ``in_process`` and is called directly
        (a thread per item would cost a 100,000-item run seconds)."""
        call = _Call()

        def work() -> None:
            created: Any = None
            error: BaseException | None = None
            try:
                created = actioner.execute(request, self.ctx)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting executor
                error = exc
            with call.lock:
                call.created, call.error = created, error
                call.answered.set()
                abandoned = call.abandoned
            if abandoned:
                try:
                    self._record_late_answer(request, action, ph, module, created, error, actor)
                finally:
                    call.settled.set()

        threading.Thread(target=work, daemon=True, name=f"runledger-action-{request.item_id}").start()
        call.answered.wait(self.timeout)
        with call.lock:
            if not call.answered.is_set():
                call.abandoned = True
                with self._late_lock:
                    self._late[request.idempotency_key] = call
                raise NoAnswer()
        if call.error is not None:
            raise call.error
        return call.created

    def call_concurrently(self, groups: list[list[tuple[Any, ActionRequest, str, str]]],
                          actor: str) -> dict[str, tuple[Any, BaseException | None]]:
        """``call`` for many items at once: each group, the (actioner, request, action, params hash) of one
        integration, at most that actioner's ``concurrency`` at a time; item → (answer, error)."""
        answers: dict[str, tuple[Any, BaseException | None]] = {}

        def one(actioner: Any, request: ActionRequest, action: str, ph: str) -> None:
            try:
                answers[request.item_id] = (self.call(actioner, request, action, ph, None, actor), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the settling loop, which classes it
                answers[request.item_id] = (None, exc)

        for calls in groups:
            width = min(calls[0][0].concurrency, len(calls))
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix="runledger-calls") as pool:
                for done in [pool.submit(one, *c) for c in calls]:
                    done.result()
        return answers

    def _record_late_answer(self, request: ActionRequest, action: str, ph: str, module: str | None,
                            created: Any, error: BaseException | None, actor: str) -> None:
        """A call the executor stopped waiting for has answered: if it created a record, record it and its
        ledger entry now, so that the item's retry replays it rather than acting a second time."""
        item_id, key = request.item_id, request.idempotency_key
        if error is not None:
            log.warning("%s answered item %s late, with a failure (%s): nothing was recorded; a retry calls it "
                        "again", action, item_id, error)
            return
        refused = check_created(action, created, module)
        if refused is not None:
            log.warning("item %s: %s", item_id, refused)
            return
        try:
            with self.ws.transaction() as tx:
                if read_idempotency(tx.conn, [key]):
                    return
                insert_records(tx, created.module, [created.row])
                insert_idempotency(tx, [dict(idempotency_key=key, actioner=action, params_hash=ph,
                                             outcome=SUCCEEDED, record_ref=created.ref, item_id=item_id,
                                             created_at=tx.now())])
                tx.audit(actor, "item.late_answer_recorded", "run_item", item_id,
                         {"run_id": request.run_id, "record_ref": created.ref,
                          "timeout_seconds": self.timeout})
        except Exception:  # noqa: BLE001 - on a thread nobody waits for: say it, do not lose it silently
            log.exception("item %s: %s answered late with %s, which could not be recorded", item_id, action,
                          created.ref)

"""What an actioner is: an owning module's entry point that acts on one subject and returns the record it
created, or fails with a cause classed as transient (worth a retry) or deterministic (not).

Idempotency is not each actioner's chore: the executor looks every key up in the idempotency ledger
before calling an actioner, and writes the ledger entry in the same transaction as the record, so an
actioner is called at most once per key that ever committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.actions import ActionerSpec
from core.states import DETERMINISTIC, TRANSIENT
from engine.clock import Clock


class ActionFailed(Exception):
    """``evidence``: what the remote system answered (kept on the attempt); ``retry_after``: seconds it
    asked us to wait (``Retry-After``), which the automatic retry honours."""

    failure_class = DETERMINISTIC

    def __init__(self, cause: str, evidence: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        self.cause, self.evidence, self.retry_after = cause, evidence, retry_after
        super().__init__(cause)


class TransientFailure(ActionFailed):
    """Worth retrying: the upstream may recover (an outage, a timeout)."""

    failure_class = TRANSIENT


class DeterministicFailure(ActionFailed):
    """Retrying would fail the same way: the actioner refuses these parameters or this subject."""

    failure_class = DETERMINISTIC


@dataclass(frozen=True)
class ActionRequest:
    item_id: str
    run_id: str
    definition_id: str
    idempotency_key: str
    params: dict[str, Any]
    subject_kind: str
    subject_id: str
    subject: dict[str, Any]


@dataclass
class ActionContext:
    clock: Clock
    services: dict[str, Any] = field(default_factory=dict)

    def now(self) -> dt.datetime:
        return self.clock.now()


@dataclass(frozen=True)
class CreatedRecord:
    """What an actioner made. An owning module's record: ``module`` (the register the row goes into),
    ``row``, and ``ref`` "findings:FND-…". A remote system's (a webhook, an e-mail): ``module`` and ``row``
    None, ``ref`` naming it there ("webhook:ticketing:4711"), and ``evidence``, what the system answered
    (status, the headers that matter, the SHA-256 of its body), which the attempt keeps."""

    module: str | None
    row: dict[str, Any] | None
    ref: str
    evidence: dict[str, Any] | None = None


class Actioner(Protocol):
    spec: ActionerSpec

    def execute(self, request: ActionRequest, ctx: ActionContext) -> CreatedRecord: ...


# Actioners that only build their record in memory (no integration, no I/O): they cannot hang on an
# upstream, so the executor calls them directly instead of on a thread it can stop waiting for (a thread
# per item would cost a 100,000-item run seconds). Any other actioner is called under the action timeout.
# An actioner class may say so itself with ``in_process = True``; these are the owning modules' own.
IN_PROCESS_ACTIONERS = frozenset({
    "engine.actioners.modules.FindingsActioner",
    "engine.actioners.modules.AssessmentsActioner",
    "engine.actioners.modules.LifecycleActioner",
})


def acts_in_process(actioner: object) -> bool:
    declared = getattr(actioner, "in_process", None)
    if declared is not None:
        return bool(declared)
    cls = type(actioner)
    return f"{cls.__module__}.{cls.__qualname__}" in IN_PROCESS_ACTIONERS


def record_id(prefix: str, idempotency_key: str) -> str:
    """Derived from the key, so the same action can only ever name the same record."""
    return f"{prefix}-{idempotency_key[:12].upper()}"

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

from engine.actioners.specs import ActionerSpec
from engine.clock import Clock
from engine.statemachine import DETERMINISTIC, TRANSIENT


class ActionFailed(Exception):
    failure_class = DETERMINISTIC

    def __init__(self, cause: str) -> None:
        self.cause = cause
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
    module: str  # the register the row goes into
    row: dict[str, Any]
    ref: str  # "findings:FND-…": module and id, what the item's record_ref holds


class Actioner(Protocol):
    spec: ActionerSpec

    def execute(self, request: ActionRequest, ctx: ActionContext) -> CreatedRecord: ...


def record_id(prefix: str, idempotency_key: str) -> str:
    """Derived from the key, so the same action can only ever name the same record."""
    return f"{prefix}-{idempotency_key[:12].upper()}"

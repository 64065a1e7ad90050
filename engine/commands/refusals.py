"""What a member's command answers instead of doing it: a named refusal with a sentence saying why and what
to do, and the lookups every command starts with (an unknown run or item is refused, not a crash)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.authz import NotAuthorized
from store import items as item_store
from store import runs as run_store
from store.errors import StoreError

if TYPE_CHECKING:
    from engine.runtime import Engine


class CommandRefused(Exception):
    """The command is not possible for this run or item now; the message says why and what to do."""


class NotFound(LookupError):
    pass


# What a member's command may answer instead of doing it, each with a sentence to show as it is: refused by
# role or by state, not found, or stopped by the store (a write conflict, a failed write; nothing was saved).
COMMAND_REFUSALS: tuple[type[Exception], ...] = (NotAuthorized, CommandRefused, NotFound, StoreError)


class NotEligible(CommandRefused):
    pass


class AlreadyDone(CommandRefused):
    pass


class FourEyesRefused(CommandRefused):
    """The member had a hand in the work they were asked to decide: they authored the definition version
    the run pinned, started the run, or retried the item. A second pair of eyes must decide it."""


def find_run(engine: Engine, run_id: str) -> dict:
    with engine.ws.read() as conn:
        run = run_store.read_run(conn, run_id)
    if run is None:
        raise NotFound(f"There is no run {run_id!r}. Check the id (runs look like RUN-000123).")
    return run


def find_item(engine: Engine, item_id: str) -> tuple[dict, dict]:
    with engine.ws.read() as conn:
        item = item_store.read_item(conn, item_id)
    if item is None:
        raise NotFound(f"There is no run item {item_id!r}. Check the id (items look like RUN-000123-000001).")
    return item, find_run(engine, item["run_id"])

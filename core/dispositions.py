"""What was done about a failure that will not be retried: its disposition.

A failed item keeps its outcome (``failed``: the evidence is never rewritten); an approver records beside it
why it may stay failed. Three kinds, each with what it must say:

- ``waived``: the risk is accepted. A reason is required.
- ``resolved-outside``: the work was done by hand, elsewhere. A reason and the external reference (a ticket,
  a letter's number) where the work can be found.
- ``superseded``: a later item or run did the work. A reason and the later item or run, named.

Pure: the rules of what a disposition must hold, and the sentences that refuse one that does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WAIVED = "waived"
RESOLVED_OUTSIDE = "resolved-outside"
SUPERSEDED = "superseded"
DISPOSITION_KINDS: tuple[str, ...] = (WAIVED, RESOLVED_OUTSIDE, SUPERSEDED)
DISPOSITION_LABELS: dict[str, str] = {
    WAIVED: "waived (risk accepted)",
    RESOLVED_OUTSIDE: "resolved outside (done by hand)",
    SUPERSEDED: "superseded (by a later item or run)",
}

# How a failure stands in the reports: recovered by a retry (its outcome is no longer failed), still failed
# and dispositioned, or still failed and open — the one that needs someone's attention.
FAILURE_RECOVERED = "recovered"
FAILURE_DISPOSITIONED = "dispositioned"
FAILURE_OPEN = "open"

_RUN_ID = re.compile(r"^RUN-\d+$")
_ITEM_ID = re.compile(r"^RUN-\d+-\d+$")
MAX_TEXT = 2000


class DispositionInvalid(ValueError):
    """The disposition as given cannot be recorded; the message says what was wrong and what to give."""


@dataclass(frozen=True)
class Disposition:
    """A disposition as the member gave it, checked: its kind, why, and what it points to."""

    kind: str
    reason: str
    reference: str | None = None  # resolved-outside: where the work done by hand is recorded
    superseded_by: str | None = None  # superseded: the later run or item

    @property
    def summary(self) -> str:
        """One line for tables and the brief: ``waived: risk accepted by the board``."""
        tail = (f" (ref {self.reference})" if self.reference else
                f" (by {self.superseded_by})" if self.superseded_by else "")
        return f"{self.kind}: {self.reason}{tail}"


def _text(value: str | None) -> str:
    return " ".join((value or "").split())


def make_disposition(kind: str, reason: str | None, reference: str | None = None,
                     superseded_by: str | None = None) -> Disposition:
    """The disposition checked against its kind's rules; ``DispositionInvalid`` says what is missing."""
    kind = _text(kind).lower()
    if kind not in DISPOSITION_KINDS:
        raise DispositionInvalid(f"Unknown disposition {kind!r}; give one of {', '.join(DISPOSITION_KINDS)}.")
    reason, reference, later = _text(reason), _text(reference) or None, _text(superseded_by).upper() or None
    if not reason:
        raise DispositionInvalid(f"A {kind} disposition needs a reason: say why the failure may stay failed.")
    if len(reason) > MAX_TEXT or len(reference or "") > MAX_TEXT:
        raise DispositionInvalid(f"A disposition's reason and reference are at most {MAX_TEXT} characters.")
    if kind == RESOLVED_OUTSIDE and not reference:
        raise DispositionInvalid("A resolved-outside disposition needs the external reference where the work "
                                 "done by hand is recorded (a ticket or letter number).")
    if kind != RESOLVED_OUTSIDE and reference:
        raise DispositionInvalid(f"Only a resolved-outside disposition takes an external reference, not {kind}.")
    if kind == SUPERSEDED:
        if not later:
            raise DispositionInvalid("A superseded disposition names the later run or item that did the work "
                                     "(RUN-000123 or RUN-000123-000001).")
        if not (_RUN_ID.match(later) or _ITEM_ID.match(later)):
            raise DispositionInvalid(f"{later!r} is not a run or item id (RUN-000123 or RUN-000123-000001).")
    elif later:
        raise DispositionInvalid(f"Only a superseded disposition names a later run or item, not {kind}.")
    return Disposition(kind, reason, reference, later)


def run_of(entity_id: str) -> str:
    """The run an item or run id belongs to: ``RUN-000123-000004`` → ``RUN-000123``."""
    return entity_id if _RUN_ID.match(entity_id) else entity_id.rsplit("-", 1)[0]


def failure_standing(outcome: str, ever_failed: bool, dispositioned: bool) -> str | None:
    """How an item stands as a failure: None if it never failed; recovered if a retry brought it past its
    failure; dispositioned or open while it is still failed."""
    if outcome == "failed":
        return FAILURE_DISPOSITIONED if dispositioned else FAILURE_OPEN
    return FAILURE_RECOVERED if ever_failed else None

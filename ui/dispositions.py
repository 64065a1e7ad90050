"""The disposition form the Run item and Failed items pages share: the kind, why, and what its kind needs.

The form only gathers; ``engine.commands`` checks the member, four eyes and the item, and refuses with the
sentence shown here. Values are held by Streamlit's widget keys so a plan survives the rerun that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.dispositions import DISPOSITION_KINDS, DISPOSITION_LABELS, RESOLVED_OUTSIDE, SUPERSEDED
from core.markup import md_escape
from core.roles import Actor


@dataclass(frozen=True)
class DispositionInput:
    kind: str
    reason: str
    reference: str | None
    superseded_by: str | None


def disposition_fields(key: str) -> DispositionInput:
    """The form's fields (kind, reason, and the reference or the later run its kind asks for)."""
    kind = st.selectbox("Disposition", DISPOSITION_KINDS, format_func=DISPOSITION_LABELS.__getitem__,
                        key=f"{key}_kind")
    reason = st.text_input("Reason (required)", key=f"{key}_reason",
                           placeholder="Why the failure may stay failed: kept in the audit log for good")
    reference = superseded_by = None
    if kind == RESOLVED_OUTSIDE:
        reference = st.text_input("External reference (required)", key=f"{key}_reference",
                                  placeholder="The ticket or letter where the work done by hand is recorded")
    elif kind == SUPERSEDED:
        superseded_by = st.text_input("Superseded by (required)", key=f"{key}_later",
                                      placeholder="The later run or item: RUN-000123 or RUN-000123-000001")
    return DispositionInput(kind, reason, reference or None, superseded_by or None)


def may_disposition(actor: Actor) -> bool:
    """Whether the member holds the approver role; says why not when they do not."""
    if actor.may("disposition"):
        return True
    st.caption(f"Dispositioning a failure needs the approver role; {md_escape(actor.member_id)} has "
               f"{md_escape(', '.join(sorted(actor.roles)) or 'no role')}.")
    return False


def describe_disposition(d: dict) -> str:
    """One markdown line: ``**waived** by member:olav at … — reason (ref …)``."""
    tail = (f" · reference {md_escape(d['reference'])}" if d.get("reference") else
            f" · superseded by {md_escape(d['superseded_by'])}" if d.get("superseded_by") else "")
    return (f"**{md_escape(d['kind'])}** by {md_escape(d['decided_by'])} at {d['decided_at']:%Y-%m-%d %H:%M} UTC"
            f" — {md_escape(d['reason'])}{tail}")

"""Alerts: the team hears of a run that failed, completed with failures or waits on an approval, without
watching the Runs tab. A definition declares ``alerts: {on: [...], via: INTEGRATION, to: [...]}``; an
integration may declare ``alerts: {on: [...], to: [...]}`` for every automation that declares none (the
workspace's default). One message per run and status reached, naming the automation, the counts, the top
causes and the run's link.

Pure: the policy's model and parser, and the message's words. Sending is ``engine.alerts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.declared import EMAIL
from core.states import AWAITING_APPROVAL, COMPLETED_WITH_FAILURES, FAILED

ALERT_ON = (FAILED, COMPLETED_WITH_FAILURES, AWAITING_APPROVAL)  # what a run can reach that is worth a message


@dataclass(frozen=True)
class AlertPolicy:
    on: tuple[str, ...]
    via: str  # an integration's id
    to: tuple[str, ...] = ()  # recipients, for an smtp integration


class AlertPolicyError(ValueError):
    """What is wrong with an ``alerts:`` block: (field under alerts, expected, found, fix)."""

    def __init__(self, fld: str, expected: str, found: Any, fix: str = "") -> None:
        self.field, self.expected, self.found, self.fix = fld, expected, found, fix
        super().__init__(f"field '{fld}': expected {expected}; found {found!r}")


def parse_alert_policy(raw: Any, integrations: Mapping[str, str], via_default: str | None = None,
                       prefix: str = "alerts") -> AlertPolicy:
    """``raw`` as a policy; ``integrations``: declared id → kind (``webhook``/``smtp``). On an integration's
    own default, ``via_default`` is that integration (and ``via`` may not be given)."""
    if not isinstance(raw, dict):
        raise AlertPolicyError(prefix, "{on: [STATUS, …], via: INTEGRATION, to: [ADDRESS, …]}", raw)
    # YAML 1.1 reads a bare ``on:`` key as the boolean true: take it as the word it was written as.
    raw = {("on" if k is True else k): v for k, v in raw.items()}
    allowed = {"on", "to"} if via_default else {"on", "via", "to"}
    for key in raw:
        if key not in allowed:
            raise AlertPolicyError(f"{prefix}.{key}", f"one of {', '.join(sorted(allowed))}", key,
                                   "remove it or correct its spelling")
    on = raw.get("on")
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not on or any(s not in ALERT_ON for s in on):
        raise AlertPolicyError(f"{prefix}.on", f"a list of one or more of {', '.join(ALERT_ON)}", on,
                               "say which statuses a run must reach to send the alert")
    via = via_default or raw.get("via")
    if not isinstance(via, str) or via not in integrations:
        known = ", ".join(sorted(integrations)) or "none declared"
        raise AlertPolicyError(f"{prefix}.via", f"a declared integration ({known})", via,
                               "declare the integration in the integrations folder, or name one that is")
    to = raw.get("to") or []
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or any(not isinstance(a, str) or not EMAIL.match(a) for a in to):
        raise AlertPolicyError(f"{prefix}.to", "a list of e-mail addresses", raw.get("to"))
    if integrations[via] == "smtp" and not to:
        raise AlertPolicyError(f"{prefix}.to", f"the addresses to mail (via {via} is an e-mail integration)",
                               "nothing", "add 'to: [compliance-team@example.org]'")
    return AlertPolicy(tuple(dict.fromkeys(on)), via, tuple(to))


@dataclass(frozen=True)
class AlertFacts:
    """What an alert says of its run."""

    run_id: str
    reason: str  # the status reached (or awaiting-approval)
    definition_id: str
    title: str
    version: int
    trigger: str
    counts: Mapping[str, int]  # item outcome → count
    causes: Sequence[tuple[str, int]]  # (failure cause, items), most first
    link: str


def alert_subject(f: AlertFacts) -> str:
    said = {FAILED: "failed", COMPLETED_WITH_FAILURES: "completed with failures",
            AWAITING_APPROVAL: "is waiting for approval"}[f.reason]
    return f"[Runledger] {f.title}: {f.run_id} {said}"


def alert_body(f: AlertFacts) -> str:
    counts = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(f.counts.items()) if n) or "no items"
    lines = [f"{f.title} ({f.definition_id} v{f.version}), run {f.run_id}, triggered by {f.trigger}:",
             f"{alert_subject(f).split(': ', 1)[1]}.", "", f"Items: {counts}."]
    if f.causes:
        lines += ["", "Top failure causes:"] + [f"- {n:,} × {cause}" for cause, n in f.causes[:5]]
    lines += ["", f"Open the run: {f.link}"]
    return "\n".join(lines)


def alert_document(f: AlertFacts) -> dict[str, Any]:
    """The alert as a webhook's JSON body."""
    return {"alert": {"run_id": f.run_id, "status": f.reason, "definition_id": f.definition_id,
                      "definition_version": f.version, "title": f.title, "trigger": f.trigger,
                      "counts": dict(f.counts), "top_causes": [{"cause": c, "items": n} for c, n in f.causes[:5]],
                      "link": f.link, "summary": alert_subject(f)}}

"""What remote systems answered the period's actions, for the brief: per integration, the attempts, how they
ended, the answers by status (or SMTP reply), and the replays the receiver itself recognised
(``Idempotent-Replayed``) — the counterpart, on the other side, of "no action executed twice"."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.integrations import ACTIONER_PREFIX
from core.states import DETERMINISTIC, ITEM_FAILED, SUCCEEDED, TRANSIENT

REMOTE_PREFIXES = tuple(f"{p}:" for p in ACTIONER_PREFIX.values())


@dataclass
class RemoteSummary:
    action: str  # webhook:ticketing, email:mail
    attempts: int = 0
    succeeded: int = 0
    transient: int = 0
    deterministic: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    replays_recognised: int = 0

    def answers_said(self) -> str:
        return ", ".join(f"{answer} × {n:,}" for answer, n in sorted(self.answers.items()))


def _answer(evidence: Mapping[str, Any] | None) -> str:
    if not evidence:
        return "no answer"
    if evidence.get("kind") == "smtp":
        if evidence.get("refused"):
            return "refused " + ", ".join(sorted({str(r).split()[0] for r in evidence["refused"].values()}))
        return "accepted" if evidence.get("accepted") else "no answer"
    return str(evidence["status"]) if "status" in evidence else "no answer"


def summarize_remote(rows: Iterable[Mapping[str, Any]]) -> list[RemoteSummary]:
    """``rows``: the attempts ``store.views.brief.read_remote_attempts`` reads, in action order."""
    out: dict[str, RemoteSummary] = {}
    for r in rows:
        s = out.setdefault(r["action"], RemoteSummary(r["action"]))
        s.attempts += 1
        s.succeeded += r["outcome"] == SUCCEEDED
        failed = r["outcome"] == ITEM_FAILED
        s.transient += failed and r["failure_class"] == TRANSIENT
        s.deterministic += failed and r["failure_class"] == DETERMINISTIC
        evidence = json.loads(r["evidence"]) if r.get("evidence") else None
        s.answers[_answer(evidence)] += 1
        headers = (evidence or {}).get("headers") or {}
        s.replays_recognised += str(headers.get("idempotent-replayed", "")).lower() == "true"
    return list(out.values())

"""The brief's sentences, in the spirit of the spec's worked example, every number taken from the data.

Plain text only: the layout (``brief_sections``) escapes it before reportlab parses its mini-markup, so a
subject name, cause or reason that looks like HTML or a link is printed as the characters it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.states import AWAITING_APPROVAL, COMPLETED, DISMISSED, IDEMPOTENT_REPLAY, ITEM_FAILED, SKIPPED, SUCCEEDED
from reporting.firing import FiringCheck

SUBJECT_NOUNS = {"accounts": ("account", "accounts"), "suppliers": ("supplier", "suppliers"),
                 "incidents": ("incident", "incidents"), "exceptions": ("exception", "exceptions"),
                 "aml_monitor_results": ("AML monitor result", "AML monitor results"),
                 "rule_changes": ("rule change", "rule changes")}
RECORD_NOUNS = {"findings": ("finding", "findings"),
                "evidence_requests": ("evidence request", "evidence requests"),
                "assessments": ("assessment", "assessments"),
                "lifecycle_instances": ("lifecycle instance", "lifecycle instances")}
OUTCOME_WORDS = {SUCCEEDED: "succeeded", ITEM_FAILED: "failed", SKIPPED: "skipped",
                 AWAITING_APPROVAL: "awaiting approval", IDEMPOTENT_REPLAY: "idempotent replays"}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def subject_noun(kind: str, n: int) -> str:
    one, many = SUBJECT_NOUNS.get(kind, (kind.replace("_", " ").rstrip("s"), kind.replace("_", " ")))
    return one if n == 1 else many


def member_name(actor: str | None) -> str:
    """``member:sigrid`` → ``sigrid``; the retry policy and recovery are named for what they are."""
    if not actor:
        return "unknown"
    if actor.startswith("member:"):
        return actor.removeprefix("member:")
    return {"engine:retry-policy": "the automatic retry policy",
            "engine:recovery": "crash recovery"}.get(actor, actor)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def quote(text: str, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return f"'{text[:limit]}{'…' if len(text) > limit else ''}'"


@dataclass
class AutomationFacts:
    """Everything one automation's paragraph says, gathered from the period's aggregates."""

    definition_id: str
    title: str
    row: Mapping[str, Any]  # the analytics per-definition row
    firing: FiringCheck | None = None
    min_subjects: int = 0
    max_subjects: int = 0
    subject_kind: str = ""
    versions: tuple[int, int] | None = None  # the lowest and highest version that ran
    statuses: dict[str, int] = field(default_factory=dict)
    skips: list[tuple[str, int]] = field(default_factory=list)  # (reason, items), most frequent first
    causes: Sequence[Mapping[str, Any]] = field(default_factory=list)  # analytics failure_causes rows
    retries: list[tuple[str, int, int]] = field(default_factory=list)  # (actor, retries, items)
    records: dict[str, int] = field(default_factory=dict)  # module → records
    decisions: list[Mapping[str, Any]] = field(default_factory=list)  # approval rows of this automation
    completion: Mapping[str, Any] | None = None  # closed_runs, p50/p90/max seconds


def _runs_sentence(a: AutomationFacts) -> str:
    """E.g. "13 runs, as many as its schedule (Mondays 06:00 UTC) called for; all 13 completed"."""
    runs = int(a.row["runs"])
    text = plural(runs, "run")
    c = a.firing
    if c is not None:
        expected = f"{'at least ' if c.at_least else ''}{c.expected:,}"
        if c.trigger_kind == "schedule":
            basis = f"its schedule ({c.trigger})"
            text += (f", as many as {basis} called for" if not c.flagged else
                     f" where {basis} called for {expected} ({c.verdict})")
        else:
            what = (f"{c.trigger.removeprefix('event ')} {'event' if c.expected == 1 else 'events'}"
                    if c.trigger_kind == "event" else
                    f"{'signal' if c.expected == 1 else 'signals'} {c.trigger.removeprefix('signal ')}")
            text += (f", one for each of the {expected} {what} received" if not c.flagged and c.expected > 1 else
                     f", for the one {what} received" if not c.flagged and c.expected == 1 else
                     f" for {expected} {what} received ({c.verdict})")
        if c.explanation():
            text += f"; {c.explanation()}"
    if runs:
        if set(a.statuses) == {COMPLETED}:
            text += f"; {'the run' if runs == 1 else 'all ' + format(runs, ',')} completed"
        else:
            text += "; " + ", ".join(f"{n:,} {s.replace('-', ' ')}" for s, n in
                                     sorted(a.statuses.items(), key=lambda kv: -kv[1]))
    return text + "."


def _no_runs_sentence(a: AutomationFacts) -> str:
    """An automation that did not run: say whether its trigger called for runs, and if so, why not."""
    c = a.firing
    if c is None:
        return "No runs in this period."
    expected = f"{'at least ' if c.at_least else ''}{c.expected:,}"
    if c.trigger_kind == "schedule":
        text = f"No runs in this period; its schedule ({c.trigger}) called for " + \
            ("none" if c.expected == 0 else f"{expected} ({c.verdict})")
    else:
        what = (f"{c.trigger.removeprefix('event ')} events" if c.trigger_kind == "event" else
                f"signals {c.trigger.removeprefix('signal ')}")
        text = (f"No runs in this period; no {what} were received" if c.expected == 0 else
                f"No runs in this period for {expected} {what} received ({c.verdict})")
    return text + (f"; {c.explanation()}." if c.explanation() else ".")


def _matched_sentence(a: AutomationFacts) -> str:
    if a.max_subjects == a.min_subjects:
        n = a.min_subjects
        count = NUMBER_WORDS[n] if n <= 10 else format(n, ",")
        return f"Each run matched {count} {subject_noun(a.subject_kind, n)}."
    return (f"Each run matched between {a.min_subjects:,} and {a.max_subjects:,} "
            f"{subject_noun(a.subject_kind, a.max_subjects)}.")


def _skip_reasons(a: AutomationFacts) -> str:
    """The skip reasons: "the account is no longer active", or "9 the account …; 3 cancelled"."""
    skips: dict[str, int] = {}
    for reason, n in a.skips:
        if reason.startswith("dismissed by "):  # its reason is quoted with the approvals
            reason = reason.split(":", 1)[0] + " at approval"
        skips[reason] = skips.get(reason, 0) + n
    shown = sorted(skips.items(), key=lambda kv: -kv[1])
    text = "; ".join(reason if len(shown) == 1 else f"{n:,} {reason}" for reason, n in shown[:3])
    if len(shown) > 3:
        text += f"; {sum(n for _, n in shown[3:]):,} for {len(shown) - 3} other reasons"
    return text


def _items_sentence(a: AutomationFacts) -> str:
    """Items by outcome, e.g. "620 items: 608 succeeded, 12 skipped (the account is no longer active)"."""
    items = int(a.row["items"])
    parts = [(o, int(a.row[o])) for o in OUTCOME_WORDS if int(a.row[o])]
    reasons = f" ({_skip_reasons(a)})" if a.skips else ""
    if len(parts) == 1 and items > 1:
        o = parts[0][0]
        return (f"{plural(items, 'item')}, {'both' if items == 2 else 'all'} {OUTCOME_WORDS[o]}"
                f"{reasons if o == SKIPPED else ''}.")
    return f"{plural(items, 'item')}: " + ", ".join(
        f"{n:,} {OUTCOME_WORDS[o]}{reasons if o == SKIPPED else ''}" for o, n in parts) + "."


def _actions_sentence(a: AutomationFacts) -> str:
    invoked = int(a.row["actions_invoked"])
    made = [plural(n, *record_nouns(m)) for m, n in sorted(a.records.items()) if n]
    text = f"{plural(invoked, 'action')} invoked"
    if made:
        text += ", creating " + " and ".join(made)
    return text + "."


def _failures_sentences(a: AutomationFacts) -> list[str]:
    """One sentence per failure cause; who retried, from the audit log, closes the last one."""
    out = []
    for c in a.causes:
        attempts, items, still = int(c["attempts"]), int(c["items"]), int(c["still_failed"])
        recovered = int(c["recovered"])
        text = (f"{plural(attempts, 'failed attempt')} on {quote(c['failure_cause'])} ({c['failure_class']}) "
                f"affected {plural(items, 'item')} in {plural(int(c['runs']), 'run')}")
        if still == 0:
            text += f"; {'all ' + format(recovered, ',') if recovered > 1 else 'it'} recovered"
        else:
            text += f"; {recovered:,} recovered, {still:,} still failed"
        out.append(text)
    by = ", ".join(f"{plural(n, 'retry', 'retries')} by {member_name(actor)}" for actor, n, _ in a.retries)
    if out and by:
        out[-1] += f" ({by})"
    elif by:
        out.append(f"Retries: {by}")
    return [s + "." for s in out]


def _approvals_sentence(a: AutomationFacts) -> str | None:
    if not a.decisions:
        return None
    items = int(a.row["items"])
    n = len(a.decisions)
    counts: dict[tuple[str, str], int] = {}
    for d in a.decisions:
        key = (d["decision"] or "open", member_name(d["decided_by"]) if d["decided_by"] else "")
        counts[key] = counts.get(key, 0) + 1
    parts = []
    for (decision, by), k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        part = f"{k:,} {'still open' if decision == 'open' else decision}" + (f" by {by}" if by else "")
        if decision == DISMISSED:
            reasons = [d["reason"] for d in a.decisions if d["decision"] == DISMISSED and d["reason"]]
            if len(reasons) == 1:
                part += f" ({quote(reasons[0])})"
        parts.append(part)
    lead = f"All {n:,} items went through approval" if n == items and n > 1 else \
        f"{plural(n, 'item')} went through approval"
    if len(counts) == 1 and n > 1:
        (decision, by), _ = next(iter(counts.items()))
        return f"{lead}, {'both' if n == 2 else 'all'} {parts[0].split(' ', 1)[1]}."
    return f"{lead}: {', '.join(parts)}."


def automation_sentences(a: AutomationFacts) -> list[str]:
    """The automation's paragraph, one sentence per fact, in the order the spec's example tells them."""
    if int(a.row["runs"]) == 0:
        return [_no_runs_sentence(a)]
    out = [_runs_sentence(a), _matched_sentence(a), _items_sentence(a), _actions_sentence(a)]
    out += _failures_sentences(a)
    approval = _approvals_sentence(a)
    if approval:
        out.append(approval)
    if a.completion and a.completion.get("closed_runs"):
        longest = float(a.completion["max_seconds"] or 0)
        # Over many runs the times come from the duration rollup (store/rollups.py): within 1%, and said so.
        about = "≈ " if a.completion.get("approximate") else ""
        out.append("Every run completed within a minute of its trigger." if longest < 60 else
                   f"Time from trigger to completion: median {about}{duration(a.completion['p50_seconds'])}, "
                   f"longest {about}{duration(longest)}.")
    if int(a.row["attention_runs"]):
        out.append(f"Needs attention: {plural(int(a.row['attention_runs']), 'run')} closed with failures "
                   "or failed.")
    return out


def group_skips(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        reason = r["skip_reason"] or "(no reason recorded)"
        out.setdefault(r["definition_id"], []).append((reason, int(r["items"])))
    return out


def record_nouns(module: str) -> tuple[str, str]:
    """How the brief names a module's records: an owning module's (finding, findings), or a remote system's
    (ticketing: "record in ticketing"; an e-mail integration: "message sent through mail")."""
    if module in RECORD_NOUNS:
        return RECORD_NOUNS[module]
    kind, _, integration = module.partition(":")
    if kind == "email":
        return f"message sent through {integration}", f"messages sent through {integration}"
    if kind == "webhook":
        return f"record in {integration}", f"records in {integration}"
    return module, module

"""The integrity statement: what "0 unintended consequences" means, claim by claim, each with its counts.

A claim passes when every count that would contradict it is zero. The brief may say "0 unintended
consequences" only when every claim passes and the audit chain verifies; otherwise it names the claims
that failed. Each claim states what was checked and, where the data cannot prove more, says so: the
engine records a failed re-check (a skip with its reason) but keeps no proof that the condition held at
the instant of an action beyond the subject as it saw it then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.definitions import DefinitionError, parse_definition
from core.periods import AnalyticsPeriod
from core.states import APPROVAL_DECISIONS, APPROVAL_OPEN, SKIP_KINDS
from engine.vocabulary import workspace_vocabulary
from store.audit import ChainVerdict
from store.views.analytics import AnalyticsFilter, read_version_history
from store.views.failures import FailureAccount, read_failure_account
from store.views.integrity import IntegrityFacts, read_integrity_facts
from store.workspace import Workspace

MODULE_NAMES = {"findings": "findings", "evidence_requests": "evidence requests", "assessments": "assessments",
                "lifecycle_instances": "lifecycle instances"}


@dataclass(frozen=True)
class Fact:
    """One counted fact. A ``violation`` contradicts the claim whenever its count is above zero."""

    text: str
    count: int
    violation: bool = False

    @property
    def ok(self) -> bool:
        return not self.violation or self.count == 0


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    facts: tuple[Fact, ...]
    scope_note: str = ""  # what the check cannot show

    @property
    def violations(self) -> int:
        return sum(f.count for f in self.facts if f.violation)

    @property
    def passed(self) -> bool:
        return all(f.ok for f in self.facts)


@dataclass(frozen=True)
class IntegrityStatement:
    claims: tuple[Claim, ...]
    chain: ChainVerdict
    facts: IntegrityFacts = field(repr=False)
    # How the period's failures stand. Beside the claims, not one of them: an open failure is work left to do
    # (or to disposition), not an unintended consequence, so it never turns the headline.
    failures: FailureAccount = field(default_factory=FailureAccount)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims)

    @property
    def violations(self) -> int:
        """Counts that contradict a claim, summed. Not a count of distinct records: one stray record can
        contradict several checks (untraced, and made by a skipped item), so it is never shown as one."""
        return sum(c.violations for c in self.claims)

    @property
    def failed(self) -> list[Claim]:
        return [c for c in self.claims if not c.passed]

    def headline(self) -> str:
        """The words "0 unintended consequences" only when every claim passes; else the claims that failed."""
        if self.passed:
            return "0 unintended consequences"
        return "integrity checks FAILED: " + "; ".join(c.claim.rstrip(".") for c in self.failed)


def approval_versions(ws: Workspace, definitions: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """(definition, version) pairs whose stored text requires approval before acting."""
    with ws.read() as conn:
        versions = read_version_history(conn, definitions)
    vocabulary = workspace_vocabulary(ws)
    out = []
    for v in versions:
        try:
            d = parse_definition(v["content"], f"{v['definition_id']}@v{v['version']}", vocabulary)
        except DefinitionError:  # every stored version parsed when it was saved; stay safe anyway
            continue
        if d.approval_required:
            out.append((str(v["definition_id"]), int(v["version"])))
    return out


def build_integrity_statement(ws: Workspace, period: AnalyticsPeriod) -> IntegrityStatement:
    """Count every fact in one read, verify the whole audit chain, and phrase the claims."""
    f = AnalyticsFilter(period.start, period.end, period.definitions)
    needs_approval = approval_versions(ws, period.definitions)
    with ws.read() as conn:
        facts = read_integrity_facts(conn, f, needs_approval)
        failures = read_failure_account(conn, f)
    chain = ws.verify_audit()
    return IntegrityStatement(compose_claims(facts, chain), chain, facts, failures)


def failures_sentence(a: FailureAccount) -> str:
    """"Every failure in the period is recovered or dispositioned: …", or how many are not."""
    kinds = ", ".join(f"{n:,} {k}" for k, n in a.dispositioned.items())
    parts = [f"{a.recovered:,} recovered by a retry",
             f"{a.dispositioned_total:,} dispositioned" + (f" ({kinds})" if kinds else "")]
    if a.failed_items == 0:
        return "No item failed in the period."
    if a.accounted:
        return f"Every failure in the period is recovered or dispositioned: {', '.join(parts)}."
    left = [f"{a.open:,} open (neither recovered nor dispositioned)"] if a.open else []
    left += [f"{a.retrying:,} still being retried"] if a.retrying else []
    return (f"Not every failure in the period is recovered or dispositioned: of {_n(a.failed_items, 'item')} that "
            f"failed, {', '.join(parts)}, {' and '.join(left)}.")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def compose_claims(facts: IntegrityFacts, chain: ChainVerdict) -> tuple[Claim, ...]:
    by_module = facts.records_by_module
    made = ", ".join(f"{n:,} {MODULE_NAMES.get(m, m.replace(':', ' ', 1) + ' records')}"
                     for m, n in by_module.items() if n) or "none"
    cond, dismissed, cancelled = (facts.skipped[k] for k in SKIP_KINDS)
    skipped = cond.items + dismissed.items + cancelled.items
    traced = cond.with_trace + dismissed.with_trace + cancelled.with_trace
    skipped_verdict = (f"none of the {skipped:,} skipped items left any trace of acting" if not traced else
                       f"{traced:,} of the {skipped:,} skipped items left a trace of acting (counted above)")
    unacted = ", ".join(f"{n:,} by {o} items" for o, n in sorted(facts.records_by_unacted_outcome.items()))
    decisions = facts.approvals_by_decision
    held = sum(decisions.values())
    decided = ", ".join(f"{decisions[k]:,} {k}" for k in (*APPROVAL_DECISIONS, APPROVAL_OPEN)
                        if decisions.get(k))
    return (
        Claim("traced", "Every downstream record traces to exactly one run item.", (
            Fact(f"Downstream records created by the period's items: {made}.", facts.records),
            Fact("Records whose item does not name them back (its record reference or idempotency key "
                 "differs).", facts.records_not_named_back, True),
            Fact("Items with more than one record.", facts.items_with_several_records, True),
            Fact("Records created in the period whose source item does not exist (any automation).",
                 facts.orphan_records, True),
            Fact("Item record references that resolve to no record.", facts.dangling_record_refs, True),
        )),
        Claim("once", "No action was executed twice.", (
            Fact("Idempotency keys with more than one downstream record.", facts.keys_with_several_records, True),
            Fact("Items with more than one successful attempt in the attempt log.", facts.items_succeeded_twice,
                 True),
            Fact("Attempts after an item's first (retries of failed items), each under the item's one "
                 "idempotency key.", facts.retry_attempts),
            Fact("Retries answered from the idempotency ledger (idempotent-replay) instead of acting again.",
                 facts.replays),
            Fact("Replays whose record differs from the original outcome in the ledger.",
                 facts.replays_not_original, True),
        )),
        Claim("condition", "No action was taken on a subject whose condition did not hold.", (
            Fact(f"Items skipped because the condition or a guard no longer held at the re-check just before "
                 f"acting ({_n(cond.never_attempted, 'was', 'were')} never handed to an actioner).", cond.items),
            Fact("Of those, items with any trace of acting: a record, a successful attempt, an "
                 "idempotency-ledger entry.", cond.with_trace, True),
            Fact(f"Other skipped items (dismissed by an approver: {dismissed.items:,}; cancelled: "
                 f"{cancelled.items:,}) with any trace of acting.", dismissed.with_trace + cancelled.with_trace,
                 True),
            Fact("Records created by items whose outcome is neither succeeded nor idempotent-replay"
                 + (f" ({unacted})." if unacted else "."), sum(facts.records_by_unacted_outcome.values()), True),
        ), scope_note=(
            f"What this shows: the engine checks each subject against the condition again just before acting, "
            f"and records a failed re-check as a skipped item with its reason; {skipped_verdict}. "
            "What it cannot show: that the condition still held at the "
            "instant of each action taken. That rests on the engine's re-check; the subject as the re-check "
            "saw it is kept on every item (subject snapshot) for review.")),
        Claim("approval", "No action that required approval was taken without it.", (
            Fact(f"Items held for approval: {decided or 'none'}.", held),
            Fact("Items whose approval was dismissed, cancelled or is still open, with any trace of acting.",
                 facts.acted_without_approval_decision, True),
            Fact("Records created before their approval was decided.", facts.records_before_approval, True),
            Fact(f"Items of automation versions requiring approval ({facts.approval_versions_checked:,} "
                 "checked) that acted with no approval granted.", facts.acted_unapproved_in_approval_versions,
                 True),
        )),
        Claim("reconciled", "The actions-invoked figure reconciles with the attempt log.", (
            Fact("Actions invoked, summed over the period's runs.", facts.actions_invoked),
            Fact("Items with at least one attempt in the attempt log.", facts.items_attempted),
            Fact("Difference between the two.", abs(facts.actions_invoked - facts.items_attempted), True),
        )),
        Claim("chain", "The audit chain is intact.", (
            Fact(f"Audit entries recomputed from the first; head hash {chain.head_hash}.", chain.entries),
            Fact("Broken entries." if chain.intact else
                 f"Broken entries (first: entry {chain.first_broken_seq}: {chain.problem}).",
                 0 if chain.intact else 1, True),
        )),
    )

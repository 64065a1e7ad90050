"""The credit union's world, generated from a fixed seed.

The world holds only facts about the credit union — accounts and when their KYC review falls due,
suppliers and their attestation expiries, incidents and reviews, exception closures, AML monitor
results, regulator signals, messaging outages and the approvers' decisions. It never says what a run
should produce: the quarter's figures come out of the engine running the definitions over it.

After the worked example's quarter the world leaves work for whoever opens the demo (``leftover_monday``):
the messaging gateway goes down again during the latest KYC run, and nobody retries it yet; and one
account of that week has lost its manager, so its request has nobody to go to.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from core.schedule import fire_times

UTC = dt.UTC
QUARTER_START = dt.datetime(2026, 7, 1, tzinfo=UTC)
QUARTER_END = dt.datetime(2026, 10, 1, tzinfo=UTC)  # exclusive
# The second outage, from the fire time of the KYC run it hits: it begins a few deliveries in (each takes
# 10 s) and lasts two minutes, so a run of 30 or more accounts has 12 transient failures and goes on after.
LEFTOVER_OUTAGE = (dt.timedelta(minutes=2), dt.timedelta(minutes=4))
KYC_CRON = CronTrigger.from_crontab("0 6 * * mon", timezone="UTC")
SUPPLIER_CRON = CronTrigger.from_crontab("0 7 1 * *", timezone="UTC")
MANAGERS = ["a.okafor", "b.lindqvist", "c.mendes", "d.haddad", "e.novak", "f.tanaka"]
FIRST = ["Ada", "Bram", "Chen", "Dina", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira", "Luis",
         "Mira", "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
LAST = ["Berg", "Costa", "Dahl", "Eze", "Fischer", "Gill", "Holm", "Ito", "Jensen", "Khan", "Lund",
        "Moreau", "Nyberg", "Okoye", "Park", "Quist", "Rossi", "Silva", "Torres", "Varga"]


@dataclass
class World:
    accounts: list[dict[str, Any]] = field(default_factory=list)
    suppliers: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    # Timed happenings: (when, kind, data). Kinds: deactivate, outage, aml_failure, aml_pass,
    # exception_closed, incident_review, incident_closed, signal, approve, dismiss, retry_failed_kyc.
    happenings: list[tuple[dt.datetime, str, dict[str, Any]]] = field(default_factory=list)


def _split(rng: random.Random, total: int, n: int, lo: int, hi: int) -> list[int]:
    """``n`` counts in [lo, hi] summing to ``total``."""
    counts = [rng.randint(lo, hi) for _ in range(n)]
    while sum(counts) != total:
        i = rng.randrange(n)
        if sum(counts) > total and counts[i] > lo:
            counts[i] -= 1
        elif sum(counts) < total and counts[i] < hi:
            counts[i] += 1
    return counts


def _at(day: dt.datetime, hour: int, minute: int = 0) -> dt.datetime:
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


def leftover_monday(until: dt.datetime) -> dt.datetime | None:
    """The KYC fire whose run the demo leaves unrecovered: the last one before ``until``, if it falls after
    the worked example's quarter (whose figures never change), else None.

    Computed from ``until`` because ``make run`` seeds up to the real present: it is the latest run, so no
    later run meets the same accounts again. Its outage is over by the present unless the demo is seeded
    within minutes of a Monday's fire; a retry then fails transiently again until the outage ends."""
    mondays = fire_times(KYC_CRON, QUARTER_END, until) if until > QUARTER_END else []
    return mondays[-1] if mondays else None


def build_world(seed: int = 2026, until: dt.datetime | None = None) -> World:
    rng = random.Random(seed)
    until = until or QUARTER_END
    w = World()
    names = iter(rng.sample([f"{first} {last}" for first in FIRST for last in LAST], len(FIRST) * len(LAST)))
    n_acc = 0

    def account(due: dt.date) -> dict[str, Any]:
        nonlocal n_acc
        n_acc += 1
        return {"account_id": f"ACC-{10000 + n_acc}", "name": next(names, f"Member {n_acc}"),
                "manager": rng.choice(MANAGERS), "status": "active", "kyc_review_due": due,
                "risk_rating": rng.choice(["low", "low", "medium", "high"])}

    # KYC: each Monday's run finds the accounts that fell due since the previous Monday.
    mondays = fire_times(KYC_CRON, QUARTER_START, QUARTER_END)
    later_mondays = fire_times(KYC_CRON, QUARTER_END, until) if until > QUARTER_END else []
    weekly = _split(rng, 620, len(mondays), 30, 80)
    weekly += [rng.randint(30, 60) for _ in later_mondays]
    outage_week = mondays[6]
    skip_weeks = {mondays[2]: 3, mondays[4]: 3, mondays[8]: 3, mondays[11]: 3}
    leftover = leftover_monday(until)
    for monday, count in zip(mondays + later_mondays, weekly, strict=True):
        week = [account((monday - dt.timedelta(days=rng.randint(0, 6))).date()) for _ in range(count)]
        week.sort(key=lambda a: a["account_id"])
        if monday == leftover:
            # Its manager left the credit union and the core system exports the account unassigned: the
            # evidence request resolves to no recipient, which no retry can fix (the account needs a manager).
            # The week's last account, so its item comes after the outage's, and no draw of ``rng`` moves.
            week[-1]["manager"] = ""
        w.accounts.extend(week)
        # Some accounts close while the run is still delivering: the run meets them inactive.
        for a in rng.sample(week[20:], skip_weeks.get(monday, 0)):
            w.happenings.append((monday + dt.timedelta(minutes=2), "deactivate", {"account_id": a["account_id"]}))
    for _ in range(400):  # the rest of the membership, not due in the period
        w.accounts.append(account((until + dt.timedelta(days=rng.randint(60, 700))).date()))
    w.happenings.append((outage_week - dt.timedelta(minutes=1), "outage", {
        "starts_at": outage_week, "ends_at": outage_week + dt.timedelta(minutes=3),
        "reason": "messaging gateway maintenance overran"}))
    w.happenings.append((_at(outage_week + dt.timedelta(days=1), 9, 12), "retry_failed_kyc", {}))
    if leftover is not None:  # down again during the latest run; this time nobody has retried yet
        starts, ends = LEFTOVER_OUTAGE
        w.happenings.append((leftover - dt.timedelta(minutes=1), "outage", {
            "starts_at": leftover + starts, "ends_at": leftover + ends,
            "reason": "messaging gateway down again: its TLS certificate expired"}))

    # Suppliers: attestations expiring within 45 days of each monthly run.
    firsts = fire_times(SUPPLIER_CRON, QUARTER_START, until)
    groups = [9, 12, 7] + [rng.randint(5, 15) for _ in firsts[3:]]
    n_sup = 0
    prev_first = QUARTER_START - dt.timedelta(days=30)
    for first, count in zip(firsts, groups, strict=True):
        prev_horizon, prev_first = prev_first + dt.timedelta(days=45), first
        for _ in range(count):
            n_sup += 1
            lo = max(first + dt.timedelta(days=1), prev_horizon + dt.timedelta(days=1))
            span = (first + dt.timedelta(days=45) - lo).days
            w.suppliers.append({"supplier_id": f"SUP-{n_sup:04d}", "name": f"{rng.choice(LAST)} "
                                f"{rng.choice(['Data', 'Systems', 'Payments', 'Print', 'Cloud', 'Advisory'])}",
                                "owner": "vendor-management", "status": "active",
                                "attestation_expires": (lo + dt.timedelta(days=rng.randint(0, max(span, 0)))).date()})
    for _ in range(40):
        n_sup += 1
        w.suppliers.append({"supplier_id": f"SUP-{n_sup:04d}", "name": f"{rng.choice(LAST)} Services",
                            "owner": "vendor-management", "status": "active",
                            "attestation_expires": (until + dt.timedelta(days=rng.randint(90, 600))).date()})

    days = (until - QUARTER_START).days

    def moment_in(start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = int((end - start).total_seconds() // 60)
        t = start + dt.timedelta(minutes=rng.randint(0, span - 1))
        return t if t.hour >= 8 else t.replace(hour=rng.randint(8, 17))

    # AML monitor results: 23 failures in the quarter, more after; passes in between.
    monitors = ["velocity-cash", "structuring", "sanctions-screen", "dormant-reactivation"]
    extra = max(0, int((until - QUARTER_END).days / 92 * 23)) if until > QUARTER_END else 0
    for i in range(23 + extra):
        t = moment_in(QUARTER_START, QUARTER_END) if i < 23 else moment_in(QUARTER_END, until)
        w.happenings.append((t, "aml_failure", {"monitor": rng.choice(monitors),
                                                "account_id": rng.choice(w.accounts)["account_id"],
                                                "detail": f"threshold exceeded by {rng.randint(5, 80)}%"}))
    for _ in range(days // 3):
        w.happenings.append((moment_in(QUARTER_START, until), "aml_pass",
                             {"monitor": rng.choice(monitors), "account_id": rng.choice(w.accounts)["account_id"]}))

    # Exceptions: 7 closures in the quarter.
    n_exc = 7 + (3 if until > QUARTER_END else 0)
    for i in range(n_exc):
        t = moment_in(QUARTER_START, QUARTER_END) if i < 7 else moment_in(QUARTER_END, until)
        eid = f"EXC-{300 + i}"
        w.exceptions.append({"exception_id": eid, "title": rng.choice(
            ["Overdraft limit override", "Late SAR filing waiver", "Manual KYC override",
             "Vendor access exception", "Password policy exception"]), "owner": rng.choice(MANAGERS),
            "status": "open", "closed_at": None})
        w.happenings.append((t, "exception_closed", {"exception_id": eid}))

    # Incidents: 9 closures in the quarter; 7 have a review record before they close.
    n_inc = 9 + (4 if until > QUARTER_END else 0)
    reviewed = set(rng.sample(range(9), 7)) | set(range(9, n_inc - 1))
    for i in range(n_inc):
        t = moment_in(QUARTER_START, QUARTER_END - dt.timedelta(days=2)) if i < 9 \
            else moment_in(QUARTER_END, until - dt.timedelta(days=1))
        iid = f"INC-{700 + i}"
        w.incidents.append({"incident_id": iid, "title": rng.choice(
            ["Card processor timeout", "Branch network outage", "Misrouted wire batch",
             "Online banking login failures", "Statement print delay"]),
            "severity": rng.choice(["low", "medium", "high"]), "owner": rng.choice(MANAGERS),
            "status": "open", "opened_at": t - dt.timedelta(days=rng.randint(1, 10)), "closed_at": None})
        if i in reviewed:
            w.happenings.append((t - dt.timedelta(hours=3), "incident_review", {"incident_id": iid}))
        w.happenings.append((t, "incident_closed", {"incident_id": iid}))
        if i not in reviewed and i < 9:
            w.happenings.append((_at(t + dt.timedelta(days=1), 10, 5), "approve",
                                 {"subject_id": iid, "by": "sigrid"}))

    # Regulator feed: 4 rule changes in the quarter; the officer dismisses one as not applicable.
    rules = [("NCUA", "Part 748 cyber incident notification update"),
             ("FinCEN", "Beneficial ownership reporting clarification"),
             ("CFPB", "Overdraft fee disclosure amendment"),
             ("OCC", "Federal savings association capital rule (not applicable to credit unions)")]
    for i, (reg, title) in enumerate(rules):
        t = moment_in(QUARTER_START + dt.timedelta(days=20 * i), QUARTER_START + dt.timedelta(days=20 * i + 15))
        ref = f"{reg}-2026-{41 + i}"
        w.happenings.append((t, "signal", {"reference": ref, "regulator": reg, "title": title,
                                           "effective_date": (t + dt.timedelta(days=90)).date().isoformat()}))
        decision = ("dismiss", {"reason": "not applicable: the rule governs federal savings associations, "
                                          "not credit unions"}) if reg == "OCC" else ("approve", {})
        w.happenings.append((_at(t + dt.timedelta(days=2), 11, 30), decision[0],
                             {"reference": ref, "by": "sigrid", **decision[1]}))
    if until > QUARTER_END:  # one more after the quarter, still awaiting a decision today
        w.happenings.append((until - dt.timedelta(days=1, hours=3), "signal", {
            "reference": "NCUA-2026-61", "regulator": "NCUA", "title": "Share insurance signage update",
            "effective_date": (until + dt.timedelta(days=60)).date().isoformat()}))
    w.happenings.sort(key=lambda h: h[0])
    return w

"""The one module that builds links: every view in the app is a URL (a page and its query params).

A ``Link`` serves both ways Streamlit navigates: ``st.page_link``/``st.switch_page`` take ``page`` and
``params``; a dataframe ``LinkColumn`` or a markdown link takes ``href`` (relative, so a server mounted
under a base path still works). Pages read their params back with the ``parse_*`` helpers here, so a
link and its reader can never drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

from core.integrations import ACTIONER_PREFIX
from core.markup import md_repr, md_value
from core.periods import PeriodChoice, last_param, parse_period

# name: (script, url path, title, icon). Navigation (app.py) and every link read this table.
PAGES: dict[str, tuple[str, str, str, str]] = {
    "runs": ("pages/runs.py", "runs", "Runs", ":material/list_alt:"),
    "run": ("pages/run.py", "run", "Run", ":material/play_circle:"),
    "item": ("pages/item.py", "item", "Run item", ":material/description:"),
    "failed": ("pages/failed_items.py", "failed_items", "Failed items", ":material/error:"),
    "approvals": ("pages/approvals.py", "approvals", "Approvals", ":material/approval:"),
    "automations": ("pages/automations.py", "automations", "Automations", ":material/schedule:"),
    "analytics": ("pages/analytics.py", "analytics", "Quarterly analytics", ":material/insights:"),
    "registers": ("pages/registers.py", "registers", "Registers", ":material/table_view:"),
    "records": ("pages/records.py", "records", "Records", ":material/folder_open:"),
    "subject": ("pages/subject.py", "subject", "Subject", ":material/person_search:"),
    "audit": ("pages/audit_log.py", "audit_log", "Audit log", ":material/policy:"),
    "members": ("pages/members.py", "members", "Members", ":material/group:"),
}

Params = dict[str, str | list[str]]
DEFAULT_PAGE = "runs"  # served at the app's root: its own url path would be "page not found"


@dataclass(frozen=True)
class Link:
    name: str
    params: Params = field(default_factory=dict)

    @property
    def page(self) -> str:
        return PAGES[self.name][0]

    @property
    def href(self) -> str:
        query = urlencode([(k, v) for k, vs in self.params.items()
                           for v in (vs if isinstance(vs, list) else [vs])])
        path = "./" if self.name == DEFAULT_PAGE else PAGES[self.name][1]
        return path + (f"?{query}" if query else "")


def _clean(params: Mapping[str, str | list[str] | None]) -> Params:
    return {k: v for k, v in params.items() if v not in (None, "", [])}


# --- Runs: the filters that live in the URL -----------------------------------------------------------
# The prefixes of a remote record's reference: "webhook:ticketing:4711", "email:mail:…".
REMOTE_REF_PREFIXES = frozenset(ACTIONER_PREFIX.values())
RUN_SORTS = ("completed", "triggered", "started", "duration", "definition", "status", "subjects", "actions")
TIME_FIELDS = ("triggered", "completed")


RUNS_DEFAULT_PERIOD = "all"
ANALYTICS_DEFAULT_PERIOD = "last_quarter"  # a completed quarter is what an audit committee reviews


@dataclass(frozen=True)
class RunsView:
    """What the Runs page shows; its URL form is the shareable view."""

    definitions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    period: PeriodChoice = PeriodChoice(RUNS_DEFAULT_PERIOD)
    time_field: str = "triggered"  # which time the period filters on
    sort: str = "completed"
    descending: bool = True
    outcome: str | None = None  # runs having at least one item with this outcome (analytics drill-down)
    failed_attempts: bool = False  # runs with at least one failed attempt, recovered by retry or not

    def to_params(self) -> Params:
        d = RunsView()
        return _clean({
            "definition": list(self.definitions), "status": list(self.statuses),
            **self.period.to_params(RUNS_DEFAULT_PERIOD),
            "on": self.time_field if self.time_field != d.time_field else None,
            "sort": self.sort if self.sort != d.sort else None,
            "order": None if self.descending else "asc",
            "outcome": self.outcome,
            "attempts": "failed" if self.failed_attempts else None,
        })


def parse_runs_view(params: Mapping[str, list[str]], known_definitions: Sequence[str],
                    known_statuses: Sequence[str], known_outcomes: Sequence[str] = ()) -> tuple[RunsView, list[str]]:
    """A view from URL params, and a sentence for every param that could not be used (never an error)."""
    problems: list[str] = []
    def one(key: str) -> str | None:
        return last_param(params, key)


    def pick(key: str, allowed: Sequence[str]) -> tuple[str, ...]:
        wanted = params.get(key) or []
        bad = [w for w in wanted if w not in allowed]
        if bad:
            problems.append(f"Unknown {key} {', '.join(map(md_repr, bad))} in the link; ignored.")
        return tuple(w for w in wanted if w in allowed)

    definitions, statuses = pick("definition", known_definitions), pick("status", known_statuses)
    period = parse_period(params, RUNS_DEFAULT_PERIOD, problems, md_value)
    time_field = one("on") or "triggered"
    if time_field not in TIME_FIELDS:
        problems.append(f"Unknown time field {md_repr(time_field)}; filtering on trigger time.")
        time_field = "triggered"
    sort = one("sort") or "completed"
    if sort not in RUN_SORTS:
        problems.append(f"Unknown sort {md_repr(sort)}; sorting by completion time.")
        sort = "completed"
    outcome = one("outcome")
    if outcome and outcome not in known_outcomes:
        problems.append(f"Unknown outcome {md_repr(outcome)}; ignored.")
        outcome = None
    attempts = one("attempts")
    if attempts and attempts != "failed":
        problems.append(f"Unknown attempts filter {md_repr(attempts)} (the one there is: attempts=failed); "
                        "ignored.")
    return RunsView(definitions, statuses, period, time_field, sort, one("order") != "asc", outcome,
                    attempts == "failed"), problems


def runs_link(view: RunsView | None = None, after: str | None = None) -> Link:
    params = (view or RunsView()).to_params()
    if after:
        params["after"] = after
    return Link("runs", params)


# --- One thing each ------------------------------------------------------------------------------------
def run_link(run_id: str, outcome: str | None = None, failed_attempts: bool = False) -> Link:
    """A run's page, its items filtered to one outcome or to those with a failed attempt."""
    return Link("run", _clean({"id": run_id, "outcome": outcome, "attempts": "failed" if failed_attempts else None}))


def item_link(item_id: str) -> Link:
    return Link("item", {"id": item_id})


def record_link(record_ref: str) -> Link | None:
    """``findings:FND-…`` → the Records page on that record; None for a ref that is not module:id, and for
    a remote system's record (``webhook:ticketing:4711``, ``email:mail:…``), which lives there, not here."""
    module, sep, record_id = (record_ref or "").partition(":")
    if module in REMOTE_REF_PREFIXES:
        return None
    return Link("records", {"module": module, "id": record_id}) if sep and module and record_id else None


def subject_link(subject_kind: str, subject_id: str) -> Link:
    """A subject's story page, reached from every subject id in the app."""
    return Link("subject", {"kind": subject_kind, "id": subject_id})


def definition_link(definition_id: str, version: int | None = None, compare: int | None = None) -> Link:
    return Link("automations", _clean({"id": definition_id, "version": str(version) if version else None,
                                        "compare": str(compare) if compare else None}))


def failed_items_link(definition_id: str | None = None, period: PeriodChoice | None = None) -> Link:
    """Failed items, of one definition and runs triggered in a period (all time by default)."""
    return Link("failed", _clean({"definition": definition_id,
                                  **(period or PeriodChoice(RUNS_DEFAULT_PERIOD)).to_params(RUNS_DEFAULT_PERIOD)}))


def audit_link(entity_kind: str | None = None, entity_id: str | None = None, actor: str | None = None,
               event: str | None = None, seq: int | None = None) -> Link:
    return Link("audit", _clean({"entity_kind": entity_kind, "entity_id": entity_id, "actor": actor,
                                 "event": event, "seq": str(seq) if seq else None}))


# --- Analytics: the period and definitions in the URL -----------------------------------------------
@dataclass(frozen=True)
class AnalyticsView:
    period: PeriodChoice = PeriodChoice(ANALYTICS_DEFAULT_PERIOD)
    definitions: tuple[str, ...] = ()

    def to_params(self) -> Params:
        return _clean({**self.period.to_params(ANALYTICS_DEFAULT_PERIOD), "definition": list(self.definitions)})


def parse_analytics_view(params: Mapping[str, list[str]],
                         known_definitions: Sequence[str]) -> tuple[AnalyticsView, list[str]]:
    """A view from URL params, and a sentence for every param that could not be used (never an error)."""
    problems: list[str] = []
    wanted = params.get("definition") or []
    bad = [w for w in wanted if w not in known_definitions]
    if bad:
        problems.append(f"Unknown definition {', '.join(map(md_repr, bad))} in the link; ignored.")
    period = parse_period(params, ANALYTICS_DEFAULT_PERIOD, problems, md_value)
    if period.kind == "custom" and not (period.start and period.end):
        problems.append("A custom period needs both 'from' and 'to'; showing the last quarter.")
        period = PeriodChoice(ANALYTICS_DEFAULT_PERIOD)
    return AnalyticsView(period, tuple(w for w in wanted if w in known_definitions)), problems


class RepeatableParams(Protocol):
    """What ``st.query_params`` offers (the core names no Streamlit type)."""

    def keys(self) -> Iterable[str]: ...
    def get_all(self, key: str) -> list[str]: ...


def query_params_dict(query_params: RepeatableParams) -> dict[str, list[str]]:
    """``st.query_params`` as plain lists (every key may repeat)."""
    return {k: query_params.get_all(k) for k in query_params.keys()}

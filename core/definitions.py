"""Automation definitions: YAML files reviewed like code, validated on load, versioned by content.

Every error names the file, the field, what was expected and what was found, and a bad file never stops
the valid ones: ``load_definition_files`` returns both the definitions and the errors.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from apscheduler.triggers.cron import CronTrigger

from core.actions import ActionerSpec
from core.alerts import AlertPolicy, AlertPolicyError, parse_alert_policy
from core.conditions import OPS, Clause, Compare, Condition, DaysAfterTrigger, Related
from core.declared import DeclarationError, load_yaml
from core.schedule import describe_cron
from core.states import EVENT, SCHEDULE, SIGNAL
from core.templates import DEFINITION_FIELDS, ROOTS, TRIGGER_FIELDS, placeholders

TRIGGER_KINDS = (SCHEDULE, EVENT, SIGNAL)  # what a definition may declare; a run may also be manual
ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Vocabulary:
    """What a definition may name, known to the workspace: its registers and their fields, the watched
    changes that raise events, and the actioners. A definition is validated against it on load, so an
    unknown field fails then, with its file and fix, and never at run time."""

    registers: Mapping[str, Mapping[str, str]]  # register → field → type name
    events: Mapping[str, str]  # event type → its register
    actioners: Mapping[str, ActionerSpec]


class DefinitionError(DeclarationError):
    """One problem in one definition file, said so that its author can fix it."""


@dataclass(frozen=True)
class Trigger:
    kind: str
    cron: str | None = None
    timezone: str = "UTC"
    event: str | None = None
    source: str | None = None

    def describe(self) -> str:
        """In words: "Mondays 06:00 UTC", "event incident.closed", "signal from regulator-feed"."""
        if self.kind == "schedule":
            return describe_cron(self.cron or "", self.timezone)
        return f"event {self.event}" if self.kind == "event" else f"signal from {self.source}"

    def cron_trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron or "", timezone=self.timezone)


@dataclass(frozen=True)
class Action:
    actioner: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_seconds: float = 300.0
    backoff_multiplier: float = 2.0

    def delay_after(self, attempt: int) -> dt.timedelta:
        return dt.timedelta(seconds=self.backoff_seconds * self.backoff_multiplier ** (attempt - 1))


@dataclass(frozen=True)
class Definition:
    id: str
    title: str
    description: str
    trigger: Trigger
    condition: Condition
    actions: tuple[Action, ...]
    retry: RetryPolicy
    approval_required: bool
    enabled: bool
    content: str = field(repr=False, compare=False, default="")
    # Hours an approval may wait before the Approvals page flags it overdue (policies.approval.due_within_hours).
    approval_due_within_hours: float | None = None
    alerts: AlertPolicy | None = None  # who hears of a run that fails, completes with failures or waits
    # A run whose matched population moved (entered + left) by more than this share of the previous run's is
    # flagged on the Runs page (policies.population.alert_percent).
    population_alert_percent: float | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def choose_from(found: Any, options: Any, what: str) -> str:
    """The fix for a name that is not one of ``options``: the nearest one if it is close, else the list."""
    near = difflib.get_close_matches(str(found), [str(o) for o in options], n=1, cutoff=0.6)
    return (f"did you mean '{near[0]}'? Otherwise use one of the {what} listed" if near
            else f"use one of the {what} listed")


def _near(found: str, options: Any) -> str:
    near = difflib.get_close_matches(found, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


class _V:
    """Validation helpers bound to one file and the vocabulary it is checked against."""

    def __init__(self, path: str, vocabulary: Vocabulary) -> None:
        self.path = path
        self.vocabulary = vocabulary
        self.registers = vocabulary.registers

    def fail(self, fld: str, expected: str, found: Any, fix: str = "") -> DefinitionError:
        return DefinitionError(self.path, fld, expected, found, fix)

    def mapping(self, value: Any, fld: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            if fld == "(whole file)":
                fix = "write the definition as one YAML mapping with id, title, trigger, condition and actions"
            elif value is None:
                fix = f"add '{fld.rpartition('.')[2]}:' with its keys indented below it"
            else:
                fix = f"write '{fld.rpartition('.')[2]}' as keys and values (key: value), not a {type(value).__name__}"
            raise self.fail(fld, "a mapping of keys to values", type(value).__name__ if value is not None
                            else "nothing", fix)
        return value

    def string(self, doc: dict[str, Any], key: str, prefix: str = "", required: bool = True) -> str:
        fld = f"{prefix}{key}"
        if key not in doc:
            if required:
                raise self.fail(fld, "a text value", "nothing (the field is missing)", f"add '{key}:'")
            return ""
        if not isinstance(doc[key], str) or not doc[key].strip():
            raise self.fail(fld, "a non-empty text value", doc[key], f"write some text after '{key}:' "
                            "(quote it if it looks like a number, a date or true/false)")
        return doc[key]

    def unknown_keys(self, doc: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for k in doc:
            if k not in allowed:
                raise self.fail(f"{prefix}{k}", f"one of {', '.join(sorted(allowed))}", k,
                                "remove it or correct its spelling")


def _parse_value(v: _V, raw: Any, fld: str) -> Any:
    if isinstance(raw, dict):
        if set(raw) != {"days_after_trigger"} or not isinstance(raw["days_after_trigger"], int):
            raise v.fail(fld, "a literal or {days_after_trigger: <whole number>}", raw)
        return DaysAfterTrigger(raw["days_after_trigger"])
    return raw


def _parse_compare(v: _V, raw: Any, fld: str, register: str) -> Compare:
    raw = v.mapping(raw, fld)
    fields = v.registers[register]
    name = v.string(raw, "field", f"{fld}.")
    if name not in fields:
        raise v.fail(f"{fld}.field", f"a field of {register} ({', '.join(fields)})", name,
                     choose_from(name, fields, f"fields of {register}"))
    op = raw.get("op", "eq")
    if op not in OPS:
        raise v.fail(f"{fld}.op", f"one of {', '.join(OPS)}", op, choose_from(op, OPS, "operators"))
    if op not in ("is_null", "not_null") and "value" not in raw:
        raise v.fail(f"{fld}.value", f"a value to compare {name} with", "nothing", "add 'value:'")
    if op in ("in", "not_in") and not isinstance(raw.get("value"), list):
        raise v.fail(f"{fld}.value", "a list of values", raw.get("value"))
    v.unknown_keys(raw, {"field", "op", "value", "reason"}, f"{fld}.")
    return Compare(name, op, _parse_value(v, raw.get("value"), f"{fld}.value"))


def _parse_clause(v: _V, raw: Any, fld: str, register: str) -> Clause:
    raw = v.mapping(raw, fld)
    related_key = "exists" if "exists" in raw else "not_exists" if "not_exists" in raw else None
    if related_key is None:
        test: Compare | Related = _parse_compare(v, raw, fld, register)
    else:
        body = v.mapping(raw[related_key], f"{fld}.{related_key}")
        other = v.string(body, "register", f"{fld}.{related_key}.")
        if other not in v.registers:
            raise v.fail(f"{fld}.{related_key}.register", f"a register ({', '.join(v.registers)})", other)
        match = v.mapping(body.get("match"), f"{fld}.{related_key}.match")
        for theirs, ours in match.items():
            if theirs not in v.registers[other]:
                raise v.fail(f"{fld}.{related_key}.match", f"a field of {other}", theirs)
            if ours not in v.registers[register]:
                raise v.fail(f"{fld}.{related_key}.match.{theirs}", f"a field of {register}", ours)
        where = tuple(_parse_compare(v, c, f"{fld}.{related_key}.where[{i}]", other)
                      for i, c in enumerate(body.get("where") or []))
        test = Related(other, tuple(match.items()), where, related_key == "exists")
        v.unknown_keys(raw, {related_key, "reason"}, f"{fld}.")
    reason = raw.get("reason") or f"condition no longer holds: {test.describe()}"
    return Clause(test, str(reason))


def _parse_condition(v: _V, raw: Any) -> Condition:
    raw = v.mapping(raw, "condition")
    subject = v.string(raw, "subject", "condition.")
    if subject not in v.registers:
        raise v.fail("condition.subject", f"a subject kind ({', '.join(v.registers)})", subject,
                     choose_from(subject, v.registers, "subject kinds"))
    v.unknown_keys(raw, {"subject", "where", "guards"}, "condition.")
    where = tuple(_parse_clause(v, c, f"condition.where[{i}]", subject)
                  for i, c in enumerate(raw.get("where") or []))
    guards = tuple(_parse_clause(v, c, f"condition.guards[{i}]", subject)
                   for i, c in enumerate(raw.get("guards") or []))
    return Condition(subject, where, guards)


def _parse_trigger(v: _V, raw: Any) -> Trigger:
    raw = v.mapping(raw, "trigger")
    kind = raw.get("kind")
    if kind not in TRIGGER_KINDS:
        raise v.fail("trigger.kind", f"one of {', '.join(TRIGGER_KINDS)}", kind,
                     choose_from(kind, TRIGGER_KINDS, "trigger kinds"))
    if kind == "schedule":
        cron = v.string(raw, "cron", "trigger.")
        tz = raw.get("timezone", "UTC")
        try:
            CronTrigger.from_crontab(cron, timezone=tz)
        except Exception as exc:  # noqa: BLE001 - APScheduler's message says what is wrong
            raise v.fail("trigger.cron", 'a 5-field cron expression such as "0 6 * * mon" '
                         "(minute hour day month weekday)", cron,
                         f"correct the expression ({str(exc).rstrip('.')}); for example \"0 6 * * mon\" "
                         "fires at 06:00 every Monday") from None
        return Trigger("schedule", cron=cron, timezone=tz)
    if kind == "event":
        event = v.string(raw, "event", "trigger.")
        if event not in v.vocabulary.events:
            raise v.fail("trigger.event", f"one of {', '.join(sorted(v.vocabulary.events))}", event,
                         choose_from(event, sorted(v.vocabulary.events), "events"))
        return Trigger("event", event=event)
    return Trigger("signal", source=v.string(raw, "source", "trigger."))


def _parse_actions(v: _V, raw: Any, subject: str) -> tuple[Action, ...]:
    if not isinstance(raw, list) or not raw:
        raise v.fail("actions", "a list of one or more actions", "nothing" if raw is None else raw,
                     "add 'actions:' with at least one '- actioner: …' and its params")
    fields = v.registers[subject]
    out = []
    for i, a in enumerate(raw):
        fld = f"actions[{i}]"
        a = v.mapping(a, fld)
        name = v.string(a, "actioner", f"{fld}.")
        spec = v.vocabulary.actioners.get(name)
        if spec is None:
            raise v.fail(f"{fld}.actioner", f"a known actioner ({', '.join(v.vocabulary.actioners)})", name,
                         choose_from(name, v.vocabulary.actioners, "actioners"))
        params = v.mapping(a.get("params", {}), f"{fld}.params")
        for p in spec.required:
            if p not in params:
                raise v.fail(f"{fld}.params.{p}", f"a value for '{p}' (required by {name})", "nothing",
                             f"add '{p}:' under params")
        for p, value in params.items():
            if p not in spec.required and p not in spec.optional and not spec.open_params:
                raise v.fail(f"{fld}.params.{p}", f"a parameter of {name} "
                             f"({', '.join([*spec.required, *spec.optional])})", p,
                             choose_from(p, [*spec.required, *spec.optional], f"parameters of {name}"))
            for path in placeholders(value):
                root, _, rest = path.partition(".")
                known = {"subject": fields, "trigger": TRIGGER_FIELDS, "definition": DEFINITION_FIELDS}
                if root not in ROOTS:
                    raise v.fail(f"{fld}.params.{p}", f"placeholders naming a field of {subject} "
                                 f"(e.g. {{{{ subject.{next(iter(fields))} }}}}) or trigger/definition",
                                 "{{ " + path + " }}", f"'{root}' is not a placeholder root; start the "
                                 f"placeholder with {', '.join(ROOTS)}")
                if rest not in known[root]:
                    raise v.fail(f"{fld}.params.{p}", f"placeholders naming a field of {subject} "
                                 f"(e.g. {{{{ subject.{next(iter(fields))} }}}}) or trigger/definition",
                                 "{{ " + path + " }}", f"'{rest}' does not exist on {root}; name one of "
                                 f"{', '.join(known[root])}" + _near(rest, known[root]))
        out.append(Action(name, params))
    return tuple(out)


def parse_definition(text: str, path: str, vocabulary: Vocabulary) -> Definition:
    v = _V(path, vocabulary)
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "the file"
        problem = str(getattr(exc, "problem", None) or exc)
        raise DefinitionError(path, "(whole file)", "valid YAML", f"a syntax error at {where} ({problem})",
                              f"correct the YAML at {where} (brackets, quotes and indentation); "
                              "each definition is one YAML mapping") from None
    doc = v.mapping(doc, "(whole file)")
    v.unknown_keys(doc, {"id", "title", "description", "enabled", "trigger", "condition", "actions",
                         "policies", "alerts"}, "")
    def_id = v.string(doc, "id")
    if not set(def_id) <= ID_CHARS:
        raise v.fail("id", "lower-case letters, digits and hyphens", def_id)
    trigger = _parse_trigger(v, doc.get("trigger"))
    condition = _parse_condition(v, doc.get("condition"))
    actions = _parse_actions(v, doc.get("actions"), condition.subject)
    policies = v.mapping(doc.get("policies", {}) or {}, "policies")
    v.unknown_keys(policies, {"retry", "approval", "population"}, "policies.")
    retry_raw = v.mapping(policies.get("retry", {}) or {}, "policies.retry")
    try:
        retry = RetryPolicy(**retry_raw)
    except TypeError:
        raise v.fail("policies.retry", "max_attempts, backoff_seconds, backoff_multiplier",
                     sorted(retry_raw)) from None
    if not isinstance(retry.max_attempts, int) or retry.max_attempts < 1:
        raise v.fail("policies.retry.max_attempts", "a whole number of at least 1", retry.max_attempts)
    approval = v.mapping(policies.get("approval", {}) or {}, "policies.approval")
    v.unknown_keys(approval, {"required", "due_within_hours"}, "policies.approval.")
    required = approval.get("required", False)
    if not isinstance(required, bool):
        raise v.fail("policies.approval.required", "true or false", required)
    due = approval.get("due_within_hours")
    if due is not None and (isinstance(due, bool) or not isinstance(due, (int, float)) or not 0 < due < 1e6):
        raise v.fail("policies.approval.due_within_hours", "a positive number of hours", due,
                     "write how many hours an approval may wait, e.g. due_within_hours: 72")
    population = v.mapping(policies.get("population", {}) or {}, "policies.population")
    v.unknown_keys(population, {"alert_percent"}, "policies.population.")
    moved = population.get("alert_percent")
    if moved is not None and (isinstance(moved, bool) or not isinstance(moved, (int, float)) or not 0 < moved <= 1000):
        raise v.fail("policies.population.alert_percent", "a positive percentage", moved,
                     "write by how much the matched population may move before a run is flagged, e.g. "
                     "alert_percent: 20")
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise v.fail("enabled", "true or false", enabled)
    alerts = None
    if doc.get("alerts") is not None:
        try:
            alerts = parse_alert_policy(doc["alerts"], integration_kinds(vocabulary.actioners))
        except AlertPolicyError as exc:
            raise v.fail(exc.field, exc.expected, exc.found, exc.fix) from None
    return Definition(def_id, v.string(doc, "title"), str(doc.get("description", "")).strip(), trigger,
                      condition, actions, retry, required, enabled, text,
                      approval_due_within_hours=float(due) if due is not None else None, alerts=alerts,
                      population_alert_percent=float(moved) if moved is not None else None)


def integration_kinds(actioners: Mapping[str, ActionerSpec]) -> dict[str, str]:
    """The declared integrations among the actioners: id → kind (``webhook:ticketing`` → ticketing: webhook)."""
    kinds = {"webhook": "webhook", "email": "smtp"}
    out = {}
    for name in actioners:
        prefix, sep, integration = name.partition(":")
        if sep and prefix in kinds:
            out[integration] = kinds[prefix]
    return out


@dataclass
class LoadReport:
    definitions: list[tuple[str, Definition]]  # (path, definition)
    errors: list[DefinitionError]


def load_definition_files(directory: str | Path, vocabulary: Vocabulary) -> LoadReport:
    """Parse every ``*.yaml``/``*.yml`` file; collect errors instead of stopping at the first."""
    report = LoadReport([], [])
    seen: dict[str, str] = {}
    for p in sorted([*Path(directory).glob("*.yaml"), *Path(directory).glob("*.yml")]):
        path = str(p)
        try:
            d = parse_definition(p.read_text(encoding="utf-8"), path, vocabulary)
        except DefinitionError as exc:
            report.errors.append(exc)
            continue
        except UnicodeDecodeError:
            report.errors.append(DefinitionError(path, "(whole file)", "UTF-8 text", "binary content"))
            continue
        if d.id in seen:
            report.errors.append(DefinitionError(path, "id", "an id no other file uses", d.id,
                                                 f"{seen[d.id]} already defines it"))
            continue
        seen[d.id] = path
        report.definitions.append((path, d))
    return report

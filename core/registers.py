"""Registers as an organization declares them: the subjects its automations act on, as data.

A register is one YAML file — its table name, key, label, typed fields, the changes that raise events,
and optionally a source read on a schedule. Nothing about any one organization is code: the demo credit
union's accounts and incidents are declared exactly as a payment firm's merchants would be.

Pure: no database, no engine. ``store.registers`` turns a declaration into a table; definitions
validate their conditions and templates against the declared fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.declared import DeclarationError, read_yaml_mapping, text_value

FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "timestamp")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # a table or column name: portable, never quoted
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")  # "merchant.suspended"
KEYS = {"id", "title", "description", "key", "label", "fields", "required", "events", "source", "signals"}
SOURCE_KEYS = {"file", "sql", "schedule", "format", "mode"}
IMPORT_MODES = ("upsert", "replace")
FILE_FORMATS = ("csv", "parquet", "xlsx", "jsonl")


class RegisterError(DeclarationError):
    """One problem in one register file, said so that its author can fix it."""


@dataclass(frozen=True)
class EventSpec:
    """A watched change: ``merchant.suspended: {field: status, becomes: suspended}``. It is raised when an
    import or a signal makes ``field`` become ``becomes`` (a new row holding it counts: it became so)."""

    name: str
    field: str
    becomes: Any

    def describe(self) -> str:
        return f"when {self.field} becomes {self.becomes!r}"


@dataclass(frozen=True)
class SourceSpec:
    """Where a scheduled import reads the register: a file, or a SQL query through SQLAlchemy whose URL
    comes from an environment variable (never from the YAML)."""

    schedule: str
    file: str | None = None
    url_env: str | None = None
    query: str | None = None
    format: str | None = None
    mode: str = "upsert"

    @property
    def described(self) -> str:
        where = f"file {self.file}" if self.file else f"SQL through ${self.url_env}"
        return f"{where}, read on schedule {self.schedule!r} ({self.mode})"


@dataclass(frozen=True)
class SignalSpec:
    """How an integration signal lands here: the key Runledger numbers a signalled subject with
    (``RC-00001``, …) unless the payload carries one, and the field that records when it arrived."""

    key_prefix: str
    received_at: str | None = None


@dataclass(frozen=True)
class RegisterSpec:
    id: str
    title: str
    key: str
    label: str
    fields: Mapping[str, str]  # name → one of FIELD_TYPES, in declared order
    events: Mapping[str, EventSpec] = field(default_factory=dict)
    source: SourceSpec | None = None
    required: tuple[str, ...] = ()  # fields every row must hold (the key always does)
    signals: SignalSpec | None = None
    description: str = ""
    content: str = field(default="", repr=False, compare=False)
    builtin: bool = False  # Runledger's own records (findings, …): not declared in a file

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()


def _fail(path: str) -> Any:
    def fail(fld: str, expected: str, found: Any, fix: str = "") -> RegisterError:
        return RegisterError(path, fld, expected, found, fix)
    return fail


def _coerce_literal(value: Any, ftype: str) -> Any:
    """A ``becomes`` value typed like its field (YAML reads 2026-01-01 as a date, true as a bool)."""
    if ftype == "string":
        return value if isinstance(value, str) else None
    if ftype == "boolean":
        return value if isinstance(value, bool) else None
    if ftype == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if ftype == "number":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if ftype == "date":
        return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None
    return value if isinstance(value, dt.datetime) else None


def parse_register(text: str, path: str, reserved: frozenset[str] = frozenset()) -> RegisterSpec:
    """A register from its YAML text; ``reserved`` are table names the register may not take (Runledger's
    own tables). Raises ``RegisterError`` naming the file, the field, what was expected and the fix."""
    fail = _fail(path)
    doc = read_yaml_mapping(text, path, RegisterError,
                            "write the register as one YAML mapping with id, title, key, label and fields")
    for k in doc:
        if k not in KEYS:
            raise fail(str(k), f"one of {', '.join(sorted(KEYS))}", k, "remove it or correct its spelling")

    def text_of(key: str, required: bool = True) -> str:
        return text_value(doc, key, fail, required)

    reg_id = text_of("id")
    if not NAME.match(reg_id):
        raise fail("id", "a table name: lowercase letters, digits and underscores, starting with a letter",
                   reg_id, "rename it, e.g. merchants")
    if reg_id in reserved:
        raise fail("id", "a name that is not one of Runledger's own tables", reg_id,
                   f"choose another name; {', '.join(sorted(reserved))} are taken")
    fields_raw = doc.get("fields")
    if not isinstance(fields_raw, dict) or not fields_raw:
        raise fail("fields", "a mapping of field names to types", fields_raw if "fields" in doc else "nothing",
                   f"list each field with its type ({', '.join(FIELD_TYPES)})")
    fields: dict[str, str] = {}
    for name, ftype in fields_raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise fail(f"fields.{name}", "a field name: lowercase letters, digits and underscores, starting "
                       "with a letter", name, "rename the field")
        if ftype not in FIELD_TYPES:
            raise fail(f"fields.{name}", f"one of {', '.join(FIELD_TYPES)}", ftype, "give the field one of these types")
        fields[name] = ftype
    key = text_of("key")
    if key not in fields:
        raise fail("key", f"one of the fields ({', '.join(fields)})", key, "declare the key among the fields")
    if fields[key] not in ("string", "integer"):
        raise fail(f"fields.{key}", "string or integer (a key is compared exactly)", fields[key],
                   "make the key a string")
    label = text_of("label", required=False) or key
    if label not in fields:
        raise fail("label", f"one of the fields ({', '.join(fields)})", label,
                   "name the field pages and the brief should show for a subject")
    events: dict[str, EventSpec] = {}
    events_raw = doc.get("events") or {}
    if not isinstance(events_raw, dict):
        raise fail("events", "a mapping of event names to {field, becomes}", type(events_raw).__name__)
    for name, spec in events_raw.items():
        at = f"events.{name}"
        if not isinstance(name, str) or not EVENT_NAME.match(name):
            raise fail(at, "an event name like merchant.suspended (lowercase, one dot)", name)
        if not isinstance(spec, dict) or set(spec) != {"field", "becomes"}:
            raise fail(at, "{field: FIELD, becomes: VALUE}", spec,
                       "say which field changes and the value that raises the event")
        if spec["field"] not in fields:
            raise fail(f"{at}.field", f"one of the fields ({', '.join(fields)})", spec["field"])
        becomes = _coerce_literal(spec["becomes"], fields[spec["field"]])
        if becomes is None:
            ftype = fields[spec["field"]]
            raise fail(f"{at}.becomes", f"{'an' if ftype[0] in 'aeiou' else 'a'} {ftype} value (the type of "
                       f"{spec['field']})",
                       spec["becomes"])
        events[name] = EventSpec(name, spec["field"], becomes)
    required_raw = doc.get("required") or []
    if not isinstance(required_raw, list) or any(r not in fields for r in required_raw):
        raise fail("required", f"a list of declared fields ({', '.join(fields)})", required_raw,
                   "list the fields every row must hold")
    required = tuple(dict.fromkeys([key, *required_raw]))
    return RegisterSpec(reg_id, text_of("title"), key, label, fields, events, _parse_source(doc, fail),
                        required, _parse_signals(doc, fields, fail), str(doc.get("description") or "").strip(),
                        text)


def _parse_signals(doc: dict[str, Any], fields: Mapping[str, str], fail: Any) -> SignalSpec | None:
    raw = doc.get("signals")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not set(raw) <= {"key_prefix", "received_at"} or "key_prefix" not in raw:
        raise fail("signals", "{key_prefix: PREFIX, received_at: FIELD}", raw,
                   "say how a signalled subject is numbered, and (optionally) which timestamp field records "
                   "its arrival")
    prefix = raw["key_prefix"]
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,15}", prefix):
        raise fail("signals.key_prefix", "a short prefix like RC-", prefix)
    received = raw.get("received_at")
    if received is not None and fields.get(received) != "timestamp":
        raise fail("signals.received_at", "a declared timestamp field", received)
    return SignalSpec(prefix, received)


def _parse_source(doc: dict[str, Any], fail: Any) -> SourceSpec | None:
    raw = doc.get("source")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("source", "a mapping with file or sql, and schedule", type(raw).__name__)
    for k in raw:
        if k not in SOURCE_KEYS:
            raise fail(f"source.{k}", f"one of {', '.join(sorted(SOURCE_KEYS))}", k,
                       "remove it or correct its spelling")
    schedule = raw.get("schedule")
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise fail("source.schedule", 'a 5-field cron expression such as "0 5 * * *"', schedule,
                   "say when the source is read")
    mode = raw.get("mode", "upsert")
    if mode not in IMPORT_MODES:
        raise fail("source.mode", f"one of {', '.join(IMPORT_MODES)}", mode)
    if ("file" in raw) == ("sql" in raw):
        raise fail("source", "exactly one of file or sql", sorted(raw), "keep one of them")
    if "file" in raw:
        if not isinstance(raw["file"], str) or not raw["file"].strip():
            raise fail("source.file", "a path to a CSV, Parquet, XLSX or JSON lines file", raw["file"])
        fmt = raw.get("format")
        if fmt is not None and fmt not in FILE_FORMATS:
            raise fail("source.format", f"one of {', '.join(FILE_FORMATS)}", fmt)
        return SourceSpec(schedule, file=raw["file"].strip(), format=fmt, mode=mode)
    sql = raw["sql"]
    if not isinstance(sql, dict) or set(sql) != {"url_env", "query"}:
        raise fail("source.sql", "{url_env: VARIABLE, query: \"select …\"}", sql,
                   "name the environment variable that holds the database URL, and the query")
    if not isinstance(sql["url_env"], str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", sql["url_env"]):
        raise fail("source.sql.url_env", "an environment variable name like CORE_BANKING_URL", sql["url_env"],
                   "the URL itself never goes in the YAML")
    if not isinstance(sql["query"], str) or not sql["query"].strip().lower().startswith(("select", "with")):
        raise fail("source.sql.query", "a SELECT query", sql["query"])
    return SourceSpec(schedule, url_env=sql["url_env"], query=sql["query"].strip(), mode=mode)


@dataclass(frozen=True)
class RegisterChange:
    """What a changed declaration does to its table: fields to add; or why it is refused."""

    added: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


def compare_registers(old: RegisterSpec, new: RegisterSpec) -> RegisterChange:
    """Only additive changes are taken: a field removed, retyped or a key changed would rewrite the evidence
    the register holds, so each is refused with what to do instead; the old declaration keeps working."""
    refused = []
    if new.key != old.key:
        refused.append(f"the key changed from {old.key} to {new.key}: a register's key cannot change; declare a "
                       "new register and import into it")
    for name, ftype in old.fields.items():
        if name not in new.fields:
            refused.append(f"field {name} was removed: fields are kept for the evidence already recorded; put it "
                           "back (it can stay empty in future imports)")
        elif new.fields[name] != ftype:
            refused.append(f"field {name} changed type from {ftype} to {new.fields[name]}: add a new field of the "
                           "new type instead, and keep this one")
    added = tuple(n for n in new.fields if n not in old.fields)
    return RegisterChange(added, tuple(refused))

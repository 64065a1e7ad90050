"""The workspace's tables, written once in SQLAlchemy Core so DuckDB and PostgreSQL share them.

Tables named in docs/schema.md are a public contract for auditors and BI tools: rename nothing there
without a migration and a note. Integer keys say ``autoincrement=False`` because duckdb-engine has no
SERIAL; identifiers come from sequences or are derived.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)


def _id(name: str) -> sa.Column:
    return sa.Column(name, sa.String, primary_key=True)


run_number = sa.Sequence("run_number_seq", metadata=metadata)
record_number = sa.Sequence("record_number_seq", metadata=metadata)
event_number = sa.Sequence("event_number_seq", metadata=metadata)

schema_meta = sa.Table(
    "schema_meta", metadata,
    _id("key"),
    sa.Column("value", sa.String, nullable=False),
)

# --- members -------------------------------------------------------------------------------------
members = sa.Table(
    "members", metadata,
    _id("member_id"),
    sa.Column("display_name", sa.String, nullable=False),
    sa.Column("password_hash", sa.String, nullable=False),
    sa.Column("roles", sa.String, nullable=False),  # comma-separated role names
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", TS, nullable=False),
    # Single sign-on (schema 6): the identity provider's subject once a sign-in linked it, and the e-mail an
    # admin gave the member (lower case), by which the first single sign-on finds them.
    sa.Column("email", sa.String),
    sa.Column("sso_subject", sa.String),
    # Raised when a password is reset or changed, or the member deactivated: a session started under an
    # older value ends at its next page view (ui.session).
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
)

# --- definitions ---------------------------------------------------------------------------------
definitions = sa.Table(
    "definitions", metadata,
    _id("definition_id"),
    sa.Column("title", sa.String, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("source_path", sa.String),
    sa.Column("trigger_kind", sa.String, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

definition_versions = sa.Table(
    "definition_versions", metadata,
    sa.Column("definition_id", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String, nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # the YAML text exactly as reviewed
    sa.Column("authored_by", sa.String, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

definition_rejections = sa.Table(
    "definition_rejections", metadata,
    sa.Column("source_path", sa.String, primary_key=True),
    sa.Column("content_hash", sa.String, primary_key=True),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Column("rejected_at", TS, nullable=False),
)

# --- registers: the organization's subjects, declared as data (core/registers.py) ------------------
# A register's own table (``accounts``, ``merchants``, …) is made from its declaration by store/registers.py;
# these tables keep what Runledger knows of the declarations and of every load into them.
import_number = sa.Sequence("import_number_seq", metadata=metadata)

registers = sa.Table(
    "registers", metadata,
    _id("register_id"),  # the register's table name
    sa.Column("title", sa.String, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("source_path", sa.String),
    sa.Column("updated_at", TS, nullable=False),
)
register_versions = sa.Table(
    "register_versions", metadata,
    sa.Column("register_id", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String, nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # the YAML text exactly as declared
    sa.Column("authored_by", sa.String, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)
integration_versions = sa.Table(  # each distinct declaration of an integration (no secret is ever in one)
    "integration_versions", metadata,
    sa.Column("integration_id", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String, nullable=False),  # webhook | smtp
    sa.Column("content_hash", sa.String, nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # the YAML text exactly as declared
    sa.Column("source_path", sa.String),
    sa.Column("authored_by", sa.String, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)
register_rejections = sa.Table(
    "register_rejections", metadata,
    sa.Column("source_path", sa.String, primary_key=True),
    sa.Column("content_hash", sa.String, primary_key=True),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Column("rejected_at", TS, nullable=False),
)
register_imports = sa.Table(  # every load into a register: who, when, from what (with its hash), what it did
    "register_imports", metadata,
    _id("import_id"),
    sa.Column("register_id", sa.String, nullable=False),
    sa.Column("register_version", sa.Integer, nullable=False),
    sa.Column("origin", sa.String, nullable=False),  # file | sql | signal | emit | demo
    sa.Column("source", sa.String, nullable=False),  # the file's name, the query's variable, the source
    sa.Column("format", sa.String),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("sha256", sa.String),
    sa.Column("mode", sa.String, nullable=False),  # upsert | replace
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("added", sa.BigInteger, nullable=False),
    sa.Column("changed", sa.BigInteger, nullable=False),
    sa.Column("unchanged", sa.BigInteger, nullable=False),
    sa.Column("withdrawn", sa.BigInteger, nullable=False),
    sa.Column("refused", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("imported_at", TS, nullable=False),
)
subject_changes = sa.Table(  # each subject a load added, changed or withdrew: evidence of what Runledger knew
    "subject_changes", metadata,
    sa.Column("import_id", sa.String, nullable=False),
    sa.Column("register_id", sa.String, nullable=False),
    sa.Column("subject_id", sa.String, nullable=False),
    sa.Column("change", sa.String, nullable=False),  # added | changed | withdrawn | restored
    sa.Column("before", sa.Text),  # JSON of the fields that changed, as they were (changed, withdrawn)
    sa.Column("after", sa.Text),  # JSON of the row as loaded (added), or of the changed fields (changed)
    sa.Column("changed_at", TS, nullable=False),
)
# An event a declared change raised, by the load that made it (how an import's runs trace to its file).
# (The event itself is a trigger_events row; its payload names the import.)

# --- triggers, runs, items ----------------------------------------------------------------------
trigger_events = sa.Table(
    "trigger_events", metadata,
    _id("event_id"),
    sa.Column("kind", sa.String, nullable=False),  # schedule | event | signal | manual
    sa.Column("event_type", sa.String, nullable=False),  # schedule.fired, incident.closed, ...
    sa.Column("source", sa.String, nullable=False),
    sa.Column("subject_kind", sa.String),
    sa.Column("subject_id", sa.String),
    sa.Column("definition_id", sa.String),  # schedule and manual fires target one definition
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("dispatched_at", TS),
)

runs = sa.Table(
    "runs", metadata,
    _id("run_id"),
    sa.Column("run_number", sa.BigInteger, nullable=False),
    sa.Column("definition_id", sa.String, nullable=False),
    sa.Column("definition_version", sa.Integer, nullable=False),
    sa.Column("trigger_kind", sa.String, nullable=False),
    sa.Column("trigger_source", sa.String, nullable=False),
    sa.Column("trigger_event_id", sa.String, nullable=False),
    sa.Column("triggered_at", TS, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("subjects_matched", sa.Integer, nullable=False),
    sa.Column("actions_invoked", sa.Integer, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("completed_at", TS),
    sa.Column("cancel_requested_by", sa.String),
    sa.Column("cancel_requested_at", TS),
    sa.Column("cancel_reason", sa.String),
    sa.Column("failure_cause", sa.String),
    sa.Column("created_at", TS, nullable=False),
    # Item counts by outcome as of the run's last settle, written in the transaction of every outcome
    # change (store/run_counts.py): a quarter's outcomes are then read from runs, not joined from items.
    sa.Column("items_pending", sa.Integer, nullable=False, server_default="0"),  # pending or in flight
    sa.Column("items_succeeded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_awaiting_approval", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_idempotent_replay", sa.Integer, nullable=False, server_default="0"),
    # The engine worker working the run's pending items (schema 9): set when it creates or takes over the run.
    sa.Column("worked_by", sa.String),
    sa.UniqueConstraint("definition_id", "trigger_event_id", name="uq_run_per_trigger_event"),
)

# --- engine workers and app sessions (schema 9: many processes on one PostgreSQL workspace) ------------
workers = sa.Table(  # every engine process that executed work; its lease lapses when heartbeats stop
    "workers", metadata,
    _id("worker_id"),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("heartbeat_at", TS, nullable=False),  # the database's clock, never a host's
    sa.Column("stopped_at", TS),  # a clean shutdown: its work may be taken over at once
)

sessions = sa.Table(  # members' signed-in sessions, shared by every app replica (ui.session)
    "sessions", metadata,
    _id("session_id"),  # sha256 of the browser's token: the token itself is never stored
    sa.Column("member_id", sa.String, nullable=False),
    sa.Column("channel", sa.String, nullable=False),  # password | sso
    sa.Column("epoch", sa.Integer, nullable=False),  # the member's session epoch at sign-in
    sa.Column("signed_in_at", TS, nullable=False),
    sa.Column("seen_at", TS, nullable=False),
    sa.Column("ended_at", TS),
    sa.Column("ended_reason", sa.String),
)

run_items = sa.Table(
    "run_items", metadata,
    _id("item_id"),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("subject_kind", sa.String, nullable=False),
    sa.Column("subject_id", sa.String, nullable=False),
    sa.Column("subject_label", sa.String, nullable=False),
    sa.Column("subject_snapshot", sa.Text, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("record_ref", sa.String),
    sa.Column("skip_reason", sa.String),
    sa.Column("failure_cause", sa.String),
    sa.Column("failure_class", sa.String),  # transient | deterministic
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("retry_due_at", TS),
    sa.Column("updated_at", TS, nullable=False),
    # The engine worker (``workers``) that took the item in flight (schema 9): another worker takes it over
    # only once that worker's lease has lapsed, and a settlement writes only the items its worker still holds.
    sa.Column("claimed_by", sa.String),
)

run_failure_causes = sa.Table(  # one row per (run, cause, class) for runs that have or had failures
    "run_failure_causes", metadata,
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("definition_id", sa.String, nullable=False),  # the run's, so that readers need no join
    sa.Column("triggered_at", TS, nullable=False),  # the run's
    sa.Column("failure_cause", sa.String, nullable=False),  # the cause's first clause: what went wrong
    sa.Column("failure_class", sa.String, nullable=False),  # transient | deterministic | unknown
    sa.Column("failed_items", sa.Integer, nullable=False),  # items failed now with this cause
    sa.Column("failed_attempts", sa.Integer, nullable=False),  # attempts that ever failed with it
    sa.Column("items_with_failed_attempts", sa.Integer, nullable=False),
)

# Closed runs summed per (automation, UTC day of their trigger, trigger kind, status, duration bucket) and
# their trigger-to-completion times per (automation, UTC month, log-spaced key) (schema 13): kept by the very
# transaction that closes or reopens a run (store/rollups.py), so that a quarter's or all time's analytics read
# thousands of rows, not a million runs. Derived bookkeeping, not evidence: recomputable from ``runs``.
run_rollups = sa.Table(
    "run_rollups", metadata,
    sa.Column("definition_id", sa.String, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("trigger_kind", sa.String, primary_key=True),
    sa.Column("status", sa.String, primary_key=True),
    sa.Column("bucket", sa.SmallInteger, primary_key=True, autoincrement=False),  # index in DURATION_BUCKETS
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("subjects_matched", sa.BigInteger, nullable=False),
    sa.Column("actions_invoked", sa.BigInteger, nullable=False),
    *[sa.Column(c, sa.BigInteger, nullable=False) for c in (
        "items_pending", "items_succeeded", "items_failed", "items_skipped", "items_awaiting_approval",
        "items_idempotent_replay")],
    sa.Column("runs_with_failed_attempts", sa.BigInteger, nullable=False),  # schema 15: runs with a failure account
)

run_duration_rollups = sa.Table(
    "run_duration_rollups", metadata,
    sa.Column("definition_id", sa.String, primary_key=True),
    sa.Column("month", sa.Date, primary_key=True),
    sa.Column("duration_key", sa.Integer, primary_key=True, autoincrement=False),  # see store/rollups.py
    sa.Column("runs", sa.BigInteger, nullable=False),
)

# Per run with a failed attempt: how its failed items stand now (store/failure_accounts.py), refreshed by the
# transaction of each of its settles and dispositions; and events received per UTC day (store/rollups.py,
# kept by the insert of each event). Both derived (schema 13), for the analytics' reads at a million runs.
run_failure_accounts = sa.Table(
    "run_failure_accounts", metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("definition_id", sa.String, nullable=False),
    sa.Column("triggered_at", TS, nullable=False),
    *[sa.Column(c, sa.Integer, nullable=False) for c in (
        "failed_items", "recovered", "retrying", "open", "waived", "resolved_outside", "superseded")],
)

# Failed items summed per (automation, UTC month of their run's trigger, cause, class) (schema 15), kept with
# ``run_failure_causes`` by the transaction that refreshes a run's summary (store/cause_rollups.py), so that the
# Failed items page groups all time's failures from a few hundred rows. A cause is free text: the key holds its
# digest (a B-tree entry has a size limit; a cause has none), the row the text.
failure_cause_rollups = sa.Table(
    "failure_cause_rollups", metadata,
    sa.Column("definition_id", sa.String, primary_key=True),
    sa.Column("month", sa.Date, primary_key=True),
    sa.Column("cause_key", sa.String(32), primary_key=True),  # the cause's SHA-256, first 32 hex digits
    sa.Column("failure_class", sa.String, primary_key=True),
    sa.Column("failure_cause", sa.String, nullable=False),
    sa.Column("failed_items", sa.BigInteger, nullable=False),  # items failed now with this cause
    sa.Column("runs", sa.BigInteger, nullable=False),  # runs with such an item
)

event_rollups = sa.Table(
    "event_rollups", metadata,
    sa.Column("kind", sa.String, primary_key=True),
    sa.Column("event_type", sa.String, primary_key=True),
    sa.Column("source", sa.String, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
)

item_attempts = sa.Table(
    "item_attempts", metadata,
    sa.Column("item_id", sa.String, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("failure_cause", sa.String),
    sa.Column("failure_class", sa.String),
    sa.Column("record_ref", sa.String),
    # What a remote system answered this attempt (schema 7), JSON: status, the headers that matter, the
    # SHA-256 of its body, the remote record's id; a message's id and each recipient's reply. Null for the
    # owning modules' in-process actions, which answer with their record.
    sa.Column("evidence", sa.Text),
)

# One message per run, status reached and integration (schema 7): queued in the transaction that settled
# the run's status, delivered apart from it (a failed alert never fails or delays its run), retried.
alerts = sa.Table(
    "alerts", metadata,
    _id("alert_id"),  # ALR-<run>-<reason>-<integration>
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("reason", sa.String, nullable=False),  # failed | completed-with-failures | awaiting-approval
    sa.Column("via", sa.String, nullable=False),  # the integration's id
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list (e-mail addresses; [] for a webhook)
    sa.Column("status", sa.String, nullable=False),  # pending | delivered | failed (gave up)
    sa.Column("queued_at", TS, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS),
    sa.Column("delivered_at", TS),
    sa.Column("last_error", sa.String),
    sa.Column("record_ref", sa.String),  # the message's id, or the remote record the webhook made
    sa.Column("evidence", sa.Text),  # what the system answered the last attempt (JSON)
)

approvals = sa.Table(
    "approvals", metadata,
    _id("approval_id"),
    sa.Column("item_id", sa.String, nullable=False, unique=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("definition_id", sa.String, nullable=False),
    sa.Column("definition_version", sa.Integer, nullable=False),
    sa.Column("opened_at", TS, nullable=False),
    sa.Column("decision", sa.String),  # approved | dismissed | cancelled; NULL while open
    sa.Column("decided_by", sa.String),
    sa.Column("decided_at", TS),
    sa.Column("reason", sa.String),
)

# A failed item's disposition (schema 11): why it may stay failed, decided by an approver. One per item, never
# updated: the item's outcome stays ``failed`` and this row stands beside it (core/dispositions.py).
item_dispositions = sa.Table(
    "item_dispositions", metadata,
    sa.Column("item_id", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("definition_id", sa.String, nullable=False),  # the run's, so that reports need no join
    sa.Column("kind", sa.String, nullable=False),  # waived | resolved-outside | superseded
    sa.Column("reason", sa.String, nullable=False),
    sa.Column("reference", sa.String),  # resolved-outside: the external reference
    sa.Column("superseded_by", sa.String),  # superseded: the later run or item
    sa.Column("failure_cause", sa.String, nullable=False),  # the failure as it stood when dispositioned
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("decided_by", sa.String, nullable=False),
    sa.Column("decided_at", TS, nullable=False),
)

# --- keeping evidence for years (schema 12) ------------------------------------------------------
hold_number = sa.Sequence("hold_number_seq", metadata=metadata)

# A legal hold an admin placed on a run, or on a subject (every run with an item of it): nothing under a hold
# is archived or removed while it stands. Released, never deleted (engine/commands/holds.py).
legal_holds = sa.Table(
    "legal_holds", metadata,
    _id("hold_id"),  # HOLD-000001
    sa.Column("scope", sa.String, nullable=False),  # run | subject
    sa.Column("run_id", sa.String),  # scope run
    sa.Column("subject_kind", sa.String),  # scope subject: the register
    sa.Column("subject_id", sa.String),
    sa.Column("reason", sa.String, nullable=False),
    sa.Column("placed_by", sa.String, nullable=False),
    sa.Column("placed_at", TS, nullable=False),
    sa.Column("released_by", sa.String),  # empty while the hold stands
    sa.Column("released_at", TS),
    sa.Column("release_reason", sa.String),
)

# One row per retention apply that committed (engine/commands/retention.py): what left the workspace for the
# archive folder, and the SHA-256 of that archive's manifest, which its ``audit.archived`` entry holds too.
retention_archives = sa.Table(
    "retention_archives", metadata,
    _id("archive_id"),  # ARC-<horizon YYYYMMDD>-<12 hex of the plan's hash>
    sa.Column("horizon", TS, nullable=False),  # closed runs triggered before it were archived
    sa.Column("location", sa.String, nullable=False),  # the archive's folder, as the apply wrote it
    sa.Column("manifest_sha256", sa.String, nullable=False),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("items", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),  # every row archived, all tables together
    sa.Column("first_seq", sa.BigInteger),  # the audit span archived (empty when none was)
    sa.Column("last_seq", sa.BigInteger),
    sa.Column("first_prev_hash", sa.String),
    sa.Column("last_hash", sa.String),
    sa.Column("archived_by", sa.String, nullable=False),
    sa.Column("archived_at", TS, nullable=False),
)


# --- owning modules' records (the deep-link targets) --------------------------------------------
def _record_table(name: str, key: str, *extra: sa.Column) -> sa.Table:
    return sa.Table(
        name, metadata,
        _id(key),
        sa.Column("subject_kind", sa.String, nullable=False),
        sa.Column("subject_id", sa.String, nullable=False),
        sa.Column("title", sa.String, nullable=False),
        *extra,
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("source_item_id", sa.String, nullable=False),
        sa.Column("idempotency_key", sa.String, nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )


findings = _record_table(
    "findings", "finding_id",
    sa.Column("severity", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
)
evidence_requests = _record_table(
    "evidence_requests", "request_id",
    sa.Column("recipient", sa.String, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("message_id", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
)
assessments = _record_table(
    "assessments", "assessment_id",
    sa.Column("assessor", sa.String, nullable=False),
    sa.Column("scheduled_for", sa.Date, nullable=False),
    sa.Column("status", sa.String, nullable=False),
)
lifecycle_instances = _record_table(
    "lifecycle_instances", "instance_id",
    sa.Column("lifecycle", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
)

idempotency_records = sa.Table(
    "idempotency_records", metadata,
    _id("idempotency_key"),
    sa.Column("actioner", sa.String, nullable=False),
    sa.Column("params_hash", sa.String, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("record_ref", sa.String),
    sa.Column("item_id", sa.String, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# --- integrations -------------------------------------------------------------------------------
intake_sources = sa.Table(
    "intake_sources", metadata,
    _id("source_id"),
    sa.Column("secret", sa.String, nullable=False),
    sa.Column("register", sa.String),  # signals from this source land in this register
    sa.Column("created_at", TS, nullable=False),
)
intake_requests = sa.Table(  # remembered signatures refuse replays
    "intake_requests", metadata,
    _id("signature"),
    sa.Column("source_id", sa.String, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("answer", sa.String, nullable=False),
)

# --- the audit log ------------------------------------------------------------------------------
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("event", sa.String, nullable=False),
    sa.Column("entity_kind", sa.String, nullable=False),
    sa.Column("entity_id", sa.String, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String, nullable=False),
    sa.Column("hash", sa.String, nullable=False),
)

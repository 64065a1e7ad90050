"""The public contract: which of the workspace's tables (and columns) auditors and BI tools read.

docs/schema.md documents these tables; the PostgreSQL reader role (``store.reader_role``, ``python -m engine
grant-reader``) is granted exactly them; tests/test_reader_role.py holds the three together (every table of
``store.schema`` is classified here exactly once, and the page documents exactly the public ones). A new table
is therefore a decision, made here, before any reader can see it.
"""

from __future__ import annotations

# Readable whole: the evidence itself and what it refers to. Each declared register's table (named by the
# register's id, made by store/registers.py) is readable whole too; those are found in ``registers``.
PUBLIC_TABLES: tuple[str, ...] = (
    "runs", "run_items", "run_failure_causes", "item_attempts", "audit_log",
    "registers", "register_versions", "register_rejections", "register_imports", "subject_changes",
    "trigger_events", "definitions", "definition_versions", "definition_rejections", "approvals",
    "item_dispositions", "findings", "evidence_requests", "assessments", "lifecycle_instances", "idempotency_records",
    "integration_versions", "alerts", "intake_requests", "schema_meta", "legal_holds", "retention_archives",
)

# Readable in part: who the members are and where signals come from, without what lets anyone sign in or
# sign a request. Listed by what may be read (not by what is withheld), so a column added later stays
# unreadable until someone decides otherwise here. Withheld: ``members.password_hash`` (a credential),
# ``members.sso_subject`` (the identity provider's key a single sign-on is matched by: sign-in plumbing, not
# evidence), ``members.session_epoch`` (session state) and ``intake_sources.secret`` (signs signals).
PUBLIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id", "display_name", "roles", "active", "created_at", "email"),
    "intake_sources": ("source_id", "register", "created_at"),
}

# Not part of the contract (schema 9): the engine workers' leases and members' signed-in sessions are the
# bookkeeping of running processes, not evidence; a session row identifies a live sign-in. The rollups (schema
# 13, 15) are sums of ``runs`` kept for the analytics' speed: a reader computes the same from ``runs`` itself, and
# their shape may change with the page they serve.
PRIVATE_TABLES: tuple[str, ...] = ("workers", "sessions", "run_rollups", "run_duration_rollups",
                                   "run_failure_accounts", "event_rollups", "failure_cause_rollups")

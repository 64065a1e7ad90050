"""Alerts on runs: queued when a run's status is settled, delivered apart from it.

``queue_run_alerts`` runs inside the transaction that settles a run's status (``engine.status``): when the
run reaches a status a policy names (failed, completed-with-failures, or waiting on approvals with nothing
else left to do), it queues one alert per integration the policy routes to — the definition's own
``alerts``, else every integration that declares default ``alerts`` — unless that run already has it. The
queue is the outbox: a crash between the status and the message loses neither.

``deliver_due_alerts`` sends what is queued through the integration's actioner (the same code, idempotency
key and evidence as an action), on the engine's poll, never in a run's transaction: an alert can fail, but
it never fails or delays its run. A failed delivery is retried with backoff (1 min, doubling, at most an
hour apart) up to ``MAX_ATTEMPTS``, each attempt audited with its cause; the Run page shows them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import yaml

from core.alerts import (
    AlertFacts,
    AlertPolicy,
    AlertPolicyError,
    alert_body,
    alert_document,
    alert_subject,
    parse_alert_policy,
)
from core.base_url import resolve_base_url
from core.declared import load_yaml
from core.integrations import IntegrationError, parse_integration
from core.links import run_link
from core.states import TRANSIENT
from engine.actioners.base import ActionContext, ActionFailed, ActionRequest, CreatedRecord
from store import alerts as alert_store
from store.definitions import read_definition_version
from store.integrations import read_integration_declarations
from store.tx import Tx
from store.workspace import Workspace

log = logging.getLogger("runledger.alerts")
MAX_ATTEMPTS = 8
ACTOR = "engine:alerts"


def _routes(tx: Tx, run: Mapping[str, Any]) -> list[AlertPolicy]:
    """The policies that apply to the run: its definition version's ``alerts``, else the integrations'
    defaults. Read from the workspace (what was in effect), parsed from the stored text."""
    declared = read_integration_declarations(tx.conn)
    kinds = {row["integration_id"]: row["kind"] for row in declared}
    stored = read_definition_version(tx.conn, run["definition_id"], run["definition_version"])
    raw = None
    if stored is not None:
        try:
            doc = load_yaml(stored.content)
            raw = doc.get("alerts") if isinstance(doc, dict) else None
        except yaml.YAMLError:
            raw = None
    if raw is not None:
        try:
            return [parse_alert_policy(raw, kinds)]
        except AlertPolicyError as exc:  # the integration it names is gone: said, not fatal to the run
            log.warning("run %s: its definition's alerts no longer apply (%s)", run["run_id"], exc)
            return []
    out = []
    for row in declared:
        try:
            spec = parse_integration(row["content"], row["integration_id"], os.environ)
        except IntegrationError:
            continue
        if spec.alerts is not None:
            out.append(spec.alerts)
    return out


def queue_run_alerts(tx: Tx, run: Mapping[str, Any], reason: str) -> int:
    """Queue the run's alerts for ``reason`` (in the caller's transaction); how many were new."""
    queued = 0
    for policy in _routes(tx, run):
        if reason in policy.on:
            queued += alert_store.queue_alert(tx, run_id=run["run_id"], reason=reason, via=policy.via,
                                              recipients=policy.to, actor=ACTOR)
    return queued


def _facts(ws: Workspace, alert: Mapping[str, Any], base_url: str) -> AlertFacts:
    from store import runs as run_store

    with ws.read() as conn:
        run = run_store.require_run(conn, alert["run_id"])
        counts = run_store.read_run_facts(conn, run).outcome_counts
        causes = alert_store.read_top_failure_causes(conn, alert["run_id"])
        stored = read_definition_version(conn, run["definition_id"], run["definition_version"])
    title = run["definition_id"]
    if stored is not None:
        doc = load_yaml(stored.content)
        title = str(doc.get("title") or title) if isinstance(doc, dict) else title
    link = base_url + run_link(alert["run_id"]).href.lstrip("/")
    trigger = f"{run['trigger_kind']} {run['trigger_event_id']}"
    return AlertFacts(alert["run_id"], alert["reason"], run["definition_id"], title, run["definition_version"],
                      trigger, dict(counts), causes, link)


def _request(alert: Mapping[str, Any], kind: str, facts: AlertFacts, to: list[str]) -> ActionRequest:
    key = hashlib.sha256(alert["alert_id"].encode()).hexdigest()[:32]  # the same on every attempt
    params: dict[str, Any] = ({"to": to, "subject": alert_subject(facts), "body": alert_body(facts)}
                              if kind == "smtp" else alert_document(facts))
    return ActionRequest(alert["alert_id"], alert["run_id"], facts.definition_id, key, params, "run",
                         alert["run_id"], {})


def retry_delay(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def deliver_due_alerts(ws: Workspace, actioners: Mapping[str, Any], ctx: ActionContext) -> int:
    """Send every queued alert that is due; return how many were delivered. Never raises for a delivery."""
    now = ctx.now()
    with ws.read() as conn:
        due = alert_store.read_due_alerts(conn, now)
    delivered = 0
    base_url = resolve_base_url().url
    for alert in due:
        actioner = actioners.get(f"email:{alert['via']}") or actioners.get(f"webhook:{alert['via']}")
        attempt = alert["attempts"] + 1
        retry_at = now + retry_delay(attempt) if attempt < MAX_ATTEMPTS else None
        if actioner is None:
            with ws.transaction() as tx:
                alert_store.record_alert_failed(tx, alert, f"integration {alert['via']} is not available in this "
                                                f"engine (is its file in the integrations folder?)", None,
                                                retry_at, ACTOR)
            continue
        try:
            facts = _facts(ws, alert, base_url)
            request = _request(alert, actioner.integration.kind, facts, json.loads(alert["recipients"]))
            created: CreatedRecord = actioner.execute(request, ctx)
        except ActionFailed as exc:
            with ws.transaction() as tx:
                alert_store.record_alert_failed(tx, alert, exc.cause, exc.evidence,
                                                retry_at if exc.failure_class == TRANSIENT else None, ACTOR)
            continue
        except Exception as exc:  # noqa: BLE001 - an alert must never take the engine's poll down
            log.exception("alert %s could not be sent", alert["alert_id"])
            with ws.transaction() as tx:
                alert_store.record_alert_failed(tx, alert, f"unexpected error: {type(exc).__name__}: {exc}", None,
                                                retry_at, ACTOR)
            continue
        with ws.transaction() as tx:
            delivered += alert_store.record_alert_delivered(tx, alert, created.ref, created.evidence, ACTOR)
    return delivered

"""The webhook actioner: an action's params, rendered, POSTed as JSON to a declared integration.

Every request carries ``Idempotency-Key: <the item's key>`` (the same on every attempt of the item, so a
receiver that keeps keys, as Stripe's API does, recognises a replay after a lost answer), and when the
integration declares ``secret_env``, ``X-Runledger-Timestamp`` and ``X-Runledger-Signature`` (hex
HMAC-SHA256 of ``"{timestamp}.{body}"``: the scheme the intake endpoint checks, so one verifier serves both).

The answer decides the item, as the receiver meant it: 2xx succeeded (the remote record's id taken from the
JSON answer at ``record_id``, else the request's digest); 408, 425, 429, 5xx, a refused or reset connection
and a timeout are transient (``Retry-After`` honoured by the automatic retry); any other answer is
deterministic, with the status and the first 300 characters of the body; a TLS failure is deterministic
and named (retrying does not fix a certificate). Whatever came back — status, the headers that matter, the
body's SHA-256 and size — is evidence, kept on the attempt either way.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from core.integrations import ENV_REF, IntegrationSpec
from engine.actioners.base import (
    ActionContext,
    ActionRequest,
    CreatedRecord,
    DeterministicFailure,
    TransientFailure,
)
from engine.integrations.actioner import IntegrationActioner
from engine.integrations.secrets import MissingSecret, read_secret

TRANSIENT_STATUSES = frozenset({408, 425, 429})
EVIDENCE_HEADERS = ("location", "retry-after", "x-request-id", "request-id", "idempotency-key",
                    "idempotent-replayed", "content-type", "date", "etag")
MAX_ANSWER_BYTES = 1 << 20  # what is read of an answer; its digest covers what was read, said as such
EXCERPT_CHARS = 300


def _body(params: dict[str, Any]) -> bytes:
    """The JSON body: the rendered params, keys sorted, so the same params are the same bytes (and digest)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def _at_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date (RFC 9110 §10.2.3); None if absent
    or unreadable. Capped at a day: a receiver cannot park an item forever."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), 86_400.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return min(max(when.timestamp() - (time.time() if now is None else now), 0.0), 86_400.0)


def tls_failure(host: str, exc: ssl.SSLError) -> str:
    """A TLS failure in words: retrying does not fix a certificate, so the sentence says what is wrong."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS failed with {host}: its certificate could not be verified ({exc.verify_message})"
    return f"TLS failed with {host} ({getattr(exc, 'reason', None) or exc})"


class WebhookActioner(IntegrationActioner):
    """One declared webhook integration."""

    def __init__(self, integration: IntegrationSpec) -> None:
        super().__init__(integration)
        parts = urlsplit(integration.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _headers(self, req: ActionRequest, body: bytes) -> dict[str, str]:
        it = self.integration
        headers = {"Content-Type": "application/json", "Idempotency-Key": req.idempotency_key,
                   "User-Agent": "Runledger", "X-Runledger-Item": req.item_id}
        for name, value in it.headers.items():
            headers[name] = ENV_REF.sub(lambda m: read_secret(m.group(1), it.id), value)
        if it.secret_env:
            secret = read_secret(it.secret_env, it.id)
            ts = str(int(time.time()))  # the receiver checks it against its own clock: real time, always
            headers["X-Runledger-Timestamp"] = ts
            headers["X-Runledger-Signature"] = hmac.new(secret.encode(), f"{ts}.".encode() + body,
                                                        hashlib.sha256).hexdigest()
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.integration.timeout_seconds
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        context = ssl.create_default_context()
        if self.integration.ca_file_env:
            context.load_verify_locations(cafile=read_secret(self.integration.ca_file_env, self.integration.id))
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=context)

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        it = self.integration
        body = _body(req.params)
        request_sha = hashlib.sha256(body).hexdigest()
        evidence: dict[str, Any] = {"integration": it.id, "kind": "webhook", "url": it.url,
                                    "request_sha256": request_sha, "idempotency_key": req.idempotency_key}
        try:
            headers = self._headers(req, body)
            conn = self._connection()
        except MissingSecret as exc:  # set the variable, then retry: worth a retry, not a dead end
            raise TransientFailure(str(exc), evidence) from None
        except (OSError, ssl.SSLError) as exc:  # a CA file that cannot be read
            raise DeterministicFailure(f"{it.id}: the CA bundle {it.ca_file_env} names cannot be used ({exc})",
                                       evidence) from None
        started = time.monotonic()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read(MAX_ANSWER_BYTES)
        except ssl.SSLError as exc:
            raise DeterministicFailure(f"{it.id}: {tls_failure(self._host, exc)}; nothing was sent. Fix the "
                                       "certificate (or trust its CA with ca_file_env), then retry", evidence) from None
        except TimeoutError:
            raise TransientFailure(
                f"{it.id}: no answer from {self._host} within {it.timeout_seconds:g} s; it may have acted, so a "
                "retry sends the same Idempotency-Key", evidence) from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise TransientFailure(
                f"{it.id}: the connection to {self._host} failed ({type(exc).__name__}: {exc}); a retry sends "
                "the same Idempotency-Key", evidence) from None
        finally:
            conn.close()
        status = answer.status
        evidence.update(
            status=status, reason=answer.reason, elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            headers={k: v for k in EVIDENCE_HEADERS if (v := answer.getheader(k)) is not None},
            body_sha256=hashlib.sha256(data).hexdigest(), body_bytes=len(data))
        excerpt = data[:EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
        if 200 <= status < 300:
            remote_id = self._remote_id(data)
            evidence["remote_id"] = remote_id
            ref = f"webhook:{it.id}:{remote_id}" if remote_id else f"webhook:{it.id}:sha256-{request_sha[:16]}"
            return CreatedRecord(None, None, ref, evidence)
        said = f"{it.id} answered {status} {answer.reason}".rstrip() + (f": {excerpt}" if excerpt else "")
        if status in TRANSIENT_STATUSES or status >= 500:
            wait = retry_after_seconds(answer.getheader("retry-after"))
            raise TransientFailure(said + (f" (asked to retry after {wait:g} s)" if wait is not None else ""),
                                   evidence, retry_after=wait)
        raise DeterministicFailure(said, evidence)

    def _remote_id(self, data: bytes) -> str | None:
        if not self.integration.record_id or not data:
            return None
        try:
            found = _at_path(json.loads(data), self.integration.record_id)
        except (ValueError, RecursionError):
            return None
        if isinstance(found, (str, int)) and not isinstance(found, bool) and str(found).strip():
            return str(found).strip()[:200]
        return None

"""The e-mail actioner: ``to``, ``subject`` and ``body`` rendered and sent through a declared SMTP server.

Every message carries ``Message-ID: <KEY@runledger>`` derived from the item's idempotency key (and the key
itself in ``X-Runledger-Idempotency-Key``), so a resend after a lost answer is recognisable by the receiver
as the same message. The body is plain text; its HTML alternative is the same text, escaped, so nothing in
a subject's data is ever rendered as markup.

The server's replies decide the item, recipient by recipient: a 4xx reply is transient, a 5xx reply is
deterministic (naming the recipient and the reply); a refused, dropped or timed-out connection is transient;
a TLS or authentication failure is deterministic. What the server said for each recipient and for the
message is the attempt's evidence, with the SHA-256 of the message as sent.
"""

from __future__ import annotations

import hashlib
import html
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

from core.declared import EMAIL
from engine.actioners.base import (
    ActionContext,
    ActionRequest,
    CreatedRecord,
    DeterministicFailure,
    TransientFailure,
)
from engine.integrations.actioner import IntegrationActioner
from engine.integrations.secrets import MissingSecret, read_secret
from engine.integrations.webhook import tls_failure


def message_id(idempotency_key: str) -> str:
    return f"<{idempotency_key}@runledger>"


def recipients_of(to: Any) -> list[str]:
    """``to`` as addresses: a list, or one text of addresses separated by commas."""
    values = to if isinstance(to, list) else [to]
    return [addr for _, addr in getaddresses([str(v) for v in values if v]) if addr]


def _reply(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {said}".strip()


class EmailActioner(IntegrationActioner):
    """One declared SMTP integration."""

    def _message(self, req: ActionRequest, to: list[str], ctx: ActionContext) -> EmailMessage:
        p = req.params
        msg = EmailMessage()
        msg["From"] = self.integration.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = str(p["subject"]).replace("\r", " ").replace("\n", " ")
        msg["Message-ID"] = message_id(req.idempotency_key)
        msg["Date"] = format_datetime(ctx.now())
        msg["X-Runledger-Idempotency-Key"] = req.idempotency_key
        msg["X-Runledger-Item"] = req.item_id
        text = str(p["body"])
        msg.set_content(text)
        msg.add_alternative(f"<pre>{html.escape(text)}</pre>", subtype="html")
        return msg

    def _connect(self) -> smtplib.SMTP:
        it = self.integration
        context = ssl.create_default_context()
        if it.tls:
            return smtplib.SMTP_SSL(it.host, it.port, timeout=it.timeout_seconds, context=context)
        server = smtplib.SMTP(it.host, it.port, timeout=it.timeout_seconds)
        if it.starttls:
            server.starttls(context=context)
        return server

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        it = self.integration
        to = recipients_of(req.params.get("to"))
        bad = [a for a in to if not EMAIL.match(a)]
        if not to or bad:
            raise DeterministicFailure(f"{it.id}: 'to' must name e-mail addresses; got {req.params.get('to')!r}")
        msg = self._message(req, to, ctx)
        raw = msg.as_bytes()
        evidence: dict[str, Any] = {"integration": it.id, "kind": "smtp", "server": f"{it.host}:{it.port}",
                                    "message_id": msg["Message-ID"], "message_sha256": hashlib.sha256(raw).hexdigest(),
                                    "recipients": to}
        started = time.monotonic()
        try:
            user = read_secret(it.username_env, it.id) if it.username_env else None
            password = read_secret(it.password_env, it.id) if it.password_env else None
        except MissingSecret as exc:
            raise TransientFailure(str(exc), evidence) from None
        try:
            server = self._connect()
            try:
                if user is not None and password is not None:
                    server.login(user, password)
                refused = server.send_message(msg, to_addrs=to)
            finally:
                try:
                    server.quit()
                except (smtplib.SMTPException, OSError):
                    server.close()
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            raise self._refused(exc.recipients, evidence, started) from None
        except smtplib.SMTPAuthenticationError as exc:
            said = _reply(exc.smtp_code, exc.smtp_error)
            raise DeterministicFailure(f"{it.id}: the server refused the login ({said}); check the credentials "
                                       "its variables hold", evidence) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPHeloError) as exc:
            said = _reply(exc.smtp_code, exc.smtp_error)
            evidence["reply"] = said
            failure = TransientFailure if 400 <= exc.smtp_code < 500 else DeterministicFailure
            raise failure(f"{it.id}: the server refused the message: {said}", evidence) from None
        except smtplib.SMTPConnectError as exc:  # it answered the connection with a refusal (421: not now)
            said = _reply(exc.smtp_code, exc.smtp_error)
            evidence["reply"] = said
            failure = TransientFailure if exc.smtp_code < 500 else DeterministicFailure
            raise failure(f"{it.id}: the server refused the connection: {said}", evidence) from None
        except ssl.SSLError as exc:
            raise DeterministicFailure(f"{it.id}: {tls_failure(it.host, exc)}; nothing was sent", evidence) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # refused, reset, timed out
            raise TransientFailure(f"{it.id}: could not deliver through {it.host}:{it.port} "
                                   f"({type(exc).__name__}: {exc}); a retry sends the same Message-ID",
                                   evidence) from None
        except smtplib.SMTPException as exc:
            raise TransientFailure(f"{it.id}: {type(exc).__name__}: {exc}", evidence) from None
        if refused:  # some recipients took it, some did not
            raise self._refused(refused, evidence, started)
        evidence["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        evidence["accepted"] = to
        return CreatedRecord(None, None, f"email:{it.id}:{msg['Message-ID'].strip('<>')}", evidence)

    def _refused(self, refused: dict[str, tuple[int, bytes]], evidence: dict[str, Any],
                 started: float) -> TransientFailure | DeterministicFailure:
        """The item's failure for the recipients the server refused: deterministic if any refusal is
        permanent (5xx), transient otherwise. The others are named as accepted (a retry resends the same
        Message-ID)."""
        said = {addr: _reply(code, text) for addr, (code, text) in refused.items()}
        evidence.update(refused=said, accepted=[a for a in evidence["recipients"] if a not in refused],
                        elapsed_ms=round((time.monotonic() - started) * 1000, 1))
        permanent = any(code >= 500 for code, _ in refused.values())
        listed = "; ".join(f"{addr}: {reply}" for addr, reply in said.items())
        if permanent:
            return DeterministicFailure(f"{self.integration.id}: the server refused {listed}", evidence)
        return TransientFailure(f"{self.integration.id}: the server deferred {listed}", evidence)

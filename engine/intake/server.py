"""The intake endpoint: how signals and the CLI's commands reach the engine that holds the workspace.

DuckDB lets one process hold the file, so while the engine runs nobody else can open it; instead they
POST here. A small stdlib HTTP server (loopback by default) runs beside the scheduler:

- ``POST /signals/<source>``: body = the signal's JSON payload, signed with that source's secret
  (``intake_sources.secret``); delivered with ``engine.signals.deliver_signal``.
- ``POST /commands/<name>``: body = JSON ``{"member": …, <the command's arguments>}``, signed with the
  CLI token of this engine start; performed by ``engine.commands.named.perform``, the very code the CLI runs
  when it opens the file itself.

Every request carries ``X-Runledger-Timestamp`` (unix seconds) and ``X-Runledger-Signature`` = hex
HMAC-SHA256(secret, f"{timestamp}.{body}"). Requests that are unsigned, wrongly signed or outside the
timestamp window are refused (401), a signature seen before is a replay (409) — signatures are remembered
in ``intake_requests`` — and bodies over the limit are refused unread (413). Every request is answered
with JSON ``{"accepted": bool, "message": str, …}`` and recorded in the audit log, accepted or not.

While it serves, the engine publishes ``<workspace>.engine.json`` (mode 0600: pid, host, port, CLI token)
so that a CLI which finds the file held can forward its command; holding the token is as good as being
able to open the workspace file, which is what the CLI could do when no engine runs.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from core.json_body import BadJson, read_json
from engine.authz import NotAuthorized, UnknownMember
from engine.catalog import UnknownDefinition
from engine.commands import CommandRefused, NotFound
from engine.commands.named import OPERATIONS, BadRequest, perform
from engine.signals import MAX_PAYLOAD_BYTES, SignalRejected
from store.errors import StoreError, WriteConflict
from store.sources import read_source, record_answer, remember_request
from store.subjects import UnknownSubject

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger("runledger.intake")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8731
TIMESTAMP_HEADER = "X-Runledger-Timestamp"
SIGNATURE_HEADER = "X-Runledger-Signature"
WINDOW_SECONDS = 300
# A command's body wraps a signal's payload as a JSON string, whose escaping can double it.
COMMAND_BODY_LIMIT = 2 * MAX_PAYLOAD_BYTES + 4096
DRAIN_LIMIT = 1024 * 1024  # bigger bodies are not even read: the connection is closed on them
DISCOVERY_SUFFIX = ".engine.json"
UNVERIFIED = "intake:unverified"


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """hex HMAC-SHA256(secret, "<timestamp>.<body>") — what a sender puts in X-Runledger-Signature."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def discovery_path(workspace_path: str) -> str:
    return f"{workspace_path}{DISCOVERY_SUFFIX}"


def resolve_intake_port(explicit: int | None = None) -> int | None:
    """The constructor's port wins, then ``RUNLEDGER_INTAKE_PORT`` (``off`` disables), then the default."""
    if explicit is not None:
        return explicit
    text = os.environ.get("RUNLEDGER_INTAKE_PORT", "").strip()
    if text.lower() in ("off", "none", "disabled"):
        return None
    if not text:
        return DEFAULT_PORT
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"RUNLEDGER_INTAKE_PORT must be a port number (0 = any free port) or 'off', "
                         f"not {text!r}") from None


@dataclass
class Reply:
    status: int
    accepted: bool
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps({"accepted": self.accepted, "message": self.message, "status": self.status,
                           **self.data}, default=str).encode()


# Named refusals → HTTP status; the exception's own message says why and what to do.
_REFUSALS: tuple[tuple[type[BaseException], int], ...] = (
    (BadRequest, 400), (SignalRejected, 422), (NotAuthorized, 403), (UnknownMember, 404),
    (CommandRefused, 409), (WriteConflict, 409), (NotFound, 404), (UnknownSubject, 404),
    (UnknownDefinition, 404),
)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight before the workspace closes
    block_on_close = True
    intake: IntakeServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "RunledgerIntake/1"
    timeout = 15  # a client that stops sending does not hold a thread for long

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        try:
            reply = self.server.intake.handle(self.path, self.headers, self.rfile.read, self.client_address[0])
        except Exception as exc:  # noqa: BLE001 - handle() answers everything it foresees; this is the rest
            log.exception("intake: unexpected failure on %s", self.path)
            reply = Reply(500, False, f"the engine failed on this request ({type(exc).__name__}); see its log")
            self.close_connection = True
        if reply.status == 413:
            self.close_connection = True  # the oversized body may be left unread
        self._send(reply)

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._send(self.server.intake.refuse(
            405, "only POST /signals/<source> and POST /commands/<name> are served",
            f"{self.command} {urlsplit(self.path).path}", self.client_address[0]))

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815 - http.server names its handlers so

    def _send(self, reply: Reply) -> None:
        data = reply.body()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.client_address[0], format % args)


class IntakeServer:
    """The endpoint of one running engine: bound by ``start``, gone (with its discovery file) by ``stop``."""

    def __init__(self, engine: Engine, port: int | None = None, host: str | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.requested_port = resolve_intake_port(port)
        self.host = host or os.environ.get("RUNLEDGER_INTAKE_HOST") or DEFAULT_HOST
        self.wall_clock = wall_clock  # senders sign with real time, whatever clock the engine runs on
        self.cli_token = ""
        self.port = 0
        ws = engine.ws
        self.discovery_file = (discovery_path(ws.path) if ws.is_duckdb and ws.path != ":memory:" else None)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        port = self.requested_port if self.requested_port is not None else DEFAULT_PORT
        self._httpd = self._bind(port)
        self._httpd.intake = self
        self.port = self._httpd.server_address[1]
        self.cli_token = secrets.token_hex(32)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="runledger-intake", daemon=True)
        self._thread.start()
        self._write_discovery()
        log.info("intake endpoint on %s", self.url)

    def _bind(self, port: int) -> _Server:
        server_class = _Server6 if ":" in self.host else _Server
        try:
            return server_class((self.host, port), _Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            log.warning("intake port %s on %s is in use; serving on a free port instead (CLIs find it in "
                        "the discovery file; integration sources must be told the new port)", port, self.host)
            return server_class((self.host, 0), _Handler)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._remove_discovery()  # first: CLIs stop forwarding to an engine that is going away
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()  # waits for requests in flight
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _write_discovery(self) -> None:
        if self.discovery_file is None:
            return
        info = {"pid": os.getpid(), "host": self.host, "port": self.port, "cli_token": self.cli_token,
                "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "workspace": os.path.abspath(self.engine.ws.path)}
        tmp = f"{self.discovery_file}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.discovery_file)

    def _remove_discovery(self) -> None:
        if self.discovery_file is None:
            return
        try:
            with open(self.discovery_file, encoding="utf-8") as f:
                ours = json.load(f).get("cli_token") == self.cli_token
        except (OSError, ValueError):
            return
        if ours:
            try:
                os.unlink(self.discovery_file)
            except FileNotFoundError:
                pass

    # --- one request --------------------------------------------------------------------------------
    def handle(self, path: str, headers: Any, read_body: Callable[[int], bytes], remote: str) -> Reply:
        """Check, perform and audit one request; never raises."""
        route = urlsplit(path).path
        label = f"POST {route}"
        parts = route.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("signals", "commands") or not parts[1]:
            return self.refuse(404, "no such route; POST /signals/<source> or /commands/<name>", label, remote)
        kind, name = parts[0], unquote(parts[1])
        limit = MAX_PAYLOAD_BYTES if kind == "signals" else COMMAND_BODY_LIMIT
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return self.refuse(400, "Content-Length must be a non-negative number", label, remote)
        if length > limit:
            if length <= DRAIN_LIMIT:  # read and drop it, so the sender gets the answer, not a reset
                read_body(length)
            return self.refuse(413, f"the body is {length:,} bytes; the limit is {limit:,} bytes; "
                                     "nothing of it was used", label, remote)
        body = read_body(length) if length else b""
        if len(body) != length:
            return self.refuse(400, "the body ended before Content-Length bytes", label, remote)

        try:
            secret = self._secret(kind, name)
        except Exception as exc:  # noqa: BLE001 - the workspace may be closing
            log.exception("intake: could not look up %s", label)
            return self.refuse(503, f"the engine cannot check this request now: {exc}", label, remote)
        if secret is None:
            what = (f"unknown source {name!r}; register it first (an admin runs: python -m engine sources add "
                    "NAME --register REGISTER --as ADMIN)" if kind == "signals"
                    else f"unknown command {name!r}; known: {', '.join(OPERATIONS)}")
            return self.refuse(404, what, label, remote)

        refusal = self._check_signature(secret, headers, body)
        if refusal:
            return self.refuse(401, refusal, label, remote)
        signature = str(headers.get(SIGNATURE_HEADER)).strip().lower().removeprefix("sha256=")
        sender = f"signal:{name}" if kind == "signals" else "intake:cli"
        try:
            with self.engine.ws.transaction() as tx:
                fresh = remember_request(tx, signature, name if kind == "signals" else "cli", False, "received")
        except Exception as exc:  # noqa: BLE001 - every request gets an answer, even when the store fails
            log.exception("intake: could not remember %s", label)
            return self.refuse(503, f"the engine cannot record this request now: {exc}", label, remote)
        if not fresh:
            reply = Reply(409, False, "this request was already received (same signature): a replay is "
                                      "refused; sign a new request with a fresh timestamp")
            self._record(UNVERIFIED, label, remote, reply, signature, remembered=False)
            return reply

        reply = self._perform(kind, name, body)
        self._record(sender, label, remote, reply, signature)
        return reply

    def _secret(self, kind: str, name: str) -> str | None:
        if kind == "commands":
            return self.cli_token if name in OPERATIONS else None
        with self.engine.ws.read() as conn:
            source = read_source(conn, name)
        return source["secret"] if source else None

    def _check_signature(self, secret: str, headers: Any, body: bytes) -> str | None:
        """None if the request is signed by the holder of ``secret`` within the window; else why not."""
        ts, sig = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
        if not ts or not sig:
            return (f"unsigned request: send {TIMESTAMP_HEADER} (unix seconds) and {SIGNATURE_HEADER} "
                    "(hex HMAC-SHA256 of '<timestamp>.<body>' with your secret)")
        ts = ts.strip()
        if not ts.isdigit():
            return f"{TIMESTAMP_HEADER} must be whole unix seconds, not {ts[:40]!r}"
        provided = sig.strip().lower().removeprefix("sha256=").encode("utf-8", "replace")
        if not hmac.compare_digest(provided, sign(secret, ts, body).encode()):
            return "the signature does not match this request and secret"
        skew = abs(self.wall_clock() - int(ts))
        if skew > WINDOW_SECONDS:
            return (f"the timestamp is {skew:,.0f} s away from the engine's clock; requests are accepted "
                    f"within {WINDOW_SECONDS} s — check the sender's clock and sign a fresh request")
        return None

    def _perform(self, kind: str, name: str, body: bytes) -> Reply:
        try:
            parsed = read_json(body)
        except BadJson as exc:
            return Reply(400, False, str(exc))
        try:
            if kind == "signals":
                answer = perform(self.engine, "signal", {"source": name, "payload": body.decode()})
            else:
                if not isinstance(parsed, dict):
                    return Reply(400, False, f"the body must be a JSON object, not a {type(parsed).__name__}")
                answer = perform(self.engine, name, parsed)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            for cls, status in _REFUSALS:
                if isinstance(exc, cls):
                    return Reply(status, False, str(exc))
            if isinstance(exc, StoreError):
                return Reply(500, False, str(exc))
            log.exception("intake: %s %s failed", kind, name)
            return Reply(500, False, f"the engine failed to perform it ({type(exc).__name__}: {exc}); "
                                     "see the engine's log")
        return Reply(200, True, answer.message, answer.data)

    def refuse(self, status: int, message: str, label: str, remote: str) -> Reply:
        reply = Reply(status, False, message)
        self._record(UNVERIFIED, label, remote, reply, None)
        return reply

    def _record(self, actor: str, label: str, remote: str, reply: Reply, signature: str | None,
                remembered: bool = True) -> None:
        """Audit the request and, for a remembered one, the answer it got — in one transaction."""
        try:
            with self.engine.ws.transaction() as tx:
                if signature and remembered:
                    record_answer(tx, signature, reply.accepted, reply.message)
                tx.audit(actor, "intake.accepted" if reply.accepted else "intake.refused", "intake_request",
                         label, {"status": reply.status, "message": reply.message[:500], "remote": remote,
                                 "signature": signature[:16] if signature else None})
        except Exception:  # noqa: BLE001 - the answer still goes out; the log says the audit failed
            log.exception("intake: could not audit %s (%s)", label, reply.status)


def start_intake(engine: Engine, port: int | None = None) -> IntakeServer | None:
    """Start the endpoint unless ``RUNLEDGER_INTAKE_PORT=off`` (and no port was given)."""
    if port is None and resolve_intake_port(None) is None:
        return None
    server = IntakeServer(engine, port)
    server.start()
    return server

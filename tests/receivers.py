"""Real servers on loopback for the integrations' tests: an HTTP receiver (the standard library's threading
server, plain or TLS with a certificate from a throwaway CA) and an SMTP server (aiosmtpd).

The HTTP receiver answers by path, as a tracker would: ``/ok`` 201 with a new id (and the same id again for
a key it has seen: it dedupes by ``Idempotency-Key``), ``/bad`` 400, ``/conflict`` 409, ``/busy`` 429 with
``Retry-After``, ``/error`` 500, ``/hang`` never answers in time, ``/reset`` drops the connection unread,
``/lost`` acts (records the key, issues an id) and then drops the connection — the answer lost; ``/slow``
answers after ``slow_seconds`` and counts how many requests it held at once. It keeps
every request it received, with its headers, body and whether its signature verified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool | None  # None: no signature was expected

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the HTTP receiver saw and did; ``url`` is its base address."""

    url: str = ""
    secret: str | None = None
    requests: list[Received] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)  # idempotency key → the id it issued
    bodies: dict[str, bytes] = field(default_factory=dict)  # idempotency key → the first body it acted on
    hang_seconds: float = 5.0
    slow_seconds: float = 0.2
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it was answering at once (``/slow``)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acted(self) -> dict[str, int]:
        """How many requests arrived per key (a key acted twice would show as two different ids)."""
        counts: dict[str, int] = {}
        for r in self.requests:
            counts[r.key] = counts.get(r.key, 0) + 1
        return counts


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's name
            pass

        def _answer(self, status: int, doc: Any = None, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(doc).encode() if doc is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-Id", f"req-{len(receiver.requests)}")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _reset(self) -> None:
            # An RST, not a polite close: SO_LINGER with a zero timeout drops the connection at once.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _issue(self, key: str, body: bytes) -> str:
            with receiver.lock:
                if key not in receiver.issued:
                    receiver.issued[key] = f"TCK-{len(receiver.issued) + 1}"
                    receiver.bodies[key] = body
                return receiver.issued[key]

        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            signed = None
            if receiver.secret is not None:
                ts = headers.get("x-runledger-timestamp", "")
                want = hmac.new(receiver.secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(want, headers.get("x-runledger-signature", ""))
            with receiver.lock:
                receiver.requests.append(Received(self.path, headers, body, signed))
            key = headers.get("idempotency-key", "")
            path = self.path.split("?")[0]
            if path == "/ok":
                self._answer(201, {"data": {"id": self._issue(key, body)}})
            elif path == "/slow":  # a receiver that takes its time: counts how many it holds at once
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(receiver.slow_seconds)
                with receiver.lock:
                    receiver.in_flight -= 1
                self._answer(201, {"data": {"id": self._issue(key, body)}})
            elif path == "/noid":
                self._answer(200, {"received": True})
            elif path == "/bad":
                self._answer(400, {"error": "field 'title' is required by this tracker"})
            elif path == "/conflict":
                self._answer(409, {"error": "a ticket with this key is being created"})
            elif path == "/busy":
                self._answer(429, {"error": "slow down"}, {"Retry-After": "120"})
            elif path == "/error":
                self._answer(500, {"error": "database unavailable"})
            elif path == "/hang":
                time.sleep(receiver.hang_seconds)
                self._answer(200, {"data": {"id": "late"}})
            elif path == "/reset":
                self._reset()
            elif path == "/lost":  # acts, then the answer never arrives; a repeat of the key is answered
                first = key not in receiver.issued
                issued = self._issue(key, body)
                if first:
                    self._reset()
                else:
                    self._answer(200, {"data": {"id": issued}}, {"Idempotent-Replayed": "true"})
            else:
                self._answer(404, {"error": f"no route {path}"})

    return Handler


@contextmanager
def http_receiver(secret: str | None = None, tls: Any = None) -> Iterator[Receiver]:
    """An HTTP(S) receiver on a free loopback port; ``tls``: a trustme CA's issued certificate to serve."""
    receiver = Receiver(secret=secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# --- SMTP ------------------------------------------------------------------------------------------
@dataclass
class Mailbox:
    """What the SMTP server received; ``reply`` maps a recipient to the reply it gets (e.g. "451 …")."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)  # (recipients, raw message)
    reply: dict[str, str] = field(default_factory=dict)
    drop_on_data: bool = False


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        said = self.box.reply.get(address)
        if said is not None:
            return said
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.box.drop_on_data:
            server.transport.close()  # the connection dropped before the server answered the message
            return "421 closing"
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.box.messages.append((list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(_Handler(box), hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def free_port() -> int:
    """A loopback port nothing listens on (a refused connection)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

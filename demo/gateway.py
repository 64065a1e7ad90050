"""The demo credit union's messaging gateway: a real SMTP server (aiosmtpd) on loopback that the engine's
``messaging`` integration (integrations/messaging.yaml) sends every evidence request through.

It behaves as the credit union's gateway does in the demo's story, on the clock it is given (the seed's
simulated one, or the real one under ``make run``):

- each message takes ``latency_seconds`` on that clock (a slow gateway: the demo's runs take minutes);
- during an outage it answers a new connection ``421 4.3.2 <reason>`` and closes it, as a mail system does
  when it cannot take mail now — the engine classes that as transient, and a retry after the outage goes
  through;
- it keeps its own ledger of what it delivered, keyed by Message-ID (which the engine derives from the
  item's idempotency key): a message sent again after a lost answer is acknowledged, not delivered twice.

``python -m demo.gateway`` runs it until interrupted (``make run`` starts it beside the app), with the
outages the seed wrote beside the workspace (``--outages``), so a retry in the app meets the gateway the
demo's story says is there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from demo.folders import demo_data_folder
from engine.clock import Clock, SystemClock


@dataclass(frozen=True)
class Outage:
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str


@dataclass
class Ledger:
    """What the gateway took: Message-ID → recipients, and how many resends it recognised."""

    delivered: dict[str, list[str]] = field(default_factory=dict)
    resends: int = 0
    refused: int = 0


class _Handler:
    def __init__(self, gateway: DemoGateway) -> None:
        self.gateway = gateway

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message_id = str(message_from_bytes(content).get("Message-ID", "")).strip()
        with self.gateway.lock:
            ledger = self.gateway.ledger
            if message_id and message_id in ledger.delivered:
                ledger.resends += 1  # the same message again (its answer was lost): acknowledged, not resent
                return f"250 2.0.0 {message_id} already delivered"
            ledger.delivered[message_id] = list(envelope.rcpt_tos)
        return f"250 2.0.0 {message_id} delivered"


class _GatewaySMTP(SMTP):
    """aiosmtpd's server, refusing a connection at its greeting while the gateway is down."""

    gateway: DemoGateway

    async def _handle_client(self) -> None:
        refusal = self.gateway.answer_connection()
        if refusal is not None:
            await self.push(f"421 4.3.2 {refusal}")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, gateway: DemoGateway, host: str, port: int) -> None:
        self.gateway = gateway
        super().__init__(_Handler(gateway), hostname=host, port=port, ready_timeout=10)

    def factory(self) -> SMTP:
        server = _GatewaySMTP(self.handler, **self.SMTP_kwargs)
        server.gateway = self.gateway
        return server


class DemoGateway:
    def __init__(self, clock: Clock, host: str = "127.0.0.1", port: int = 2525, latency_seconds: float = 0.0,
                 outages: list[Outage] | None = None) -> None:
        self.clock, self.host, self.port, self.latency_seconds = clock, host, port, latency_seconds
        self.outages: list[Outage] = list(outages or [])
        self.ledger = Ledger()
        self.lock = threading.Lock()
        self._controller: _Controller | None = None
        self._self_tested = False

    def add_outage(self, starts_at: dt.datetime, ends_at: dt.datetime, reason: str) -> None:
        self.outages.append(Outage(starts_at, ends_at, reason))

    def answer_connection(self) -> str | None:
        """A connection's fate, decided when it arrives: the outage's reason if the gateway is down then.
        Either way the exchange takes the gateway's latency (a refusal as long as a delivery)."""
        if not self._self_tested:  # aiosmtpd's own check that the server is up, the first connection it makes
            self._self_tested = True
            return None
        at = self.clock.now()
        self.clock.sleep(self.latency_seconds)
        down = next((o for o in self.outages if o.starts_at <= at < o.ends_at), None)
        if down is not None:
            with self.lock:
                self.ledger.refused += 1
            return down.reason
        return None

    def start(self) -> DemoGateway:
        self._controller = _Controller(self, self.host, self.port)
        try:
            # aiosmtpd notices a port in use only after its ten-second start timeout: ask the system first.
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
            self._controller.start()
        except OSError as exc:
            self._controller = None
            raise OSError(f"the demo's messaging gateway cannot listen on {self.host}:{self.port} ({exc}); "
                          "stop what uses that port, or set RUNLEDGER_MESSAGING_PORT to a free one") from None
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> DemoGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def save_outages(path: Path, outages: list[Outage]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"starts_at": o.starts_at.isoformat(), "ends_at": o.ends_at.isoformat(),
                                 "reason": o.reason} for o in outages], indent=1) + "\n")


def read_outages(path: Path) -> list[Outage]:
    if not path.exists():
        return []
    return [Outage(dt.datetime.fromisoformat(o["starts_at"]), dt.datetime.fromisoformat(o["ends_at"]), o["reason"])
            for o in json.loads(path.read_text())]


def outages_path(workspace: str | Path) -> Path:
    """Where the seed leaves the gateway's outages: in the demo's folder for the workspace, with the data
    files it imported."""
    return demo_data_folder(workspace) / "gateway-outages.json"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="The demo's messaging gateway (SMTP on loopback), until interrupted.")
    p.add_argument("--host", default=os.environ.get("RUNLEDGER_MESSAGING_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("RUNLEDGER_MESSAGING_PORT", "2525")))
    p.add_argument("--latency", type=float, default=0.0, help="seconds each message takes (default 0)")
    p.add_argument("--workspace", help="the demo workspace whose seed's outages to keep to")
    a = p.parse_args(argv)
    outages = read_outages(outages_path(a.workspace)) if a.workspace else []
    gateway = DemoGateway(SystemClock(), a.host, a.port, a.latency, outages).start()
    print(f"demo messaging gateway on {a.host}:{a.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()

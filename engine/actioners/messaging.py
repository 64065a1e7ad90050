"""The messaging integration that delivers evidence requests to people.

It stands for an external system: it keeps its own delivery ledger (committed when it delivers, apart
from the engine's transaction, as a remote system would) and dedupes by idempotency key, so a delivery
whose answer was lost is not sent twice. An outage window makes it refuse with a transient failure, and
each call takes ``latency_seconds`` on the engine's clock.
"""

from __future__ import annotations

from engine.actioners.base import TransientFailure
from engine.clock import Clock
from store.records import read_active_outage, read_delivery, record_delivery
from store.workspace import Workspace

INTEGRATION = "messaging"


class MessagingIntegration:
    def __init__(self, ws: Workspace, clock: Clock, latency_seconds: float = 0.0) -> None:
        self.ws, self.clock, self.latency_seconds = ws, clock, latency_seconds

    def deliver(self, idempotency_key: str, recipient: str, title: str) -> str:
        """Deliver once per key; return the message id (the original one on a repeat)."""
        started = self.clock.now()
        with self.ws.read() as conn:
            outage = read_active_outage(conn, INTEGRATION, started)
            earlier = read_delivery(conn, idempotency_key)
        self.clock.sleep(self.latency_seconds)
        if outage is not None:
            raise TransientFailure(
                f"messaging system unavailable ({outage['reason']}); the request to {recipient} was not "
                f"delivered. Retry once the messaging system is back.")
        if earlier is not None:
            return str(earlier["message_id"])
        message_id = f"MSG-{idempotency_key[:10].upper()}"
        with self.ws.transaction() as tx:
            record_delivery(tx, idempotency_key, message_id, recipient)
        return message_id

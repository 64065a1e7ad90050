"""``python -m engine serve``: the engine with no UI, until interrupted."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from engine.intake.server import start_intake
from engine.runtime import Engine
from store.workspace import Workspace


def start_live(engine: Engine) -> None:
    """The engine live: recovery, the scheduler, then the intake endpoint (other processes reach it there)."""
    engine.start()
    if engine.intake is None:
        engine.intake = start_intake(engine, engine.intake_port)


def serve_forever(path: str, definitions_dir: str, out: Callable[[str], None],
                  registers_dir: str | None = None, integrations_dir: str | None = None) -> int:
    ws = Workspace(path)
    engine = Engine(ws, definitions_dir=definitions_dir, registers_dir=registers_dir,
                    integrations_dir=integrations_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        start_live(engine)
        out(f"engine serving {path}; next fires: "
            + ", ".join(f"{k} at {v:%Y-%m-%d %H:%M} UTC" for k, v in engine.next_fire_times().items() if v))
        if engine.intake is not None:
            out(f"intake endpoint on {engine.intake.url} (CLIs find it in {engine.intake.discovery_file})")
        else:
            out("intake endpoint off (RUNLEDGER_INTAKE_PORT=off): other processes cannot reach this engine")
        stop.wait()
    finally:
        engine.shutdown()  # the intake first (its discovery file goes), then the scheduler
        ws.close()
    out("engine stopped")
    return 0

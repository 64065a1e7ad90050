"""``python -m engine serve``: the engine with no UI, until interrupted."""

from __future__ import annotations

import signal
import threading
from typing import Callable

from engine.runtime import Engine
from store.workspace import Workspace


def serve_forever(path: str, definitions_dir: str, out: Callable[[str], None]) -> int:
    ws = Workspace(path)
    engine = Engine(ws, definitions_dir=definitions_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine.start()
    out(f"engine serving {path}; next fires: "
        + ", ".join(f"{k} at {v:%Y-%m-%d %H:%M} UTC" for k, v in engine.next_fire_times().items() if v))
    stop.wait()
    engine.shutdown()
    ws.close()
    out("engine stopped")
    return 0

"""The vocabulary a workspace's definitions are checked against: its registers and their fields, the
watched changes that raise events, and the actioners it can call."""

from __future__ import annotations

from core.actions import ACTIONER_SPECS
from core.definitions import Vocabulary
from store.registers import EVENT_TYPES, REGISTERS
from store.workspace import Workspace


def workspace_vocabulary(ws: Workspace | None = None) -> Vocabulary:
    return Vocabulary(registers={kind: reg.fields for kind, reg in REGISTERS.items()},
                      events={event: kind for event, (kind, _) in EVENT_TYPES.items()},
                      actioners=ACTIONER_SPECS)

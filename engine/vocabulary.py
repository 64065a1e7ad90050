"""The vocabulary a workspace's definitions are checked against: its registers and their fields, the
watched changes their declarations name, and the actioners it can call."""

from __future__ import annotations

from collections.abc import Iterable

from core.actions import ACTIONER_SPECS
from core.definitions import Vocabulary
from core.registers import RegisterSpec
from store.registers import BUILTIN, read_registers
from store.workspace import Workspace


def workspace_vocabulary(ws: Workspace) -> Vocabulary:
    with ws.read() as conn:
        registers = read_registers(conn)
    return Vocabulary(registers={kind: dict(reg.fields) for kind, reg in registers.items()},
                      events={event: reg.kind for event, (reg, _) in registers.events.items()},
                      actioners=ACTIONER_SPECS)


def declared_vocabulary(specs: Iterable[RegisterSpec]) -> Vocabulary:
    """The vocabulary of register declarations not (yet) in a workspace, with Runledger's records."""
    declared = list(specs)
    registers = {spec.id: dict(spec.fields) for spec in declared}
    registers.update({kind: dict(reg.fields) for kind, reg in BUILTIN.items()})
    return Vocabulary(registers=registers, events={e: spec.id for spec in declared for e in spec.events},
                      actioners=ACTIONER_SPECS)

"""The vocabulary a workspace's definitions are checked against: its registers and their fields, the
watched changes their declarations name, and the actioners it can call."""

from __future__ import annotations

from collections.abc import Iterable

from core.actions import ACTIONER_SPECS, ActionerSpec
from core.definitions import Vocabulary
from core.integrations import IntegrationSpec, actioner_spec
from core.registers import RegisterSpec
from engine.integrations.loading import workspace_integrations
from store.registers import BUILTIN, read_registers
from store.workspace import Workspace


def _actioners(integrations: Iterable[IntegrationSpec]) -> dict[str, ActionerSpec]:
    """The owning modules' actioners and one per declared integration (``webhook:ID``, ``email:ID``)."""
    return {**ACTIONER_SPECS, **{spec.actioner: actioner_spec(spec) for spec in integrations}}


def workspace_vocabulary(ws: Workspace) -> Vocabulary:
    with ws.read() as conn:
        registers = read_registers(conn)
    return Vocabulary(registers={kind: dict(reg.fields) for kind, reg in registers.items()},
                      events={event: reg.kind for event, (reg, _) in registers.events.items()},
                      actioners=_actioners(workspace_integrations(ws)))


def declared_vocabulary(specs: Iterable[RegisterSpec], integrations: Iterable[IntegrationSpec] = ()) -> Vocabulary:
    """The vocabulary of register (and integration) declarations not (yet) in a workspace, with Runledger's
    records."""
    declared = list(specs)
    registers = {spec.id: dict(spec.fields) for spec in declared}
    registers.update({kind: dict(reg.fields) for kind, reg in BUILTIN.items()})
    return Vocabulary(registers=registers, events={e: spec.id for spec in declared for e in spec.events},
                      actioners=_actioners(integrations))

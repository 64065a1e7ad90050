"""Integration sources: who may deliver signals, into which register, signing with which secret.

Adding a source is an admin act (it opens a way to create records); it is audited, and the secret is
shown once, to the admin who created it, and never again (only its owner needs it).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from core.roles import Actor
from engine.authz import check_permission
from engine.commands import CommandRefused
from store.registers import read_registers
from store.sources import create_source, read_source, read_sources

if TYPE_CHECKING:
    from engine.runtime import Engine

_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


def add_intake_source(engine: Engine, actor: Actor, source_id: str, register: str) -> str:
    """Register a source and return its new secret (shown once)."""
    check_permission(engine.ws, actor, "manage_definitions", "intake_source", source_id)
    if not _SOURCE_ID.match(source_id):
        raise CommandRefused(f"{source_id!r} is not a usable source name: use 2–63 lower-case letters, "
                             "digits, '.', '_' or '-', starting with a letter or digit.")
    with engine.ws.read() as conn:
        registers = read_registers(conn)
    takers = sorted(k for k, r in registers.items() if r.spec.signals is not None)
    if register not in takers:
        raise CommandRefused(f"signals cannot create records in {register!r}; registers that accept "
                             f"signals (a `signals:` section in their declaration): {', '.join(takers) or 'none'}.")
    with engine.ws.read() as conn:
        if read_source(conn, source_id) is not None:
            raise CommandRefused(f"source {source_id!r} already exists; choose another name.")
    secret = secrets.token_hex(32)
    with engine.ws.transaction() as tx:
        create_source(tx, source_id, secret, register, actor.audit_name)
    return secret


def list_intake_sources(engine: Engine) -> list[dict[str, Any]]:
    """Sources without their secrets."""
    with engine.ws.read() as conn:
        return [{k: v for k, v in s.items() if k != "secret"} for s in read_sources(conn)]

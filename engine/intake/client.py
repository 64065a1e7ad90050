"""Forwarding CLI commands to a running engine's intake endpoint (when one holds the workspace).

The engine publishes ``<workspace>.engine.json`` (pid, host, port, CLI token) while it serves; the CLI
reads it, signs the command with the token and POSTs it to ``/commands/<name>``, then prints the engine's
answer. When there is no such file, its process is gone, or nothing answers, the CLI says who holds the
workspace instead (the caller prints that), and nothing changes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from collections.abc import Callable
from typing import Any

from engine.commands.holds import HOLD_OPERATIONS
from engine.commands.member_operations import MEMBER_OPERATIONS
from engine.commands.named import BadRequest, operation_of, params_from_args
from engine.intake.server import SIGNATURE_HEADER, TIMESTAMP_HEADER, discovery_path, sign
from engine.settings import number_from_env
from store.errors import WorkspaceHeld

FORWARDABLE = {"emit", "signal", "fire", "retry", "cancel", "approve", "dismiss", "disposition", "preview", "import",
               *MEMBER_OPERATIONS, *HOLD_OPERATIONS}
CONNECT_TIMEOUT_SECONDS = 3.0
def answer_timeout_seconds() -> float:
    """A forwarded command runs to the end before the engine answers (a retry of many items may take a
    while): how long the CLI waits for that answer."""
    return number_from_env("RUNLEDGER_INTAKE_TIMEOUT", 600, "seconds")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class EngineUnreachable(ConnectionError):
    """Nothing accepted the connection: the request was never sent."""


def read_discovery(workspace_path: str) -> dict[str, Any] | None:
    """The running engine's address and token, or None if no engine published one."""
    try:
        with open(discovery_path(workspace_path), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not all(k in info for k in ("pid", "host", "port", "cli_token")):
        return None
    return info


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    except (OSError, ValueError):
        return False
    return True


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def post_signed(host: str, port: int, path: str, secret: str, body: bytes,
                timeout: float | None = None) -> tuple[int, bytes]:
    """POST a signed body; returns (HTTP status, response body). EngineUnreachable: nothing was sent."""
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: sign(secret, ts, body)}
    conn = http.client.HTTPConnection(_connect_host(host), port, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise EngineUnreachable(str(exc)) from exc
        conn.sock.settimeout(answer_timeout_seconds() if timeout is None else timeout)
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def forward_if_possible(args: argparse.Namespace, held: WorkspaceHeld, out: Callable[[str], None]) -> int | None:
    """Send the command to the running engine; None when it cannot be forwarded (the caller explains)."""
    name = operation_of(args)
    if name not in FORWARDABLE:
        return None
    info = read_discovery(held.path)
    if info is None:
        return None
    if not pid_alive(info["pid"]):
        out(f"note: {discovery_path(held.path)} names engine PID {info['pid']}, which is no longer running.")
        return None
    try:
        params = params_from_args(args)
    except BadRequest as exc:
        out(f"error: {exc}")
        return EXIT_USAGE
    body = json.dumps(params).encode()
    try:
        status, raw = post_signed(info["host"], int(info["port"]), f"/commands/{name}",
                                  info["cli_token"], body)
    except EngineUnreachable as exc:
        out(f"note: the engine (PID {info['pid']}) did not answer at {info['host']}:{info['port']} ({exc}).")
        return None
    except TimeoutError:
        out(f"error: the engine (PID {info['pid']}) took the command but gave no answer within "
            f"{answer_timeout_seconds():.0f} s; it may still complete — look at the run before repeating it.")
        return EXIT_REFUSED
    except (OSError, http.client.HTTPException) as exc:
        out(f"error: the exchange with the engine (PID {info['pid']}) broke off ({exc}); the command may or "
            "may not have been performed — look at the run before repeating it.")
        return EXIT_REFUSED
    try:
        answer = json.loads(raw)
        accepted, message = bool(answer["accepted"]), str(answer["message"])
    except (ValueError, KeyError, TypeError):
        out(f"error: the engine answered HTTP {status}: {raw[:300].decode(errors='replace')}")
        return EXIT_REFUSED
    if accepted:
        out(message)
        return EXIT_OK
    out(f"{'error' if status in (404, 500, 503) else 'refused'}: {message}")
    return EXIT_REFUSED

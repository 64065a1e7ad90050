"""What a named command is (its parameters and the function that performs it) and what it answers: shared
by ``engine.commands.named`` and the member commands' names (``engine.commands.member_operations``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.runtime import Engine


class BadRequest(ValueError):
    """The command's parameters are missing or malformed; nothing was done."""


@dataclass
class Answer:
    """What a command did: the lines a person reads, and the same facts for a program."""

    lines: list[str]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Operation:
    run: Callable[[Engine, dict[str, Any]], Answer]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


def text_param(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{name}' must be a non-empty string")
    return value


def optional_text_param(params: dict[str, Any], name: str) -> str | None:
    return None if params.get(name) is None else text_param(params, name)

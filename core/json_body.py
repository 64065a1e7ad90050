"""Reading a JSON body from outside (an intake request, a signal's payload, a ``--payload`` file).

Python's parser recurses once per nesting level and raises ``RecursionError`` (not a ``ValueError``) on a
document nested a few thousand levels deep, which callers that catch ``JSONDecodeError`` turned into a
500. Every body Runledger takes is a flat object of a few fields, so nesting is refused far earlier, with
a sentence, before anything is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 32  # the deepest body Runledger reads is two levels; 32 leaves room for any honest sender


class BadJson(ValueError):
    """The body is not a JSON document Runledger reads; the message says what is wrong and what to send."""


def _depth_beyond(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` levels (iteratively: never recurses itself)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def read_json(data: bytes | str, what: str = "the body",
              object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """Parse ``data``; malformed, undecodable or too deeply nested text raises ``BadJson`` naming ``what``."""
    try:
        value = json.loads(data, object_pairs_hook=object_pairs_hook)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJson(f"{what} is not valid JSON ({exc}); send one JSON object") from None
    except RecursionError:
        raise BadJson(f"{what} nests deeper than {MAX_DEPTH} levels; send one flat JSON object") from None
    if _depth_beyond(value, MAX_DEPTH):
        raise BadJson(f"{what} nests deeper than {MAX_DEPTH} levels; send one flat JSON object")
    return value

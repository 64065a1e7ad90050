"""Parameter templates: ``"{{ subject.manager }}"`` rendered per subject, with no code evaluation.

A template names values by path only (``subject.<field>``, ``trigger.<field>``, ``definition.<field>``).
Unknown paths are caught when the definition loads, so a rendering failure at run time means the data
changed under us, and is reported as a deterministic failure of that item.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)+)\s*\}\}")
ROOTS = ("subject", "trigger", "definition")
TRIGGER_FIELDS = ("event_id", "kind", "source", "event_type", "occurred_at")
DEFINITION_FIELDS = ("id", "title", "version")


class TemplateError(ValueError):
    pass


def placeholders(template: Any) -> Iterator[str]:
    if isinstance(template, str):
        for m in PLACEHOLDER.finditer(template):
            yield m.group(1)
    elif isinstance(template, Mapping):
        for v in template.values():
            yield from placeholders(v)
    elif isinstance(template, list):
        for v in template:
            yield from placeholders(v)


def _lookup(path: str, context: Mapping[str, Mapping[str, Any]]) -> Any:
    root, _, rest = path.partition(".")
    scope = context.get(root)
    if scope is None or rest not in scope:
        raise TemplateError(f"{{{{ {path} }}}} has no value for this subject")
    value = scope[rest]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def render(template: Any, context: Mapping[str, Mapping[str, Any]]) -> Any:
    """Render strings (a lone placeholder keeps the value's type), and recurse into dicts and lists."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return _lookup(whole.group(1), context)
        return PLACEHOLDER.sub(lambda m: "" if (v := _lookup(m.group(1), context)) is None else str(v),
                               template)
    if isinstance(template, Mapping):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    return template


Renderer = Callable[[Mapping[str, Mapping[str, Any]]], Any]


def compile_template(template: Any) -> Renderer:
    """``render`` with the template parsed once: the executor renders one template per subject, and a
    run can match 100,000 subjects. ``compile_template(t)(ctx) == render(t, ctx)`` for every t and ctx."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole:
            path = whole.group(1)
            return lambda ctx: _lookup(path, ctx)
        parts: list[tuple[bool, str]] = []  # (is_placeholder, literal text or path)
        pos = 0
        for m in PLACEHOLDER.finditer(template):
            if m.start() > pos:
                parts.append((False, template[pos:m.start()]))
            parts.append((True, m.group(1)))
            pos = m.end()
        if pos < len(template):
            parts.append((False, template[pos:]))
        if not any(p for p, _ in parts):
            return lambda ctx: template

        def render_string(ctx: Mapping[str, Mapping[str, Any]]) -> str:
            out = []
            for is_path, text in parts:
                if is_path:
                    v = _lookup(text, ctx)
                    out.append("" if v is None else str(v))
                else:
                    out.append(text)
            return "".join(out)
        return render_string
    if isinstance(template, Mapping):
        items = [(k, compile_template(v)) for k, v in template.items()]
        return lambda ctx: {k: f(ctx) for k, f in items}
    if isinstance(template, list):
        fs = [compile_template(v) for v in template]
        return lambda ctx: [f(ctx) for f in fs]
    return lambda ctx: template

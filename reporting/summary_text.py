"""The plain-text period summary the CLI prints."""

from __future__ import annotations

from typing import Any

from core.states import ITEM_OUTCOMES


def format_summary(rows: list[dict[str, Any]], date_from: str, date_to: str) -> str:
    lines = [f"Runs triggered {date_from} to {date_to} (UTC)", ""]
    head = f"{'automation':34} {'runs':>5} {'items':>6} {'invoked':>8} " + " ".join(f"{o:>17}" for o in ITEM_OUTCOMES)
    lines += [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['definition_id']:34} {r['runs']:>5} {r['items']:>6} {r['actions_invoked']:>8} "
                     + " ".join(f"{r['outcomes'].get(o, 0):>17}" for o in ITEM_OUTCOMES))
    lines.append("-" * len(head))
    lines.append(f"{'total':34} {sum(r['runs'] for r in rows):>5} {sum(r['items'] for r in rows):>6} "
                 f"{sum(r['actions_invoked'] for r in rows):>8} "
                 + " ".join(f"{sum(r['outcomes'].get(o, 0) for r in rows):>17}" for o in ITEM_OUTCOMES))
    return "\n".join(lines)

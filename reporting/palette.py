"""One colour per run status and per item outcome, used by every chart and badge in the app (and the
exported charts), so "failed" is the same red everywhere an auditor looks."""

from __future__ import annotations

STATUS_COLORS: dict[str, str] = {
    "pending": "#9aa5b1",
    "running": "#2f6fde",
    "completed": "#2e8540",
    "completed-with-failures": "#d9822b",
    "cancelled": "#6b7280",
    "failed": "#c62828",
}

OUTCOME_COLORS: dict[str, str] = {
    "succeeded": "#2e8540",
    "failed": "#c62828",
    "skipped": "#9aa5b1",
    "awaiting-approval": "#8e44ad",
    "idempotent-replay": "#1f8a9e",
    "pending": "#cbd2d9",
    "in-flight": "#2f6fde",
}

# Streamlit badge colours (st.badge / :color[...]) for the same meanings.
STATUS_BADGES: dict[str, str] = {
    "pending": "gray", "running": "blue", "completed": "green", "completed-with-failures": "orange",
    "cancelled": "gray", "failed": "red",
}
OUTCOME_BADGES: dict[str, str] = {
    "succeeded": "green", "failed": "red", "skipped": "gray", "awaiting-approval": "violet",
    "idempotent-replay": "blue", "pending": "gray", "in-flight": "blue",
}

STATUS_MARKS: dict[str, str] = {  # a text mark for tables, where colour alone must not carry meaning
    "completed": "✓", "completed-with-failures": "⚠", "failed": "✕", "cancelled": "⊘", "running": "▶",
    "pending": "…",
}

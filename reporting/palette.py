"""One colour per run status and per item outcome, used by every chart and badge in the app (and the
exported charts), so "failed" is the same red everywhere an auditor looks."""

from __future__ import annotations

from typing import Literal

from core.states import (
                         AWAITING_APPROVAL,
                         CANCELLED,
                         COMPLETED,
                         COMPLETED_WITH_FAILURES,
                         FAILED,
                         IDEMPOTENT_REPLAY,
                         IN_FLIGHT,
                         ITEM_FAILED,
                         ITEM_PENDING,
                         PENDING,
                         RUNNING,
                         SKIPPED,
                         SUCCEEDED,
)

STATUS_COLORS: dict[str, str] = {
    PENDING: "#9aa5b1",
    RUNNING: "#2f6fde",
    COMPLETED: "#2e8540",
    COMPLETED_WITH_FAILURES: "#d9822b",
    CANCELLED: "#6b7280",
    FAILED: "#c62828",
}

OUTCOME_COLORS: dict[str, str] = {
    SUCCEEDED: "#2e8540",
    ITEM_FAILED: "#c62828",
    SKIPPED: "#9aa5b1",
    AWAITING_APPROVAL: "#8e44ad",
    IDEMPOTENT_REPLAY: "#1f8a9e",
    ITEM_PENDING: "#cbd2d9",
    IN_FLIGHT: "#2f6fde",
}

# Streamlit badge colours (st.badge / :color[...]) for the same meanings.
BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]
STATUS_BADGES: dict[str, BadgeColor] = {
    PENDING: "gray", RUNNING: "blue", COMPLETED: "green", COMPLETED_WITH_FAILURES: "orange",
    CANCELLED: "gray", FAILED: "red",
}
OUTCOME_BADGES: dict[str, BadgeColor] = {
    SUCCEEDED: "green", ITEM_FAILED: "red", SKIPPED: "gray", AWAITING_APPROVAL: "violet",
    IDEMPOTENT_REPLAY: "blue", ITEM_PENDING: "gray", IN_FLIGHT: "blue",
}

STATUS_MARKS: dict[str, str] = {  # a text mark for tables, where colour alone must not carry meaning
    COMPLETED: "✓", COMPLETED_WITH_FAILURES: "⚠", FAILED: "✕", CANCELLED: "⊘", RUNNING: "▶",
    PENDING: "…",
}

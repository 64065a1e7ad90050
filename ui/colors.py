"""The app's colours come from ``reporting.palette``: the exported charts and the brief (built by the engine's
command line too) must use the very same colour for each status and outcome as the pages do."""

from reporting.palette import OUTCOME_BADGES, OUTCOME_COLORS, STATUS_BADGES, STATUS_COLORS, STATUS_MARKS

__all__ = ["OUTCOME_BADGES", "OUTCOME_COLORS", "STATUS_BADGES", "STATUS_COLORS", "STATUS_MARKS"]

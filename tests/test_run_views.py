"""The Runs and Run pages' shaping: which rows stand out, and the action breakdown chart.

Both are drawn on every view (the breakdown every 2 s on a running run's page, for every member on it), so
they were rebuilt to be cheap (see bench/RESULTS.md "Load"); these hold that they still say the same."""

from __future__ import annotations

import pandas as pd

from reporting.palette import OUTCOME_COLORS
from ui.run_views import KNOWN_OUTCOMES, breakdown_figure, highlight_attention


def test_runs_that_need_attention_stand_out_in_every_cell_and_only_they() -> None:
    frame = pd.DataFrame({"Run": ["r1", "r2", "r3", "r4"], "Subjects": [1, 2, 3, 4],
                          "Status": ["✕ failed", "⚠ completed-with-failures", "✓ completed", "running"]})
    styles = highlight_attention(frame)
    assert styles.shape == frame.shape and list(styles.columns) == list(frame.columns)
    assert set(styles.iloc[0]) == {"background-color: #fdecea"}
    assert set(styles.iloc[1]) == {"background-color: #fff4e5"}
    assert set(styles.iloc[2]) == set(styles.iloc[3]) == {""}
    assert "background-color" in frame.style.apply(highlight_attention, axis=None).to_html()


def test_the_breakdown_stacks_each_action_by_outcome_in_the_spec_order_and_colours() -> None:
    breakdown = [{"action": "findings.create", "outcome": "failed", "items": 18},
                 {"action": "findings.create", "outcome": "succeeded", "items": 590},
                 {"action": "evidence_requests.send", "outcome": "skipped", "items": 12},
                 {"action": "evidence_requests.send", "outcome": "succeeded", "items": 7}]
    fig = breakdown_figure(breakdown)
    names = [t.name for t in fig.data]
    assert names == [o for o in KNOWN_OUTCOMES if o in {"failed", "succeeded", "skipped"}]
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["succeeded"].y) == ["findings.create", "evidence_requests.send"]
    assert list(by_name["succeeded"].x) == [590, 7]
    assert all(t.orientation == "h" and t.marker.color == OUTCOME_COLORS[t.name] for t in fig.data)
    assert fig.layout.barmode == "stack" and fig.layout.height == 120 + 40 * 2
    assert fig.layout.legend.title.text == "Outcome" and fig.layout.xaxis.title.text == "Items"

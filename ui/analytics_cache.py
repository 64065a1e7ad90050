"""The analytics page's figures and charts, computed once per change of the workspace and shared.

Every view of the Quarterly analytics page, and every rerun (each widget touched, each export menu opened),
computed the period's analytics and built its six Plotly figures again: 56 ms and 76 ms at best on the demo
quarter, on a quiet machine (best of 5), 2–4× that on a busy one (cProfile of a warm page run: figures
0.31 s, analytics 0.23 s of 1.0 s). Nothing in them changes until the workspace does, or time passes.

So they are cached, keyed on:

- the workspace's change marker (``Workspace.change_marker``), which moves with every committed write: a
  new run, an item's outcome, a decision, an enabled or disabled automation are seen on the next view;
- the period and its automations;
- the minute: what the firing check expects (cron fires up to now) and how long open approvals have waited
  move with time alone, with no write at all — an engine that stopped firing must show as "fewer than
  expected" without anything else happening. Cron fires fall on whole minutes, so within one minute the
  expected counts are those computed at any instant of it.

A workspace whose marker is None (other processes write to it too) is never cached.

The cached ``AnalyticsView`` is one object shared by every session (``st.cache_resource``: copying the
figures, as ``st.cache_data`` would, costs as much as building them). Nothing may change it: the page only
reads it; ``st.plotly_chart`` serialises a copy of each figure (``Figure.to_dict``); exports build their own
figures from the analytics, through the audited path (``reporting.exports``), when a member clicks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core.periods import AnalyticsPeriod
from reporting import charts
from reporting.analytics import Analytics, build_analytics
from store.workspace import Workspace
from ui import analytics_charts


@dataclass(frozen=True)
class AnalyticsView:
    """A period's analytics, the Plotly figures of them (by ``charts.CHARTS`` name) and the page's Vega-Lite
    charts as specs (``analytics_charts.PAGE_CHARTS``; None: nothing to draw). Read only."""

    analytics: Analytics
    figures: Mapping[str, go.Figure]
    page_charts: Mapping[str, dict[str, Any] | None]


def build_view(ws: Workspace, period: AnalyticsPeriod, now: dt.datetime | None = None) -> AnalyticsView:
    """Computed now (or as of ``now``), uncached. The page charts are validated and turned into specs here,
    once (Altair's validation is most of what drawing one costs the server: ~25 ms for the weekly chart)."""
    a = build_analytics(ws, period, now)
    specs = {name: (c.to_dict() if (c := build(a)) is not None else None)
             for name, build in analytics_charts.PAGE_CHARTS.items()}
    return AnalyticsView(a, MappingProxyType({name: build(a) for name, (_, build) in charts.CHARTS.items()}),
                         MappingProxyType(specs))


def analytics_view(ws: Workspace, period: AnalyticsPeriod) -> AnalyticsView:
    """The period's analytics and figures as of the workspace's latest committed change and this minute."""
    marker = ws.change_marker()  # taken before reading: see Workspace.change_marker
    if marker is None:
        return build_view(ws, period)
    now = ws.now()
    return _cached_view(ws, marker, period, now.replace(second=0, microsecond=0), now)


@st.cache_resource(max_entries=32, show_spinner=False)
def _cached_view(_ws: Workspace, marker: str, period: AnalyticsPeriod, minute: dt.datetime,
                 _now: dt.datetime) -> AnalyticsView:
    """The key is (marker, period, minute): Streamlit leaves parameters named with a leading underscore out
    of it — the workspace (``marker`` names it) and the exact instant (the first view of the minute's)."""
    return build_view(_ws, period, _now)

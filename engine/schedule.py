"""Fire times of a cron trigger over an interval, computed by APScheduler's own trigger.

The demo's simulated quarter and the analytics' expected-fires check use this one function, so "how
often should it have fired" is answered the same way the engine's scheduler answers "when do I fire".
"""

from __future__ import annotations

import datetime as dt

from apscheduler.triggers.cron import CronTrigger

UTC = dt.timezone.utc


def fire_times(trigger: CronTrigger, start: dt.datetime, end: dt.datetime,
               limit: int | None = None) -> list[dt.datetime]:
    """Fire times in [start, end); at most ``limit`` of them (a cron of every minute over years is big)."""
    out: list[dt.datetime] = []
    t = trigger.get_next_fire_time(None, start)
    while t is not None and t < end and (limit is None or len(out) < limit):
        out.append(t.astimezone(UTC))
        t = trigger.get_next_fire_time(t, t + dt.timedelta(seconds=1))
    return out

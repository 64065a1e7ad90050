"""Schedules as people say them ("Mondays 06:00 UTC"), said as the engine really fires them."""

from __future__ import annotations

import datetime as dt

import pytest
from apscheduler.triggers.cron import CronTrigger

from core.schedule import describe_cron

UTC = dt.UTC


@pytest.mark.parametrize("cron,words", [
    ("0 6 * * mon", "Mondays 06:00 UTC"),
    ("0 7 1 * *", "the 1st of every month 07:00 UTC"),
    ("30 8 * * *", "every day 08:30 UTC"),
    ("0 9 * * mon-fri", "weekdays (Monday to Friday) 09:00 UTC"),
    ("0 6 * * mon,thu", "Mondays and Thursdays 06:00 UTC"),
    ("0 0 1 1,4,7,10 *", "the 1st of January, April, July and October 00:00 UTC"),
    ("0 12 2,22 * *", "the 2nd and 22nd of every month 12:00 UTC"),
    ("5 4 * * sun", "Sundays 04:05 UTC"),
    ("*/15 * * * *", "cron '*/15 * * * *' (UTC)"),  # not said plainly: named as it is
    ("0 6 15,L * *", "cron '0 6 15,L * *' (UTC)"),
])
def test_common_schedules_read_as_words(cron: str, words: str) -> None:
    assert describe_cron(cron) == words


@pytest.mark.parametrize("cron", ["0 6 * * 0", "0 6 * * 1", "0 6 * * 1-5", "0 6 * * mon", "0 6 * * fri,sun"])
def test_the_words_name_the_days_the_scheduler_fires_on(cron: str) -> None:
    """APScheduler 3 reads numeric weekdays with 0 = Monday: the words follow the engine, not classic cron."""
    trigger = CronTrigger.from_crontab(cron, timezone="UTC")
    t, fired = dt.datetime(2026, 12, 1, tzinfo=UTC), set()
    for _ in range(7):
        t = trigger.get_next_fire_time(None, t + dt.timedelta(seconds=1))
        fired.add(t.strftime("%A") + "s")
    said = describe_cron(cron)
    named = {w.strip(",") for w in said.replace(" and ", " ").split() if w.endswith("days") or w.endswith("days,")}
    if said.startswith("weekdays"):
        named = {"Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays"}
    assert named == fired, (cron, said, fired)

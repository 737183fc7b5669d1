"""The beat scheduler's pure parts: the scheduled time a tick executes (the slot key), and
redbeat's JSON round trip of every schedule in BEAT_SCHEDULE."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab, schedule

from beat_schedule import BEAT_SCHEDULE
from workers.app import app
from workers.beat import ScheduleDecoder, ScheduleEncoder, scheduled_time
from workers.schedules import krx_session_schedule

KST = ZoneInfo("Asia/Seoul")


def kst(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, us, tzinfo=KST)


def test_every_minute_crontab_slot_is_the_minute_of_the_tick():
    cron = crontab(minute="*", app=app)
    for second in (0, 1, 59):
        tick = kst(2026, 11, 20, 10, 7, second, 500_000)
        assert scheduled_time(cron, tick) == kst(2026, 11, 20, 10, 7).astimezone(dt.UTC)


def test_two_ticks_for_one_firing_share_the_slot_and_the_next_firing_does_not():
    cron = crontab(minute="*/5", app=app)
    late = scheduled_time(cron, kst(2026, 11, 20, 10, 9, 59))
    early = scheduled_time(cron, kst(2026, 11, 20, 10, 5, 0, 1))
    assert late == early == kst(2026, 11, 20, 10, 5).astimezone(dt.UTC)
    assert scheduled_time(cron, kst(2026, 11, 20, 10, 10)) != late


def test_weekly_crontab_slot_is_last_monday():
    cron = crontab(hour=7, minute=30, day_of_week="mon", app=app)
    # Thursday 2026-11-19: the latest firing was Monday 2026-11-16 07:30 KST.
    assert scheduled_time(cron, kst(2026, 11, 19, 12, 0)) == kst(2026, 11, 16, 7, 30).astimezone(
        dt.UTC
    )


def test_krx_session_slot_skips_weekends():
    sched = krx_session_schedule(15, 40, app=app)
    # Sunday 2026-11-22 → Friday 2026-11-20 15:40 KST.
    assert scheduled_time(sched, kst(2026, 11, 22, 9, 0)) == kst(2026, 11, 20, 15, 40).astimezone(
        dt.UTC
    )
    # Monday before 15:40 → still Friday's; after → Monday's.
    assert scheduled_time(sched, kst(2026, 11, 23, 15, 39)) == kst(2026, 11, 20, 15, 40).astimezone(
        dt.UTC
    )
    assert scheduled_time(sched, kst(2026, 11, 23, 15, 40, 2)) == kst(
        2026, 11, 23, 15, 40
    ).astimezone(dt.UTC)


def test_interval_slot_is_aligned_to_the_interval():
    every = schedule(run_every=dt.timedelta(seconds=30), app=app)
    a = scheduled_time(every, dt.datetime(2026, 11, 20, 1, 0, 31, tzinfo=dt.UTC))
    b = scheduled_time(every, dt.datetime(2026, 11, 20, 1, 0, 59, tzinfo=dt.UTC))
    assert a == b == dt.datetime(2026, 11, 20, 1, 0, 30, tzinfo=dt.UTC)


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="aware"):
        scheduled_time(crontab(app=app), dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("name", sorted(BEAT_SCHEDULE))
def test_every_schedule_survives_redbeats_json(name):
    original = BEAT_SCHEDULE[name]["schedule"]
    decoded = json.loads(json.dumps({"s": original}, cls=ScheduleEncoder), cls=ScheduleDecoder)
    assert decoded["s"] == original
    assert type(decoded["s"]) is type(original)

"""Beat fires KRX jobs on KRX sessions only: weekends and holidays (lunar ones included) send
nothing, and the next firing after a holiday lands on the next session."""

from __future__ import annotations

import datetime as dt
import pickle
from zoneinfo import ZoneInfo

import pytest

from beat_schedule import BEAT_SCHEDULE, KRX_DAILY_AT
from workers.app import app
from workers.schedules import krx_session_schedule

KST = ZoneInfo("Asia/Seoul")


def at(y: int, m: int, d: int, hh: int, mm: int) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=KST)


def schedule_at(now: dt.datetime) -> krx_session_schedule:
    s = krx_session_schedule(*KRX_DAILY_AT, nowfun=lambda: now)
    s.app = app
    return s


@pytest.mark.parametrize(
    ("last_run", "now", "due"),
    [
        (at(2026, 11, 19, 15, 40), at(2026, 11, 20, 15, 41), True),  # Friday after 15:40
        (at(2026, 11, 19, 15, 40), at(2026, 11, 20, 15, 39), False),  # Friday before 15:40
        (at(2026, 11, 20, 15, 40), at(2026, 11, 21, 15, 41), False),  # Saturday
        (at(2026, 9, 23, 15, 40), at(2026, 9, 24, 15, 41), False),  # 추석 eve (holiday)
        (at(2026, 9, 23, 15, 40), at(2026, 9, 25, 15, 41), False),  # 추석
        (at(2026, 9, 23, 15, 40), at(2026, 9, 28, 15, 41), True),  # next session
        (at(2026, 2, 13, 15, 40), at(2026, 2, 17, 16, 0), False),  # 설날
    ],
)
def test_krx_jobs_fire_on_sessions_only(last_run, now, due):
    assert schedule_at(now).is_due(last_run).is_due is due


def test_the_next_firing_after_chuseok_is_the_next_session():
    s = schedule_at(at(2026, 9, 23, 16, 0))
    assert s.next_fire(at(2026, 9, 23, 16, 0)) == at(2026, 9, 28, 15, 40)
    state = s.is_due(at(2026, 9, 23, 15, 40))
    assert state.is_due is False
    assert state.next == pytest.approx(
        (at(2026, 9, 28, 15, 40) - at(2026, 9, 23, 16, 0)).total_seconds()
    )


def test_once_fired_it_waits_for_the_next_session():
    now = at(2026, 11, 20, 15, 41)
    state = schedule_at(now).is_due(at(2026, 11, 19, 15, 40))
    assert state.is_due is True
    assert state.next == pytest.approx((at(2026, 11, 23, 15, 40) - now).total_seconds())


def test_the_schedule_survives_beat_persistence():
    s = krx_session_schedule(15, 40)
    assert pickle.loads(pickle.dumps(s)) == s


def test_entries():
    app.loader.import_default_modules()
    names = {e["task"] for e in BEAT_SCHEDULE.values()}
    assert names == {
        "quantbeat.pipeline.krx_close",
        "quantbeat.pipeline.krx_flows",
        "quantbeat.backtest.nightly",
        "quantbeat.collect.crypto_candles",
        "quantbeat.collect.universe",
        "quantbeat.ops.reap",
        "quantbeat.ops.reap_dead_workers",
    }
    for entry in BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks
        assert entry["options"]["expires"] > 0
    krx = [e for e in BEAT_SCHEDULE.values() if e["task"].endswith(("krx_close", "investor_flows"))]
    assert krx
    assert all(isinstance(e["schedule"], krx_session_schedule) for e in krx)


def test_a_last_run_in_utc_still_means_seoul_wall_clock_time():
    utc = dt.UTC
    s = schedule_at(at(2026, 11, 23, 15, 41))
    # 2026-11-20 06:40 UTC is 15:40 KST: the next firing is Monday 15:40 KST, not 15:40 UTC.
    assert s.next_fire(dt.datetime(2026, 11, 20, 6, 40, tzinfo=utc)) == at(2026, 11, 23, 15, 40)
    assert s.is_due(dt.datetime(2026, 11, 20, 6, 40, tzinfo=utc)).is_due is True

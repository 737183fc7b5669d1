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
        "quantbeat.crypto.volatility_check",
        "quantbeat.crypto.signal",
        "quantbeat.crypto.order_sync",
        "quantbeat.collect.universe",
        "quantbeat.ops.backup",
        "quantbeat.ops.pack_candles",
        "quantbeat.ops.reap",
        "quantbeat.ops.reap_dead_workers",
        "quantbeat.market.snapshot",
        "quantbeat.pipeline.closing_window",
        "quantbeat.track.update",
        "quantbeat.portfolio.update",
        "quantbeat.notify.dispatch",
        "quantbeat.notify.daily_summary",
        "quantbeat.notify.check_freshness",
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


def test_a_repeating_session_schedule_fires_through_the_session_on_sessions_only():
    s = krx_session_schedule(9, 0, every=10, until=(15, 30))
    s.app = app
    times = s.times()
    assert times[0] == dt.time(9, 0)
    assert times[1] == dt.time(9, 10)
    assert times[-1] == dt.time(15, 30)
    assert len(times) == 40  # 09:00 … 15:30 every 10 minutes
    # Friday 11:05 → 11:10 the same day; Friday 15:30 → Monday 09:00; 추석 skipped
    assert s.next_fire(at(2026, 11, 20, 11, 5)) == at(2026, 11, 20, 11, 10)
    assert s.next_fire(at(2026, 11, 20, 15, 30)) == at(2026, 11, 23, 9, 0)
    assert s.next_fire(at(2026, 9, 23, 16, 0)) == at(2026, 9, 28, 9, 0)
    # the latest firing at or before a moment: the beat slot of a tick
    assert s.latest_fire(at(2026, 11, 20, 11, 9)) == at(2026, 11, 20, 11, 0)
    assert s.latest_fire(at(2026, 11, 21, 12, 0)) == at(2026, 11, 20, 15, 30)  # Saturday
    assert s.latest_fire(at(2026, 11, 20, 8, 59)) == at(2026, 11, 19, 15, 30)
    assert pickle.loads(pickle.dumps(s)) == s
    assert s != krx_session_schedule(9, 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"every": 10}, "every and until go together"),
        ({"every": 0, "until": (15, 30)}, "every must be 1–1440 minutes"),
        ({"every": 10, "until": (8, 0)}, "must be a time of day at or after the start"),
    ],
)
def test_a_repeating_schedule_refuses_bad_bounds(kwargs, words):
    with pytest.raises(ValueError, match=words):
        krx_session_schedule(9, 0, **kwargs)

"""Trading calendars: weekday/holiday rules, session lists and session navigation."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest

from quant.calendar import (
    KRX_FIXED_HOLIDAYS,
    ContinuousCalendar,
    TradingCalendar,
    WeekdayCalendar,
    krx_approximate_calendar,
)
from quant.errors import ValidationError

KRX = krx_approximate_calendar()


def brute_sessions(cal: TradingCalendar, start: date, end: date) -> list[date]:
    out = []
    d = start
    while d <= end:
        if cal.is_session(d):
            out.append(d)
        d += timedelta(days=1)
    return out


# -- KRX fixed holidays --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (date(2024, 1, 1), "신정"),
        (date(2024, 3, 1), "삼일절"),
        (date(2024, 5, 1), "근로자의 날"),
        (date(2023, 5, 5), "어린이날"),
        (date(2023, 6, 6), "현충일"),
        (date(2023, 8, 15), "광복절"),
        (date(2023, 10, 3), "개천절"),
        (date(2023, 10, 9), "한글날"),
        (date(2023, 12, 25), "성탄절"),
        (date(2024, 12, 31), "year-end closing"),
        (date(2007, 7, 17), "제헌절 (until 2007)"),
    ],
)
def test_fixed_holidays_on_weekdays_are_not_sessions(day: date, why: str) -> None:
    assert day.weekday() < 5, f"test data: {day} ({why}) should be a weekday"
    assert day in KRX_FIXED_HOLIDAYS(day.year, day.year)
    assert not KRX.is_session(day), why


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (date(2012, 10, 9), "한글날 was a working day 1991-2012"),
        (date(2008, 7, 17), "제헌절 is no holiday from 2008"),
        (date(2024, 1, 2), "ordinary Tuesday"),
        (date(2023, 12, 29), "year-end rule for a weekend Dec 31 is not modelled"),
        (date(2024, 2, 9), "Seollal is not modelled (approximate calendar)"),
    ],
)
def test_working_days_are_sessions(day: date, why: str) -> None:
    assert KRX.is_session(day), why


def test_fixed_holiday_counts_per_year() -> None:
    assert len(KRX_FIXED_HOLIDAYS(2007, 2007)) == 10  # with 제헌절, without 한글날
    assert len(KRX_FIXED_HOLIDAYS(2012, 2012)) == 9  # neither
    assert len(KRX_FIXED_HOLIDAYS(2013, 2013)) == 10  # 한글날 back
    assert len(KRX_FIXED_HOLIDAYS(2000, 2040)) == 41 * 10 - 5  # 2008-12: neither


@pytest.mark.parametrize(
    ("year_from", "year_to", "field"),
    [(2025, 2024, "year_from"), (0, 2024, "year_from"), (2024, 10_000, "year_to")],
)
def test_fixed_holidays_reject_bad_years(year_from: int, year_to: int, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        KRX_FIXED_HOLIDAYS(year_from, year_to)
    assert info.value.field == field
    assert str(info.value.value) in str(info.value)


def test_krx_calendar_is_labelled_approximate_and_built_once() -> None:
    assert "approximate" in KRX.name
    assert krx_approximate_calendar() is KRX
    assert date(2000, 1, 3) not in KRX.holidays  # Monday
    assert date(2040, 12, 25) in KRX.holidays
    assert date(2041, 12, 25) not in KRX.holidays
    assert isinstance(KRX, TradingCalendar)


# -- weekends and session lists -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cal", [KRX, WeekdayCalendar(), WeekdayCalendar(holidays=[date(2024, 7, 3)])]
)
def test_weekends_are_never_sessions(cal: WeekdayCalendar) -> None:
    d = date(2023, 1, 1)
    for _ in range(800):
        if d.weekday() >= 5:
            assert not cal.is_session(d), d
        d += timedelta(days=1)


@pytest.mark.parametrize(
    "cal",
    [KRX, WeekdayCalendar(holidays=[date(2024, 7, 3), date(2024, 7, 6)]), ContinuousCalendar()],
    ids=["krx", "custom", "24/7"],
)
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2015, 1, 1), date(2025, 12, 31)),
        (date(2024, 7, 1), date(2024, 7, 7)),
        (date(2024, 7, 3), date(2024, 7, 3)),
        (date(2024, 7, 6), date(2024, 7, 6)),
    ],
)
def test_sessions_match_is_session(cal: TradingCalendar, start: date, end: date) -> None:
    got = cal.sessions(start, end)
    assert got == brute_sessions(cal, start, end)
    assert all(type(d) is date for d in got)
    assert got == sorted(set(got))


def test_sessions_examples() -> None:
    assert KRX.sessions(date(2024, 12, 28), date(2025, 1, 3)) == [
        date(2024, 12, 30),  # Monday; Dec 31 and Jan 1 closed
        date(2025, 1, 2),
        date(2025, 1, 3),
    ]
    assert KRX.sessions(date(2024, 5, 4), date(2024, 5, 5)) == []  # weekend
    custom = WeekdayCalendar(name="x", holidays=[date(2024, 7, 3)])
    assert custom.sessions(date(2024, 7, 1), date(2024, 7, 5)) == [
        date(2024, 7, 1),
        date(2024, 7, 2),
        date(2024, 7, 4),
        date(2024, 7, 5),
    ]
    assert len(ContinuousCalendar().sessions(date(2024, 1, 1), date(2024, 12, 31))) == 366


def test_a_year_of_krx_sessions() -> None:
    # 2025: 261 weekdays minus fixed holidays on weekdays (Jan 1, May 1, May 5, Jun 6, Aug 15,
    # Oct 3, Oct 9, Dec 25, Dec 31; Mar 1 is a Saturday).
    assert len(KRX.sessions(date(2025, 1, 1), date(2025, 12, 31))) == 261 - 9


@pytest.mark.parametrize("cal", [KRX, WeekdayCalendar(), ContinuousCalendar()])
def test_sessions_reject_reversed_range(cal: TradingCalendar) -> None:
    with pytest.raises(ValidationError, match="2024-02-01 is after end 2024-01-01") as info:
        cal.sessions(date(2024, 2, 1), date(2024, 1, 1))
    assert info.value.field == "start"


@pytest.mark.parametrize("cal", [KRX, ContinuousCalendar()])
def test_datetimes_are_rejected(cal: TradingCalendar) -> None:
    with pytest.raises(ValidationError, match="datetime"):
        cal.sessions(datetime(2024, 1, 1, 9), date(2024, 1, 5))
    with pytest.raises(ValidationError, match="datetime"):
        cal.previous_session(datetime(2024, 1, 1, 9))


def test_holidays_must_be_dates() -> None:
    with pytest.raises(ValidationError, match="holidays"):
        WeekdayCalendar(holidays=["2024-01-01"])  # type: ignore[list-item]


# -- previous_session / next_session ------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "previous", "following"),
    [
        (date(2024, 7, 3), date(2024, 7, 3), date(2024, 7, 4)),  # Wednesday session
        (date(2024, 7, 5), date(2024, 7, 5), date(2024, 7, 8)),  # Friday -> Monday
        (date(2024, 7, 6), date(2024, 7, 5), date(2024, 7, 8)),  # Saturday
        (date(2024, 7, 7), date(2024, 7, 5), date(2024, 7, 8)),  # Sunday
        (date(2024, 1, 1), date(2023, 12, 29), date(2024, 1, 2)),  # Monday holiday after a
        # weekend Dec 30/31
        (date(2024, 12, 31), date(2024, 12, 30), date(2025, 1, 2)),  # Dec 31 + Jan 1 closed
        (date(2024, 12, 30), date(2024, 12, 30), date(2025, 1, 2)),
        (date(2025, 10, 9), date(2025, 10, 8), date(2025, 10, 10)),  # 한글날 (Thursday)
        (date(2020, 5, 1), date(2020, 4, 30), date(2020, 5, 4)),  # Labour Day Friday
        (date(2020, 4, 30), date(2020, 4, 30), date(2020, 5, 4)),
    ],
)
def test_krx_previous_and_next_session(day: date, previous: date, following: date) -> None:
    assert KRX.previous_session(day) == previous
    assert KRX.next_session(day) == following
    assert KRX.is_session(previous)
    assert KRX.is_session(following)


def test_navigation_agrees_with_sessions_over_years() -> None:
    start, end = date(2019, 1, 1), date(2022, 12, 31)
    sessions = KRX.sessions(start, end)
    for before, after in itertools.pairwise(sessions):
        assert KRX.next_session(before) == after
        assert KRX.previous_session(after - timedelta(days=1)) == before


def test_continuous_calendar() -> None:
    cal = ContinuousCalendar()
    assert cal.name == "24/7"
    assert isinstance(cal, TradingCalendar)
    for d in (date(2024, 7, 6), date(2024, 7, 7), date(2024, 1, 1), date(2024, 12, 31)):
        assert cal.is_session(d)
        assert cal.previous_session(d) == d
        assert cal.next_session(d) == d + timedelta(days=1)
    with pytest.raises(ValidationError):
        cal.next_session(date.max)

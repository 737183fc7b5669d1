"""Trading calendars: which days an exchange holds a session.

Three pieces:

* :class:`TradingCalendar`, the protocol every calendar implements;
* :class:`WeekdayCalendar`, Monday–Friday minus a fixed set of holidays, with
  :func:`krx_approximate_calendar` as an *approximation* of the Korea Exchange (KRX);
* :class:`ContinuousCalendar`, where every day is a session (crypto trades 24/7).

All dates are naive :class:`datetime.date` values in the exchange's own calendar (KST for KRX).
A :class:`datetime.datetime` is rejected rather than silently truncated, because the date of a
time-zone-aware instant depends on the zone.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, runtime_checkable

import numpy as np

from quant.errors import ValidationError

__all__ = [
    "KRX_APPROXIMATE_YEARS",
    "KRX_FIXED_HOLIDAYS",
    "ContinuousCalendar",
    "SessionCalendar",
    "TradingCalendar",
    "WeekdayCalendar",
    "check_aware",
    "check_date",
    "check_range",
    "krx_approximate_calendar",
    "latest_closed_session",
    "xkrx_sessions",
]

_ONE_DAY = timedelta(days=1)

#: Years (inclusive) whose fixed-date holidays :func:`krx_approximate_calendar` knows.
KRX_APPROXIMATE_YEARS: tuple[int, int] = (2000, 2040)


@runtime_checkable
class TradingCalendar(Protocol):
    """The sessions of one exchange.

    ``name`` is a human-readable label that reports quote next to results. Every method takes and
    returns naive :class:`datetime.date` values.
    """

    name: str

    def is_session(self, d: date) -> bool:
        """True if the exchange holds a session on ``d``."""
        ...

    def sessions(self, start: date, end: date) -> list[date]:
        """Every session in ``[start, end]`` (both inclusive), ascending.

        Raises:
            quant.errors.ValidationError: ``start`` is after ``end``.
        """
        ...

    def previous_session(self, d: date) -> date:
        """The latest session on or before ``d`` (``d`` itself when it is a session)."""
        ...

    def next_session(self, d: date) -> date:
        """The earliest session strictly after ``d``."""
        ...


def check_date(value: object, field: str) -> date:
    """Return ``value`` if it is a plain :class:`date`, else raise :class:`ValidationError`."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationError(
            f"{field} must be a datetime.date (not a datetime or {type(value).__name__}): "
            f"{value!r}",
            field=field,
            value=value,
        )
    return value


def check_aware(value: object, field: str) -> datetime:
    """``value`` as a UTC datetime if it is timezone-aware, else :class:`ValidationError`
    naming ``field`` (a naive datetime's instant is ambiguous)."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{field} must be a timezone-aware datetime, got {value!r}", field=field, value=value
        )
    return value.astimezone(UTC)


def check_range(start: date, end: date) -> None:
    """Both plain dates and ``start <= end``, else :class:`ValidationError` naming the value."""
    check_date(start, "start")
    check_date(end, "end")
    if start > end:
        raise ValidationError(
            f"start {start.isoformat()} is after end {end.isoformat()}",
            field="start",
            value=start,
        )


class WeekdayCalendar:
    """Monday to Friday, minus the holidays given to the constructor.

    Holidays falling on a weekend are accepted and change nothing. The holiday set is frozen at
    construction; every query is answered from it (``sessions`` is vectorized with NumPy's
    business-day functions, so ten years take well under a millisecond).
    """

    def __init__(self, name: str = "Mon-Fri", holidays: Iterable[date] = ()) -> None:
        """Build the calendar.

        Raises:
            quant.errors.ValidationError: a holiday is not a plain :class:`datetime.date`.
        """
        self.name = name
        checked = frozenset(check_date(h, "holidays") for h in holidays)
        self._holidays = checked
        self._busdaycal = np.busdaycalendar(
            weekmask="1111100",
            holidays=np.array(sorted(checked), dtype="datetime64[D]"),
        )

    @property
    def holidays(self) -> frozenset[date]:
        """The holiday set given at construction (weekend entries included)."""
        return self._holidays

    def __repr__(self) -> str:
        return f"WeekdayCalendar(name={self.name!r}, holidays=<{len(self._holidays)} dates>)"

    def is_session(self, d: date) -> bool:
        """True if ``d`` is a Monday–Friday that is not a holiday.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date.
        """
        check_date(d, "d")
        return d.weekday() < 5 and d not in self._holidays

    def sessions(self, start: date, end: date) -> list[date]:
        """Every session in ``[start, end]``, ascending.

        Raises:
            quant.errors.ValidationError: ``start`` is after ``end``, or either is not a date.
        """
        check_range(start, end)
        days = np.arange(
            np.datetime64(start, "D"), np.datetime64(end, "D") + np.timedelta64(1, "D")
        )
        chosen = days[np.is_busday(days, busdaycal=self._busdaycal)]
        return [d.item() for d in chosen]

    def previous_session(self, d: date) -> date:
        """The latest session on or before ``d``.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date.
        """
        check_date(d, "d")
        while not self.is_session(d):
            d -= _ONE_DAY
        return d

    def next_session(self, d: date) -> date:
        """The earliest session strictly after ``d``.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date.
        """
        check_date(d, "d")
        d += _ONE_DAY
        while not self.is_session(d):
            d += _ONE_DAY
        return d


class ContinuousCalendar:
    """Every calendar day is a session: markets that trade 24/7 (Upbit and other crypto venues).

    For Upbit a "day" is the daily candle that starts at 00:00 UTC (09:00 KST).
    """

    def __init__(self, name: str = "24/7") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ContinuousCalendar(name={self.name!r})"

    def is_session(self, d: date) -> bool:
        """Always true.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date.
        """
        check_date(d, "d")
        return True

    def sessions(self, start: date, end: date) -> list[date]:
        """Every day in ``[start, end]``, ascending.

        Raises:
            quant.errors.ValidationError: ``start`` is after ``end``, or either is not a date.
        """
        check_range(start, end)
        first = start.toordinal()
        return [date.fromordinal(o) for o in range(first, end.toordinal() + 1)]

    def previous_session(self, d: date) -> date:
        """``d`` itself.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date.
        """
        return check_date(d, "d")

    def next_session(self, d: date) -> date:
        """The day after ``d``.

        Raises:
            quant.errors.ValidationError: ``d`` is not a plain date or is ``date.max``.
        """
        check_date(d, "d")
        if d == date.max:
            raise ValidationError("there is no day after date.max", field="d", value=d)
        return d + _ONE_DAY


# Fixed-date (solar calendar) days on which KRX does not trade, as (month, day, first year,
# last year). 한글날 (Oct 9) was not a public holiday from 1991 to 2012, and 제헌절 (Jul 17) stopped
# being one after 2007; KRX traded on those days in the years outside the ranges below.
_KRX_FIXED_DAYS: tuple[tuple[int, int, int, int], ...] = (
    (1, 1, 1, 9999),  # 신정 (New Year's Day)
    (3, 1, 1, 9999),  # 삼일절 (Independence Movement Day)
    (5, 1, 1, 9999),  # 근로자의 날 (Labour Day; KRX is closed)
    (5, 5, 1, 9999),  # 어린이날 (Children's Day)
    (6, 6, 1, 9999),  # 현충일 (Memorial Day)
    (7, 17, 1, 2007),  # 제헌절 (Constitution Day; a holiday until 2007)
    (8, 15, 1, 9999),  # 광복절 (Liberation Day)
    (10, 3, 1, 9999),  # 개천절 (National Foundation Day)
    (10, 9, 2013, 9999),  # 한글날 (Hangul Day; a holiday again from 2013)
    (12, 25, 1, 9999),  # 성탄절 (Christmas)
    (12, 31, 1, 9999),  # 연말 휴장일 (year-end closing day)
)


def KRX_FIXED_HOLIDAYS(year_from: int, year_to: int) -> frozenset[date]:  # noqa: N802
    """Fixed-date KRX closures in the years ``year_from`` to ``year_to`` (inclusive).

    Contains Jan 1, Mar 1, May 1 (근로자의 날, KRX closed), May 5, Jun 6, Aug 15, Oct 3, Oct 9
    (from 2013; it was a working day 1991–2012), Jul 17 (only until 2007), Dec 25 and Dec 31 (the
    year-end closing day), whatever weekday they fall on.

    NOT included, so a calendar built from this set wrongly treats those days as sessions:

    * lunar holidays: 설날 (Seollal, three days), 추석 (Chuseok, three days), 부처님오신날;
    * substitute holidays (대체공휴일) when a holiday falls on a weekend or another holiday;
    * election days and other one-off closures;
    * the year-end rule when Dec 31 is a weekend (KRX then closes the last weekday of December
      instead, e.g. 2023-12-29 was not a session).

    Raises:
        quant.errors.ValidationError: ``year_from`` is after ``year_to`` or a year lies outside
            1..9999.
    """
    for field, year in (("year_from", year_from), ("year_to", year_to)):
        if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
            raise ValidationError(
                f"{field} must be an integer year in 1..9999, got {year!r}",
                field=field,
                value=year,
            )
    if year_from > year_to:
        raise ValidationError(
            f"year_from {year_from} is after year_to {year_to}", field="year_from", value=year_from
        )
    return frozenset(
        date(year, month, day)
        for year in range(year_from, year_to + 1)
        for month, day, first, last in _KRX_FIXED_DAYS
        if first <= year <= last
    )


@functools.cache
def krx_approximate_calendar() -> WeekdayCalendar:
    """An APPROXIMATE KRX calendar: weekdays minus :func:`KRX_FIXED_HOLIDAYS` for 2000–2040.

    Lunar holidays (설날, 추석, 부처님오신날), substitute holidays and one-off closures are
    missing, so roughly 5–8 days a year that KRX is closed count as sessions here; outside
    2000–2040 only weekends are excluded. Good enough for the simulated market and for
    scheduling; a later issue replaces it with ``exchange_calendars``' ``XKRX`` calendar.

    The same instance is returned on every call (the holiday set is built once).
    """
    first, last = KRX_APPROXIMATE_YEARS
    return WeekdayCalendar(
        name="KRX (approximate: weekdays minus fixed-date holidays)",
        holidays=KRX_FIXED_HOLIDAYS(first, last),
    )


#: KRX regular session close (KST); the closing auction ends at 15:30.
KRX_CLOSE = time(15, 30)


def latest_closed_session(
    calendar: TradingCalendar, now: datetime, close: time = KRX_CLOSE
) -> date:
    """The most recent session whose close has passed at ``now``.

    ``now`` must be in the exchange's local time (e.g. ``Asia/Seoul`` for KRX); if today is a
    session that has not closed yet, the previous session is returned.
    """
    today = now.date()
    if calendar.is_session(today) and now.time() >= close:
        return today
    return calendar.previous_session(today - _ONE_DAY)


class SessionCalendar:
    """A calendar given as its explicit list of sessions between ``first`` and ``last``
    (inclusive) — for example the Korea Exchange's, computed by exchange_calendars' ``XKRX``
    (lunar holidays, substitute holidays and one-off closures included).

    Raises :class:`~quant.errors.ValidationError` for a date outside ``[first, last]``: the
    calendar does not know it, and guessing would silently mislabel sessions.
    """

    def __init__(self, name: str, sessions: Iterable[date], first: date, last: date) -> None:
        self.name = name
        self._first = check_date(first, "first")
        self._last = check_date(last, "last")
        ordered = sorted(set(sessions))
        self._sessions = ordered
        self._set = frozenset(ordered)
        if ordered and (ordered[0] < first or ordered[-1] > last):
            raise ValidationError(f"{name}: sessions fall outside [{first}, {last}]")

    def __repr__(self) -> str:
        return f"SessionCalendar({self.name!r}, {len(self._sessions)} sessions)"

    @property
    def bounds(self) -> tuple[date, date]:
        return self._first, self._last

    def _known(self, d: date, field: str = "date") -> date:
        d = check_date(d, field)
        if not self._first <= d <= self._last:
            raise ValidationError(
                f"{field} {d} is outside the {self.name} calendar ({self._first}..{self._last})",
                field=field,
                value=d,
            )
        return d

    def is_session(self, d: date) -> bool:
        return self._known(d) in self._set

    def sessions(self, start: date, end: date) -> list[date]:
        start, end = self._known(start, "start"), self._known(end, "end")
        check_range(start, end)
        lo = bisect.bisect_left(self._sessions, start)
        hi = bisect.bisect_right(self._sessions, end)
        return self._sessions[lo:hi]

    def previous_session(self, d: date) -> date:
        i = bisect.bisect_right(self._sessions, self._known(d)) - 1
        if i < 0:
            raise ValidationError(f"no {self.name} session on or before {d}", value=d)
        return self._sessions[i]

    def next_session(self, d: date) -> date:
        i = bisect.bisect_right(self._sessions, self._known(d))
        if i >= len(self._sessions):
            raise ValidationError(f"no {self.name} session after {d}", value=d)
        return self._sessions[i]


def xkrx_sessions(first: date, last: date) -> list[date]:
    """The Korea Exchange's sessions in ``[first, last]`` from exchange_calendars' ``XKRX``.

    Slow (several seconds: the library builds its lunar-holiday rules); callers cache the
    result (see ``quantbeat.infra.sources.krx_calendar``).
    """
    import exchange_calendars as xcals  # noqa: PLC0415 (slow to load; callers cache)

    calendar = xcals.get_calendar("XKRX", start=first.isoformat(), end=last.isoformat())
    return [ts.date() for ts in calendar.sessions]

"""Beat schedules that know the KRX trading calendar.

A crontab cannot know lunar or substitute holidays. :class:`krx_session_schedule` fires at a
wall-clock time (in the app's timezone, Asia/Seoul) on KRX sessions only, skipping weekends
and every holiday the XKRX calendar knows, so beat sends nothing on those days.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery.schedules import BaseSchedule, schedstate

from quantbeat.infra.sources import krx_calendar


class krx_session_schedule(BaseSchedule):  # type: ignore[misc]  # noqa: N801 (celery's style)
    """Due at ``hour:minute`` local time on every KRX session day — and, with ``every``
    (minutes), again every ``every`` minutes up to ``until`` (``(hour, minute)``, inclusive):
    ``krx_session_schedule(9, 0, every=10, until=(15, 30))`` fires at 09:00, 09:10, …, 15:30.
    """

    def __init__(
        self,
        hour: int,
        minute: int,
        nowfun: Any = None,
        app: Any = None,
        every: int | None = None,
        until: tuple[int, int] | None = None,
    ) -> None:
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"not a time of day: {hour:02d}:{minute:02d}")
        if (every is None) != (until is None):
            raise ValueError("every and until go together")
        if every is not None and until is not None:
            if not 1 <= every <= 24 * 60:
                raise ValueError(f"every must be 1–1440 minutes, got {every}")
            if not (0 <= until[0] < 24 and 0 <= until[1] < 60) or until < (hour, minute):
                raise ValueError(f"until {until} must be a time of day at or after the start")
        self.hour = hour
        self.minute = minute
        self.every = every
        self.until = until
        super().__init__(nowfun=nowfun, app=app)

    def __repr__(self) -> str:
        if self.every is None or self.until is None:
            return f"<krx_session_schedule: {self.hour:02d}:{self.minute:02d} on KRX sessions>"
        return (
            f"<krx_session_schedule: {self.hour:02d}:{self.minute:02d}–"
            f"{self.until[0]:02d}:{self.until[1]:02d} every {self.every} min on KRX sessions>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.hour, self.minute, self.nowfun, None, self.every, self.until))

    def _key(self) -> tuple[Any, ...]:
        return (self.hour, self.minute, self.every, self.until)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, krx_session_schedule) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def times(self) -> list[dt.time]:
        """The firing times of a session day, in order."""
        first = self.hour * 60 + self.minute
        if self.every is None or self.until is None:
            return [dt.time(self.hour, self.minute)]
        last = self.until[0] * 60 + self.until[1]
        return [dt.time(m // 60, m % 60) for m in range(first, last + 1, self.every)]

    def _local(self, moment: dt.datetime) -> dt.datetime:
        # Always the app's zone (Asia/Seoul), whatever zone beat hands us: with enable_utc
        # Celery's to_local() returns its input unchanged.
        local: dt.datetime = self.maybe_make_aware(moment).astimezone(self.tz)
        return local

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first firing time strictly after ``after`` (aware), in the app's timezone."""
        local = self._local(after)
        calendar = krx_calendar()
        day = local.date()
        for _ in range(400):
            if calendar.is_session(day):
                for at in self.times():
                    candidate = dt.datetime.combine(day, at, tzinfo=local.tzinfo)
                    if candidate > local:
                        return candidate
            day += dt.timedelta(days=1)
        raise ValueError(f"no KRX session within 400 days after {local.date()}")

    def latest_fire(self, at: dt.datetime) -> dt.datetime:
        """The latest firing time at or before ``at`` (aware), in the app's timezone (looking
        back at most 60 days; the start of the day 60 days back when none)."""
        local = self._local(at)
        calendar = krx_calendar()
        day = local.date()
        for _ in range(60):
            if calendar.is_session(day):
                for time_of_day in reversed(self.times()):
                    candidate = dt.datetime.combine(day, time_of_day, tzinfo=local.tzinfo)
                    if candidate <= local:
                        return candidate
            day -= dt.timedelta(days=1)
        return dt.datetime.combine(day, self.times()[0], tzinfo=local.tzinfo)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        now: dt.datetime = self.maybe_make_aware(self.now()).astimezone(self.tz)
        return self.next_fire(last_run_at) - now

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """Due when the first firing time after the last run has passed; the next check is
        at the following firing time."""
        now: dt.datetime = self.maybe_make_aware(self.now()).astimezone(self.tz)
        if self.next_fire(last_run_at) <= now:
            return schedstate(True, (self.next_fire(now) - now).total_seconds())
        return schedstate(False, (self.next_fire(last_run_at) - now).total_seconds())

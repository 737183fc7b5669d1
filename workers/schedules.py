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
    """Due at ``hour:minute`` local time on every KRX session day."""

    def __init__(self, hour: int, minute: int, nowfun: Any = None, app: Any = None) -> None:
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"not a time of day: {hour:02d}:{minute:02d}")
        self.hour = hour
        self.minute = minute
        super().__init__(nowfun=nowfun, app=app)

    def __repr__(self) -> str:
        return f"<krx_session_schedule: {self.hour:02d}:{self.minute:02d} on KRX sessions>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.hour, self.minute, self.nowfun))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, krx_session_schedule) and (other.hour, other.minute) == (
            self.hour,
            self.minute,
        )

    def __hash__(self) -> int:
        return hash((self.hour, self.minute))

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first firing time strictly after ``after`` (aware), in the app's timezone."""

        # Always the app's zone (Asia/Seoul), whatever zone beat hands us: with enable_utc
        # Celery's to_local() returns its input unchanged.
        local: dt.datetime = self.maybe_make_aware(after).astimezone(self.tz)
        candidate = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if candidate <= local:
            candidate += dt.timedelta(days=1)
        calendar = krx_calendar()
        while not calendar.is_session(candidate.date()):
            candidate += dt.timedelta(days=1)
        return candidate

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

"""The beat scheduler: celery-redbeat plus two guards against running a job twice.

1. **One active beat.** :class:`QuantbeatScheduler` is redbeat's scheduler: the schedule and
   each entry's last run live in Redis, and a Redis lock (``QUANTBEAT_BEAT_LOCK_TIMEOUT``)
   lets one beat tick at a time. A second beat blocks at start-up until the lock is free, so
   it is a hot standby that takes over when the active one dies.
2. **One execution per scheduled time.** Every message beat sends carries two headers: the
   entry's name and the time it was scheduled for (:func:`scheduled_time`: the schedule's
   latest firing time at or before the tick, so two beats ticking for the same firing compute
   the same value). The task claims ``(entry, scheduled_for)`` in PostgreSQL
   (``beat_slots``, unique) before running; a second message for the same slot — a beat
   whose lock was lost, a duplicated tick, a replayed message — finds it taken and finishes
   as ``duplicate`` without running (:mod:`workers.base`).

It also writes the time of every tick to Redis (``quantbeat health`` reports its age), and
skips entries switched off in the stored settings (``schedule.<entry>.enabled = false``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import structlog
from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule
from redbeat import decoder as _redbeat_decoder
from redbeat import schedulers as _redbeat_schedulers
from redbeat.schedulers import RedBeatScheduler, get_redis

from quantbeat.infra.keys import BEAT_TICK_KEY
from quantbeat.services.settings_store import schedule_enabled
from workers.base import BEAT_ENTRY_HEADER, BEAT_SLOT_HEADER
from workers.schedules import krx_session_schedule

log = structlog.get_logger("quantbeat.beat")

__all__ = ["BEAT_ENTRY_HEADER", "BEAT_SLOT_HEADER", "QuantbeatScheduler", "scheduled_time"]

#: How far back :func:`scheduled_time` looks for a crontab's latest firing (minutes).
_CRONTAB_LOOKBACK_MINUTES = 31 * 24 * 60


def _crontab_matches(cron: Any, local: dt.datetime) -> bool:
    # celery's day_of_week counts from Sunday = 0; isoweekday() from Monday = 1 to Sunday = 7.
    return (
        local.minute in cron.minute
        and local.hour in cron.hour
        and local.isoweekday() % 7 in cron.day_of_week
        and local.day in cron.day_of_month
        and local.month in cron.month_of_year
    )


def scheduled_time(schedule: Any, now: dt.datetime) -> dt.datetime:
    """The firing time of ``schedule`` that a tick at ``now`` (aware) executes, in UTC.

    * :class:`~workers.schedules.krx_session_schedule` and ``crontab``: the latest firing time
      at or before ``now`` (crontabs are searched back minute by minute, at most 31 days);
    * a fixed interval (``schedule(run_every=...)``): ``now`` rounded down to a multiple of
      the interval since the epoch, so two ticks within one interval share it;
    * anything else: ``now`` rounded down to the second.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("scheduled_time needs an aware datetime")
    if isinstance(schedule, krx_session_schedule):
        return schedule.latest_fire(now).astimezone(dt.UTC)
    if isinstance(schedule, crontab):
        local = now.astimezone(schedule.tz).replace(second=0, microsecond=0)
        for _ in range(_CRONTAB_LOOKBACK_MINUTES):
            if _crontab_matches(schedule, local):
                return local.astimezone(dt.UTC)
            local -= dt.timedelta(minutes=1)
        return now.astimezone(dt.UTC).replace(second=0, microsecond=0)
    if isinstance(schedule, interval_schedule):
        step = schedule.run_every.total_seconds()
        if step >= 1:
            epoch = now.timestamp()
            return dt.datetime.fromtimestamp(epoch - epoch % step, dt.UTC)
    return now.astimezone(dt.UTC).replace(microsecond=0)


class ScheduleEncoder(_redbeat_decoder.RedBeatJSONEncoder):  # type: ignore[misc]
    """redbeat's JSON encoder, plus :class:`~workers.schedules.krx_session_schedule`."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, krx_session_schedule):
            return {
                "__type__": "krx_session",
                "hour": obj.hour,
                "minute": obj.minute,
                "every": obj.every,
                "until": list(obj.until) if obj.until else None,
            }
        return super().default(obj)


class ScheduleDecoder(_redbeat_decoder.RedBeatJSONDecoder):  # type: ignore[misc]
    """redbeat's JSON decoder, plus :class:`~workers.schedules.krx_session_schedule`."""

    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == "krx_session":
            until = d.get("until")
            return krx_session_schedule(
                int(d["hour"]),
                int(d["minute"]),
                every=None if d.get("every") is None else int(d["every"]),
                until=None if until is None else (int(until[0]), int(until[1])),
            )
        return super().dict_to_object(d)


# redbeat stores entry definitions as JSON through these two module-level names; it knows
# celery's own schedules only, so the KRX session schedule is taught to it here.
_redbeat_schedulers.RedBeatJSONEncoder = ScheduleEncoder
_redbeat_schedulers.RedBeatJSONDecoder = ScheduleDecoder


class QuantbeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler with slot headers, schedule switches and a recorded tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._record_tick()
        interval: float = super().tick(*args, **kwargs)
        return interval

    def _record_tick(self) -> None:
        try:
            get_redis(self.app).set(BEAT_TICK_KEY, f"{time.time():.3f}")
        except Exception as exc:  # health reports a stale tick; the schedule still runs
            log.warning("beat.tick_not_recorded", error=f"{type(exc).__name__}: {exc}")

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if not _enabled(entry.name):
            if advance:
                self.reserve(entry)  # counts as run: not due again until its next firing
            log.info("beat.entry_disabled", entry=entry.name, task=entry.task)
            return None
        slot = scheduled_time(entry.schedule, self.app.now())
        headers = dict(entry.options.get("headers") or {})
        headers[BEAT_ENTRY_HEADER] = entry.name
        headers[BEAT_SLOT_HEADER] = slot.isoformat()
        entry.options = {**entry.options, "headers": headers}
        log.info("beat.send", entry=entry.name, task=entry.task, scheduled_for=slot.isoformat())
        return super().apply_async(entry, producer, advance, **kwargs)


def _enabled(entry: str) -> bool:
    """The entry's stored switch; an unreadable store leaves it enabled (logged): the slot key
    still prevents duplicates, while skipping would silently lose the job."""
    try:
        return schedule_enabled(entry)
    except Exception as exc:
        log.warning("beat.switch_unreadable", entry=entry, error=f"{type(exc).__name__}: {exc}")
        return True

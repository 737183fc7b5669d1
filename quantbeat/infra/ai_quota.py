"""The Gemini quota, enforced across every ai worker on every host.

Google limits a *project*: requests per minute and per day (the day resets at midnight
Pacific). :class:`AiLimiter` keeps both in Redis (in-process for ``memory://``):

* **per minute** — the shared pacer of :mod:`quantbeat.infra.ratelimit`, at ``rpm / 60`` grants per
  second: grants are spaced ``60 / rpm`` seconds apart, so no minute ever holds more than
  ``rpm`` of them;
* **per day** — a counter per Pacific day; a grant beyond ``rpd`` is refused with
  :class:`QuotaExhausted` (``retry_after`` = seconds to the reset);
* **cooldown** — after a 429/503/504 every worker stops calling until it ends (the
  ``Retry-After`` the API sent, else ``QUANTBEAT_AI_COOLDOWN``); a worker that reserved a slot
  before the cooldown began checks again after waiting for it, so nothing is sent during one.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any
from zoneinfo import ZoneInfo

import redis

from quant.errors import RateLimited
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.ratelimit import LocalRateLimiter, RedisRateLimiter, WaitTooLong

PACIFIC = ZoneInfo("America/Los_Angeles")
PROVIDER = "gemini"


class QuotaExhausted(RateLimited):
    """The project's requests-per-day quota is used up until midnight Pacific."""


def pacific_day(now: dt.datetime | None = None) -> dt.date:
    """The Pacific date Google's daily quota counts in."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(PACIFIC).date()


def seconds_to_reset(now: dt.datetime | None = None) -> float:
    """Seconds until the next midnight Pacific."""
    current = (now or dt.datetime.now(dt.UTC)).astimezone(PACIFIC)
    tomorrow = dt.datetime.combine(current.date() + dt.timedelta(days=1), dt.time(), PACIFIC)
    return max(1.0, (tomorrow - current).total_seconds())


class AiLimiter:
    """``acquire()`` before every Gemini request; ``cooldown()`` after a throttling answer.

    Raises (from :meth:`acquire`):
    :class:`quantbeat.infra.ratelimit.WaitTooLong` (the minute's slots
    are taken further ahead than ``max_wait``, or a cooldown is running) and
    :class:`QuotaExhausted` (the day's quota is used); both carry ``retry_after``.
    """

    def __init__(
        self,
        *,
        rpm: int,
        rpd: int,
        redis_client: Any | None,
        max_wait: float = 10.0,
        prefix: str = "quantbeat:ai",
    ) -> None:
        self.rpm = rpm
        self.rpd = rpd
        self._client = redis_client
        self._prefix = prefix
        self._pacer: RedisRateLimiter | LocalRateLimiter
        if redis_client is None:
            self._pacer = LocalRateLimiter(PROVIDER, rpm / 60.0, max_wait=max_wait)
        else:
            self._pacer = RedisRateLimiter(
                redis_client, PROVIDER, rpm / 60.0, max_wait=max_wait, prefix=prefix
            )
        self._lock = threading.Lock()
        self._local_counts: dict[dt.date, int] = {}
        self._local_cooldown_until = 0.0

    # -- the day's counter ----------------------------------------------------------------
    def _count_key(self, day: dt.date) -> str:
        return f"{self._prefix}:{PROVIDER}:rpd:{day.isoformat()}"

    def _incr(self, day: dt.date) -> int:
        if self._client is None:
            with self._lock:
                self._local_counts[day] = self._local_counts.get(day, 0) + 1
                return self._local_counts[day]
        key = self._count_key(day)
        pipe = self._client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 3 * 86_400)
        value, _ = pipe.execute()
        return int(value)

    def _decr(self, day: dt.date) -> None:
        if self._client is None:
            with self._lock:
                self._local_counts[day] -= 1
            return
        self._client.decr(self._count_key(day))

    def used_today(self) -> int:
        """Requests granted in the current Pacific day."""
        day = pacific_day()
        if self._client is None:
            with self._lock:
                return self._local_counts.get(day, 0)
        raw = self._client.get(self._count_key(day))
        return int(raw) if raw is not None else 0

    # -- grants ---------------------------------------------------------------------------
    def acquire(self) -> None:
        """Wait for this worker's turn (at most ``max_wait``), then count it in the day's
        quota. Raises as the class docstring says."""
        self._pacer.acquire()
        # A cooldown may have begun while this worker waited for its reserved slot.
        left = self.cooldown_left()
        if left > 0:
            raise WaitTooLong(f"{PROVIDER}: cooling down for {left:.1f} s", retry_after=left)
        day = pacific_day()
        if self._incr(day) > self.rpd:
            self._decr(day)
            wait = seconds_to_reset()
            raise QuotaExhausted(
                f"{PROVIDER}: the daily quota of {self.rpd} requests is used up "
                f"(resets at midnight Pacific, in {wait / 3600:.1f} h)",
                retry_after=wait,
            )

    def cooldown(self, seconds: float) -> None:
        """Stop every worker from calling Gemini for ``seconds`` (never shortens one)."""
        if self._client is None:
            with self._lock:
                self._local_cooldown_until = max(
                    self._local_cooldown_until, time.monotonic() + seconds
                )
            self._pacer.cooldown(seconds)
            return
        self._pacer.cooldown(seconds)

    def cooldown_left(self) -> float:
        """Seconds of shared cooldown left (0 when none)."""
        if self._client is None:
            with self._lock:
                return max(0.0, self._local_cooldown_until - time.monotonic())
        assert isinstance(self._pacer, RedisRateLimiter)
        return self._pacer.cooldown_left()


_limiters: dict[tuple[str, int, int], AiLimiter] = {}
_limiters_lock = threading.Lock()


def ai_limiter(redis_url: str, *, rpm: int, rpd: int, max_wait: float = 10.0) -> AiLimiter:
    """The process-wide limiter for these settings (in-process for ``memory://``)."""
    key = (redis_url, rpm, rpd)
    with _limiters_lock:
        found = _limiters.get(key)
        if found is None:
            client = None
            if not redis_url.startswith("memory://"):
                client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
            found = AiLimiter(rpm=rpm, rpd=rpd, redis_client=client, max_wait=max_wait)
            _limiters[key] = found
        return found


@after_fork
def forget_ai_limiters() -> None:
    """Drop cached clients (after fork)."""
    with _limiters_lock:
        _limiters.clear()

"""Global rate limits shared by every worker on every host, kept in Redis.

Celery's ``rate_limit`` is per worker process; a provider's limit is per account or per IP.
:class:`RedisRateLimiter` paces calls to one provider across the whole deployment:

* a Lua script, atomic in Redis and timed by Redis' own clock (``TIME``, so hosts' clocks do
  not matter), hands out grants at least ``1 / rate`` seconds apart (a GCRA-style pacer with
  a burst of one): no window of one second ever holds more than ``rate`` grants;
* a caller that would have to wait longer than ``max_wait`` gets
  :class:`quant.errors.RateLimited` with ``retry_after`` instead, so a Celery retry frees the
  worker slot rather than sleeping in it;
* :meth:`cooldown` (after a 429 with ``Retry-After``, say) stops every worker from calling the
  provider until it ends. A caller that reserved a slot before the cooldown began checks
  again after waiting for it, so no call leaves during a cooldown (only one already on its
  way when the provider answered can still arrive).

:class:`LocalRateLimiter` gives the same contract inside one process (the embedded run).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from quant.errors import RateLimited, ValidationError
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.metrics import record_rate_limit_wait

# KEYS[1] = pacer key, KEYS[2] = cooldown key; ARGV[1] = interval (s), ARGV[2] = max wait (s).
# Returns the wait in seconds as a string: "0" means granted now; a positive wait up to
# max_wait is a reservation (the caller sleeps that long, then calls); a wait above max_wait
# reserves nothing; a negative value is a cooldown (nothing reserved, -value seconds left).
# The reservation keeps grants spaced by at least `interval`.
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cooldown_ms = redis.call('PTTL', KEYS[2])
if cooldown_ms > 0 then
  return tostring(-cooldown_ms / 1000)  -- negative: cooling down for that many seconds
end
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, next_free)
local wait = start - now
if wait > max_wait then
  return tostring(wait)
end
local ttl_ms = math.ceil((wait + interval) * 1000) + 1000
redis.call('SET', KEYS[1], tostring(start + interval), 'PX', ttl_ms)
return tostring(wait)
"""


# KEYS[1] = pacer key; ARGV[1] = interval (s). The next grant is at least one interval after
# now (never earlier than already reserved).
_SPACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local next_free = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + interval)
redis.call('SET', KEYS[1], tostring(next_free), 'PX', math.ceil(interval * 1000) + 1000)
return 1
"""

# KEYS[1] = cooldown key; ARGV[1] = milliseconds. Extends, never shortens.
_EXTEND = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


class WaitTooLong(RateLimited):
    """Our own limiter's queue is longer than ``max_wait``: retry later. (Unlike a provider's
    429, this says nothing about the provider, so it must not start a shared cooldown.)"""


class RateLimiter(Protocol):
    """What providers are given: ``acquire()`` before every call."""

    def acquire(self) -> None: ...

    def cooldown(self, seconds: float) -> None: ...

    def space_from_now(self) -> None: ...


def _check(name: str, rate: float, max_wait: float) -> None:
    if not name:
        raise ValidationError("a rate limiter needs a name", field="name")
    if rate <= 0:
        raise ValidationError(f"rate for {name!r} must be > 0 per second, got {rate!r}")
    if max_wait < 0:
        raise ValidationError(f"max_wait must be >= 0, got {max_wait!r}")


class RedisRateLimiter:
    """At most ``rate`` calls per second to provider ``name``, across all processes sharing
    ``client``'s Redis. ``acquire`` sleeps up to ``max_wait`` seconds; longer waits raise
    :class:`RateLimited`."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        rate: float,
        *,
        max_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        prefix: str = "quantbeat:ratelimit",
    ) -> None:
        _check(name, rate, max_wait)
        self.name = name
        self.rate = rate
        self.max_wait = max_wait
        self._client = client
        self._sleep = sleep
        self._keys = [f"{prefix}:{name}:pace", f"{prefix}:{name}:cooldown"]
        self._script = client.register_script(_PACE)
        self._extend = client.register_script(_EXTEND)
        self._space = client.register_script(_SPACE)

    def try_acquire(self) -> float:
        """Reserve the next slot if it is at most ``max_wait`` away; return the seconds to wait
        before calling (0: call now). A larger value means nothing was reserved; a negative
        one means the provider is cooling down for that many seconds (nothing reserved)."""
        result = self._script(keys=self._keys, args=[1.0 / self.rate, self.max_wait])
        return float(result.decode() if isinstance(result, bytes) else result)

    def acquire(self) -> None:
        """Block until this process may call the provider.

        Raises:
            quant.errors.RateLimited: the wait would exceed ``max_wait``, or the provider is
                cooling down (also when a cooldown began while this caller waited for its
                reserved slot); ``retry_after`` says when to try again.
        """
        wait = self.try_acquire()
        if wait < 0:
            raise WaitTooLong(f"{self.name}: cooling down for {-wait:.1f} s", retry_after=-wait)
        if wait > self.max_wait:
            raise WaitTooLong(
                f"{self.name}: global rate limit of {self.rate:g}/s", retry_after=wait
            )
        record_rate_limit_wait(self.name, wait)
        if wait > 0:
            self._sleep(wait)
            # Another worker may have been throttled while this one waited for its slot.
            left = self.cooldown_left()
            if left > 0:
                raise WaitTooLong(f"{self.name}: cooling down for {left:.1f} s", retry_after=left)

    def cooldown(self, seconds: float) -> None:
        """Stop every worker from calling the provider for ``seconds`` (atomically never
        shortens an existing cooldown, even when workers race)."""
        ms = int(seconds * 1000)
        if ms > 0:
            self._extend(keys=[self._keys[1]], args=[ms])

    def cooldown_left(self) -> float:
        """Seconds of cooldown left (0 when none)."""
        return max(0, int(self._client.pttl(self._keys[1]))) / 1000.0

    def space_from_now(self) -> None:
        """The call granted last has just been made: the next grant comes at least one
        interval from now (Redis' clock), so calls reach the provider spaced even when one
        left late after its grant (a slow thread, a busy host)."""
        self._space(keys=[self._keys[0]], args=[1.0 / self.rate])


class LocalRateLimiter:
    """The same pacing and cooldown within one process (for the embedded run)."""

    def __init__(
        self,
        name: str,
        rate: float,
        *,
        max_wait: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check(name, rate, max_wait)
        self.name = name
        self.rate = rate
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = 0.0
        self._cooldown_until = 0.0

    def acquire(self) -> None:
        """Block until this process may call the provider (see :meth:`RedisRateLimiter.acquire`)."""
        with self._lock:
            now = self._clock()
            if self._cooldown_until > now:
                raise WaitTooLong(
                    f"{self.name}: cooling down", retry_after=self._cooldown_until - now
                )
            start = max(now, self._next_free)
            wait = start - now
            if wait > self.max_wait:
                raise WaitTooLong(f"{self.name}: rate limit {self.rate:g}/s", retry_after=wait)
            self._next_free = start + 1.0 / self.rate
        record_rate_limit_wait(self.name, wait)
        if wait > 0:
            self._sleep(wait)
            left = self.cooldown_left()
            if left > 0:
                raise WaitTooLong(f"{self.name}: cooling down", retry_after=left)

    def cooldown_left(self) -> float:
        """Seconds of cooldown left (0 when none)."""
        with self._lock:
            return max(0.0, self._cooldown_until - self._clock())

    def cooldown(self, seconds: float) -> None:
        with self._lock:
            self._cooldown_until = max(self._cooldown_until, self._clock() + seconds)

    def space_from_now(self) -> None:
        """See :meth:`RedisRateLimiter.space_from_now`."""
        with self._lock:
            self._next_free = max(self._next_free, self._clock() + 1.0 / self.rate)


_limiters: dict[tuple[str, str, float, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


@after_fork
def forget_limiters() -> None:
    """Drop the process-wide limiters and their Redis clients (after fork; tests)."""
    with _limiters_lock:
        _limiters.clear()


def limiter_for(
    provider: str,
    *,
    redis_url: str,
    rates: dict[str, float],
    max_wait: float,
    headroom: float = 1.0,
) -> RateLimiter | None:
    """The process-wide limiter for ``provider`` (``None`` when it has no configured rate):
    Redis-backed, or in-process when ``redis_url`` is ``memory://``. Grants are paced at
    ``headroom`` × the configured rate."""
    configured = rates.get(provider)
    if configured is None:
        return None
    rate = configured * headroom
    key = (provider, redis_url, rate, max_wait)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            if redis_url.startswith("memory://"):
                limiter = LocalRateLimiter(provider, rate, max_wait=max_wait)
            else:
                client: redis.Redis = redis.Redis.from_url(
                    redis_url, socket_timeout=5, socket_connect_timeout=5
                )
                limiter = RedisRateLimiter(client, provider, rate, max_wait=max_wait)
            _limiters[key] = limiter
    return limiter

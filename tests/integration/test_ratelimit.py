"""The Redis rate limiter paces calls across processes: several processes hammering
``acquire`` together are granted at most ``rate`` calls in any one-second window, and
together still get close to the full rate."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from typing import Any

import pytest
import redis

from quant.errors import RateLimited
from quantbeat.infra.ratelimit import RedisRateLimiter
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.integration

URL = f"{TEST_REDIS_URL}/6"
RATE = 20.0
SECONDS = 3.0
#: Between a grant and the caller's clock reading, scheduling can shift a timestamp a little.
JITTER = 0.03


def _hammer(prefix: str, ready: Any, go: Any, until: Any, out: Any) -> None:
    limiter = RedisRateLimiter(redis.Redis.from_url(URL), "fake", RATE, max_wait=5, prefix=prefix)
    stamps = []
    ready.put(True)
    go.wait(60)  # every process starts hammering together, however slow spawning was
    while time.time() < until.value:
        limiter.acquire()
        stamps.append(time.time())
    out.put(stamps)


def test_processes_together_never_exceed_the_global_rate():
    prefix = f"test:{uuid.uuid4().hex}"
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    ready: Any = ctx.Queue()
    go = ctx.Event()
    until = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_hammer, args=(prefix, ready, go, until, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    until.value = time.time() + SECONDS
    go.set()
    stamps = sorted(s for _ in procs for s in out.get(timeout=30))
    for p in procs:
        p.join(10)
    n = int(RATE)
    # No n+1 grants inside one second: grant i and grant i+n are at least 1 s apart.
    gaps = [stamps[i + n] - stamps[i] for i in range(len(stamps) - n)]
    assert min(gaps) >= 1.0 - JITTER, min(gaps)
    # And the limiter is not simply starving everyone: the busy stretch runs near the rate.
    busy = stamps[-1] - stamps[0]
    assert len(stamps) >= 0.8 * RATE * busy


def test_a_long_wait_raises_rate_limited_instead_of_sleeping():
    limiter = RedisRateLimiter(
        redis.Redis.from_url(URL), "slow", rate=0.5, max_wait=0.1, prefix=f"t:{uuid.uuid4().hex}"
    )
    limiter.acquire()
    t0 = time.monotonic()
    with pytest.raises(RateLimited) as info:
        limiter.acquire()
    assert time.monotonic() - t0 < 0.5
    assert 1.5 < (info.value.retry_after or 0) <= 2.0


def test_cooldown_is_shared_and_never_shortened():
    prefix = f"t:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(URL)
    a = RedisRateLimiter(client, "p", rate=100, prefix=prefix)
    b = RedisRateLimiter(redis.Redis.from_url(URL), "p", rate=100, prefix=prefix)
    a.cooldown(3.0)
    b.cooldown(1.0)  # shorter: ignored
    with pytest.raises(RateLimited) as info:
        b.acquire()
    assert 2.0 < (info.value.retry_after or 0) <= 3.0
    assert b.cooldown_left() > 2.0


def test_a_cooldown_begun_while_a_caller_waits_for_its_slot_stops_its_call():
    prefix = f"t:{uuid.uuid4().hex}"
    other = RedisRateLimiter(redis.Redis.from_url(URL), "p", rate=2, prefix=prefix)

    def sleep_while_another_worker_is_throttled(seconds: float) -> None:
        time.sleep(seconds)
        other.cooldown(3.0)  # another worker was answered 429 meanwhile

    waiting = RedisRateLimiter(
        redis.Redis.from_url(URL),
        "p",
        rate=2,
        prefix=prefix,
        sleep=sleep_while_another_worker_is_throttled,
    )
    other.acquire()
    with pytest.raises(RateLimited) as info:
        waiting.acquire()  # its slot is 0.5 s ahead: waits, then finds the cooldown
    assert 2.0 < (info.value.retry_after or 0) <= 3.0


def test_spacing_from_a_late_call_holds_for_every_client() -> None:
    """``space_from_now`` moves the shared next grant a full interval past the call, for
    every client of the Redis (Redis' own clock)."""
    prefix = f"test:space:{uuid.uuid4().hex}"
    a = RedisRateLimiter(redis.Redis.from_url(URL), "p", rate=2.0, max_wait=5, prefix=prefix)
    b = RedisRateLimiter(redis.Redis.from_url(URL), "p", rate=2.0, max_wait=5, prefix=prefix)
    assert a.try_acquire() == 0.0  # granted now; the next one would be 0.5 s away
    time.sleep(0.3)  # the call left late
    a.space_from_now()
    wait = b.try_acquire()
    assert 0.45 <= wait <= 0.51, wait  # a full interval after the call, not 0.2 s

from __future__ import annotations

import itertools

import pytest

from quant.errors import RateLimited, ValidationError
from quantbeat.infra.ratelimit import LocalRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_grants_are_spaced_by_one_over_rate():
    clock = FakeClock()
    limiter = LocalRateLimiter("p", rate=4.0, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(9):
        limiter.acquire()
        times.append(clock.now)
    assert [round(b - a, 9) for a, b in itertools.pairwise(times)] == [0.25] * 8


def test_a_wait_beyond_max_wait_raises_with_retry_after():
    clock = FakeClock()
    limiter = LocalRateLimiter("p", rate=1.0, max_wait=0.5, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    with pytest.raises(RateLimited) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(1.0)


def test_cooldown_stops_calls_until_it_ends():
    clock = FakeClock()
    limiter = LocalRateLimiter("p", rate=100.0, clock=clock, sleep=clock.sleep)
    limiter.cooldown(5.0)
    with pytest.raises(RateLimited) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(5.0)
    clock.now += 5.0
    limiter.acquire()


def test_a_cooldown_begun_while_waiting_for_a_reserved_slot_stops_the_call():
    clock = FakeClock()

    def sleep_while_another_thread_is_throttled(seconds: float) -> None:
        clock.sleep(seconds)
        limiter.cooldown(3.0)  # another thread was answered 429 meanwhile

    limiter = LocalRateLimiter(
        "p", rate=2.0, clock=clock, sleep=sleep_while_another_thread_is_throttled
    )
    limiter.acquire()  # at once: no wait
    with pytest.raises(RateLimited) as info:
        limiter.acquire()  # its slot is 0.5 s ahead: waits, then finds the cooldown
    assert clock.slept == [0.5]
    assert info.value.retry_after == pytest.approx(3.0)
    assert limiter.cooldown_left() == pytest.approx(3.0)


@pytest.mark.parametrize(("rate", "max_wait"), [(0.0, 1.0), (-1.0, 1.0), (1.0, -0.1)])
def test_bad_parameters(rate: float, max_wait: float):
    with pytest.raises(ValidationError):
        LocalRateLimiter("p", rate=rate, max_wait=max_wait)


def test_a_call_that_left_late_pushes_the_next_grant_a_full_interval_after_it():
    """Grants are spaced, but a call may leave late after its grant (a busy host): spacing
    from the call itself keeps the provider's limit however late it left."""
    clock = FakeClock()
    limiter = LocalRateLimiter("p", rate=1.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()  # granted at 100.0
    clock.now += 0.7  # ...but the call only reached the provider at 100.7
    limiter.space_from_now()
    limiter.acquire()
    assert clock.now == pytest.approx(101.7)  # not 101.0: 0.3 s after the late call
    limiter.space_from_now()  # never moves a later reservation earlier
    limiter.space_from_now()
    limiter.acquire()
    assert clock.now == pytest.approx(102.7)

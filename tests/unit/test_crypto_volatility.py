"""The crypto volatility check's arithmetic (quant.crypto.volatility, issue 23): the move and
the realized volatility of the last hour in sigmas of the trailing 30 days' hourly returns,
checked on constructed series and against a plain-Python computation on random ones."""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from quant.crypto.volatility import MIN_HOURLY_RETURNS, assess
from quant.errors import ValidationError

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _hourly(returns: list[float], end: datetime = AT - HOUR) -> tuple[list[datetime], list[float]]:
    """Hourly bars ending every hour up to ``end`` whose log returns are ``returns``."""
    logs = np.concatenate([[math.log(50_000_000.0)], np.cumsum(returns) + math.log(5e7)])
    ends = [end - HOUR * (len(logs) - 1 - k) for k in range(len(logs))]
    return ends, list(np.exp(logs))


def _five(returns: list[float], start_price: float = 5e7) -> tuple[list[datetime], list[float]]:
    """The 13 five-minute closes of the hour ending at AT with these 12 log returns."""
    assert len(returns) == 12
    logs = math.log(start_price) + np.concatenate([[0.0], np.cumsum(returns)])
    ends = [AT - HOUR + timedelta(minutes=5 * k) for k in range(13)]
    return ends, list(np.exp(logs))


def _reading(hourly_returns: list[float], five: list[float], **kw):
    h_ends, h_closes = _hourly(hourly_returns)
    f_ends, f_closes = _five(five)
    return assess(
        "KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=h_closes,
        five_minute_ends=f_ends, five_minute_closes=f_closes, **kw,
    )  # fmt: skip


CALM = [0.01 if k % 2 else -0.01 for k in range(720)]  # σ = 0.01 · sqrt(720/719)
SIGMA = 0.01 * math.sqrt(720 / 719)


def test_a_five_sigma_hour_is_unusual() -> None:
    r = _reading(CALM, [0.05 / 12] * 12)
    assert r.hourly_returns == 720
    assert r.hourly_sigma == pytest.approx(SIGMA)
    assert r.move == pytest.approx(0.05)
    assert r.move_sigma == pytest.approx(0.05 / SIGMA)
    assert r.realized == pytest.approx(math.sqrt(12) * 0.05 / 12)
    assert r.unusual is True
    assert r.reason is None
    assert r.price == pytest.approx(5e7 * math.exp(0.05))
    assert r.price_hour_ago == pytest.approx(5e7)


def test_a_fall_counts_as_much_as_a_rise() -> None:
    r = _reading(CALM, [-0.04 / 12] * 12)
    assert r.move_sigma == pytest.approx(-0.04 / SIGMA)
    assert r.unusual is True


def test_a_calm_hour_is_not_unusual() -> None:
    r = _reading(CALM, [0.001 if k % 2 else -0.001 for k in range(12)])
    assert r.move == pytest.approx(0.0, abs=1e-12)
    assert r.realized_sigma == pytest.approx(math.sqrt(12) * 0.001 / SIGMA)
    assert r.unusual is False


def test_a_whipsaw_hour_without_a_net_move_is_unusual_by_its_realized_volatility() -> None:
    r = _reading(CALM, [0.01 if k % 2 else -0.01 for k in range(12)])
    assert abs(r.move_sigma) < 1e-9
    assert r.realized_sigma == pytest.approx(math.sqrt(12) * 0.01 / SIGMA)  # 3.46
    assert r.unusual is True
    assert (
        _reading(CALM, [0.01 if k % 2 else -0.01 for k in range(12)], threshold=4).unusual is False
    )


def test_the_threshold_is_inclusive() -> None:
    five = [3 * SIGMA / 12] * 12
    exact = _reading(CALM, five).move_sigma
    assert exact is not None
    assert _reading(CALM, five, threshold=exact).unusual is True
    assert _reading(CALM, five, threshold=exact * (1 + 1e-9)).unusual is False


def test_too_short_a_history_gives_no_verdict() -> None:
    r = _reading(CALM[: MIN_HOURLY_RETURNS - 1], [0.05 / 12] * 12)
    assert r.unusual is None
    assert r.move == pytest.approx(0.05)
    assert f"{MIN_HOURLY_RETURNS - 1} hourly returns" in (r.reason or "")
    assert _reading(CALM[:MIN_HOURLY_RETURNS], [0.05 / 12] * 12).unusual is True


def test_a_missing_five_minute_bar_gives_no_verdict() -> None:
    h_ends, h_closes = _hourly(CALM)
    f_ends, f_closes = _five([0.05 / 12] * 12)
    del f_ends[6], f_closes[6]
    r = assess("KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    assert r.unusual is None
    assert r.reason == "1 of the hour's 13 five-minute closes are missing"


def test_only_the_trailing_window_and_consecutive_hours_make_the_baseline() -> None:
    # 40 days of history: the oldest 10 days are wild and outside the window
    wild = [0.2 if k % 2 else -0.2 for k in range(240)]
    r = _reading(wild + CALM, [0.001] * 12)
    assert r.hourly_returns == 720
    assert r.hourly_sigma == pytest.approx(SIGMA)
    # a missing hour breaks one return, it does not join two hours into one
    h_ends, h_closes = _hourly(CALM)
    del h_ends[100], h_closes[100]
    f_ends, f_closes = _five([0.001] * 12)
    r = assess("KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    assert r.hourly_returns == 718  # two returns lost, none made across the gap


def test_the_hour_assessed_is_not_in_its_own_baseline() -> None:
    h_ends, h_closes = _hourly(CALM, end=AT)  # a bar ending at AT itself: left out
    f_ends, f_closes = _five([0.001] * 12)
    r = assess("KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    assert r.hourly_returns == 719


def test_random_series_match_a_plain_python_computation() -> None:
    rng = random.Random(20261206)
    for _ in range(20):
        hourly = [rng.gauss(0, 0.008) for _ in range(800)]
        five = [rng.gauss(0, 0.004) for _ in range(12)]
        r = _reading(hourly, five)
        window = hourly[-720:]  # the returns of the hours ending in the window
        sigma = statistics.stdev(window)
        move = sum(five)
        realized = math.sqrt(sum(x * x for x in five))
        assert r.hourly_returns == len(window)
        assert r.hourly_sigma == pytest.approx(sigma, rel=1e-9)
        assert r.move_sigma == pytest.approx(move / sigma, rel=1e-9)
        assert r.realized_sigma == pytest.approx(realized / sigma, rel=1e-9)
        assert r.unusual == (abs(move / sigma) >= 3 or realized / sigma >= 3)


def test_other_zones_are_compared_in_utc() -> None:
    kst = timezone(timedelta(hours=9))
    h_ends, h_closes = _hourly(CALM)
    f_ends, f_closes = _five([0.05 / 12] * 12)
    r = assess("KRW-BTC", AT.astimezone(kst), hourly_ends=h_ends, hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    assert r.unusual is True


@pytest.mark.parametrize("threshold", [0, -1, float("nan"), float("inf"), "3"])
def test_a_bad_threshold_is_refused(threshold: object) -> None:
    with pytest.raises(ValidationError, match="threshold"):
        _reading(CALM, [0.0] * 12, threshold=threshold)


def test_bad_inputs_are_refused_naming_what_is_wrong() -> None:
    h_ends, h_closes = _hourly(CALM)
    f_ends, f_closes = _five([0.0] * 12)
    with pytest.raises(ValidationError, match="timezone-aware"):
        assess("KRW-BTC", AT.replace(tzinfo=None), hourly_ends=h_ends, hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    bad = list(h_closes)
    bad[5] = -1.0
    with pytest.raises(ValidationError, match=r"hourly close at position 5 .*-1\.0"):
        assess("KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=bad,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    with pytest.raises(
        ValidationError, match="hourly time at position 0 must be a timezone-aware datetime"
    ):
        assess("KRW-BTC", AT, hourly_ends=[e.replace(tzinfo=None) for e in h_ends],
               hourly_closes=h_closes, five_minute_ends=f_ends,
               five_minute_closes=f_closes)  # fmt: skip
    with pytest.raises(ValidationError, match="strictly increasing"):
        assess("KRW-BTC", AT, hourly_ends=h_ends[::-1], hourly_closes=h_closes,
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip
    with pytest.raises(ValidationError, match="must match its times"):
        assess("KRW-BTC", AT, hourly_ends=h_ends, hourly_closes=h_closes[:-1],
               five_minute_ends=f_ends, five_minute_closes=f_closes)  # fmt: skip

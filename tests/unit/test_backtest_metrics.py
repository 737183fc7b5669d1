"""quant.backtest.metrics against quantstats 0.0.86 and empyrical-reloaded 0.7.1 on synthetic
daily returns (seeded random walks, a recovered drawdown, an unrecovered one, flat periods, a
loss on day one, a crypto calendar with 365 periods a year), trade statistics against hand
computation and vectorbt 1.0's ``pf.trades``, plus edge cases, validation errors and the JSON
round trip.

The reference libraries are imported lazily (fixtures with ``importorskip``), so the
hand-computed tests still run where they are not installed; ``-ra`` lists such skips.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.backtest.metrics import (
    Drawdown,
    Metrics,
    MetricsInputError,
    compute_metrics,
    drawdown_series,
    max_drawdown,
    returns_from_equity,
)
from quant.errors import ValidationError

# The libraries and this module compute the same formulas with the same float operations in a
# different order (pandas reductions against numpy ones): they agree far inside 1e-10.
RTOL = 1e-10
ATOL = 1e-14  # only where a value is exactly zero on one side and ~1e-17 on the other


def _approx(expected: float) -> Any:
    return pytest.approx(expected, rel=RTOL, abs=ATOL, nan_ok=True)


# ------------------------------------------------------------------------------------------
# Reference libraries


@pytest.fixture(scope="module")
def qs() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module: ModuleType = pytest.importorskip("quantstats")
    return module


@pytest.fixture(scope="module")
def ep() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module: ModuleType = pytest.importorskip("empyrical")
    return module


@pytest.fixture(scope="module")
def vbt() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module: ModuleType = pytest.importorskip("vectorbt")
    return module


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a reference function with its warnings (deprecations, 'no non-zero returns') off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# Synthetic series


def _random(seed: int, n: int = 400) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0004, 0.013, n)


def _recovered() -> np.ndarray:
    """Rise, fall ~20 %, climb well above the old peak, then drift up with small noise."""
    noise = np.random.default_rng(7).normal(0.001, 0.002, 60)
    return np.concatenate([[0.004] * 30, [-0.015] * 15, [0.012] * 40, noise])


def _unrecovered() -> np.ndarray:
    """Rise, fall ~45 %, crawl up too slowly to get back."""
    return np.concatenate([[0.003] * 40, [-0.01] * 60, [0.001] * 50])


def _flat() -> np.ndarray:
    """Random returns with ~45 % zero days and a 30-day block without a position."""
    rng = np.random.default_rng(3)
    r = rng.normal(0.0005, 0.015, 300)
    r[rng.random(300) < 0.45] = 0.0
    r[100:130] = 0.0
    return r


def _first_day_loss() -> np.ndarray:
    """A loss on the first day (only the 1.0 baseline reveals it), recovery, a later dip."""
    return np.array([-0.08, 0.03, 0.03, 0.03, 0.01, -0.02, -0.01, 0.01, 0.04, 0.0, 0.005, 0.01])


DAILY_CASES: dict[str, np.ndarray] = {
    **{f"seed{seed}": _random(seed) for seed in range(5)},
    "recovered": _recovered(),
    "unrecovered": _unrecovered(),
    "flat": _flat(),
    "first_day_loss": _first_day_loss(),
}


def _krx_days(n: int) -> pd.DatetimeIndex:
    """Business days: weekends make calendar-day durations differ from observation counts."""
    return pd.bdate_range("2023-01-02", periods=n)


def _times(index: pd.DatetimeIndex) -> np.ndarray:
    return index.to_numpy()


def _iso(day: np.datetime64 | None) -> str | None:
    return None if day is None else str(np.datetime_as_string(day, unit="D"))


def _series(r: np.ndarray, index: pd.DatetimeIndex) -> pd.Series:
    return pd.Series(r, index=index, dtype=float)


# ------------------------------------------------------------------------------------------
# Return and risk metrics against quantstats and empyrical


def _check_against_references(
    qs: ModuleType, ep: ModuleType, r: np.ndarray, index: pd.DatetimeIndex, ppy: int
) -> Metrics:
    s = _series(r, index)
    m = compute_metrics(r, _times(index), [], periods_per_year=ppy)
    stats = qs.stats

    assert m.periods == len(r)
    assert m.total_return == _approx(_quiet(stats.comp, s))
    assert m.total_return == _approx(_quiet(ep.cum_returns_final, s))
    assert m.cagr == _approx(_quiet(stats.cagr, s, periods=ppy))
    assert m.cagr == _approx(_quiet(ep.annual_return, s, annualization=ppy))
    assert m.cagr == _approx(_quiet(ep.cagr, s, annualization=ppy))
    assert m.volatility == _approx(_quiet(stats.volatility, s, periods=ppy))
    assert m.volatility == _approx(_quiet(ep.annual_volatility, s, annualization=ppy))
    assert m.sharpe == _approx(_quiet(stats.sharpe, s, periods=ppy))
    assert m.sharpe == _approx(_quiet(ep.sharpe_ratio, s, annualization=ppy))
    assert m.sortino == _approx(_quiet(stats.sortino, s, periods=ppy))
    assert m.sortino == _approx(_quiet(ep.sortino_ratio, s, annualization=ppy))
    assert m.max_drawdown == _approx(_quiet(stats.max_drawdown, s))
    assert m.max_drawdown == _approx(_quiet(ep.max_drawdown, s))
    assert m.calmar == _approx(_quiet(stats.calmar, s, periods=ppy))
    assert m.period_win_rate == _approx(_quiet(stats.win_rate, s))
    assert m.period_profit_factor == _approx(_quiet(stats.profit_factor, s))

    active = int(np.count_nonzero(r))
    if (100 * active) % len(r):
        assert m.exposure == _approx(_quiet(stats.exposure, s))
    else:
        # A whole percent: quantstats' float ceil can overshoot (see test_exposure_...).
        assert m.exposure == 100 * active // len(r) / 100
    return m


@pytest.mark.parametrize("name", list(DAILY_CASES))
def test_daily_metrics_match_quantstats_and_empyrical(qs, ep, name):
    r = DAILY_CASES[name]
    _check_against_references(qs, ep, r, _krx_days(len(r)), 252)


@pytest.mark.parametrize("seed", [11, 12])
def test_crypto_calendar_with_365_periods_matches_references(qs, ep, seed):
    r = np.random.default_rng(seed).normal(0.001, 0.035, 500)
    index = pd.date_range("2022-03-01", periods=len(r), freq="D")
    m = _check_against_references(qs, ep, r, index, 365)
    # The annualization really is used: 252 gives a different CAGR.
    assert compute_metrics(r, _times(index), []).cagr != _approx(m.cagr)


def test_period_counts_match_a_direct_count():
    r = DAILY_CASES["flat"]
    m = compute_metrics(r, _times(_krx_days(len(r))), [])
    wins, losses = r[r > 0], r[r < 0]
    assert m.period_win_rate == len(wins) / (len(wins) + len(losses))
    assert m.period_profit_factor == _approx(wins.sum() / -losses.sum())
    assert m.exposure == math.ceil(Fraction(len(wins) + len(losses), len(r)) * 100) / 100


def test_exposure_is_an_exact_ceiling_to_a_whole_percent(qs):
    r = np.array([0.01] * 7 + [0.0] * 18)
    index = _krx_days(len(r))
    m = compute_metrics(r, _times(index), [])
    # 7/25 is exactly 28 %; quantstats computes ceil(7 / 25 * 100) = ceil(28.000000000000004)
    # in floating point and reports 0.29. The ceiling is meant for fractions of a percent.
    assert m.exposure == 0.28
    # Off a whole percent both agree: 8/25 = 32 %, 9/26 = 34.6 % -> 35 %.
    r = np.array([0.01] * 9 + [0.0] * 17)
    index = _krx_days(len(r))
    assert compute_metrics(r, _times(index), []).exposure == 0.35
    assert _quiet(qs.stats.exposure, _series(r, index)) == 0.35


# ------------------------------------------------------------------------------------------
# Drawdown details against quantstats' drawdown_details


def _qs_worst(qs: ModuleType, r: np.ndarray, index: pd.DatetimeIndex) -> Any:
    series = _quiet(qs.stats.to_drawdown_series, _series(r, index))
    details = _quiet(qs.stats.drawdown_details, series)
    assert len(details), "quantstats found no drawdown"
    return details.loc[details["max drawdown"].astype(float).idxmin()]


@pytest.mark.parametrize("name", list(DAILY_CASES))
def test_max_drawdown_matches_quantstats_drawdown_details(qs, name):
    r = DAILY_CASES[name]
    index = _krx_days(len(r))
    dd = max_drawdown(r, _times(index))
    row = _qs_worst(qs, r, index)

    assert dd.depth == _approx(float(row["max drawdown"]) / 100)
    assert _iso(dd.start) == row["start"]
    assert _iso(dd.trough) == row["valley"]
    assert dd.days == int(row["days"])
    # quantstats' 'end' is the last day under water; ours is the recovery day after it.
    last_under = index.get_loc(pd.Timestamp(row["end"]))
    assert isinstance(last_under, int)
    if last_under == len(r) - 1:
        assert dd.end is None
    else:
        assert _iso(dd.end) == index[last_under + 1].strftime("%Y-%m-%d")

    m = compute_metrics(r, _times(index), [])
    assert (m.max_drawdown_start, m.max_drawdown_end, m.max_drawdown_days) == (
        dd.start,
        dd.end,
        dd.days,
    )


def test_the_recovered_and_unrecovered_cases_are_what_they_claim(qs):
    index = _krx_days(len(DAILY_CASES["recovered"]))
    recovered = max_drawdown(DAILY_CASES["recovered"], _times(index))
    assert recovered.end is not None
    assert recovered.depth < -0.15
    index = _krx_days(len(DAILY_CASES["unrecovered"]))
    unrecovered = max_drawdown(DAILY_CASES["unrecovered"], _times(index))
    assert unrecovered.end is None
    # quantstats closes an open drawdown at the last observation.
    row = _qs_worst(qs, DAILY_CASES["unrecovered"], index)
    assert row["end"] == index[-1].strftime("%Y-%m-%d")
    assert unrecovered.days == (index[-1] - pd.Timestamp(row["start"])).days + 1


def test_drawdown_over_a_weekend_counts_calendar_days(qs):
    # Thu +1 %, Fri -2 %, Mon -1 %, Tue +5 % (back above the Thursday peak).
    index = pd.DatetimeIndex(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"])
    r = np.array([0.01, -0.02, -0.01, 0.05])
    dd = max_drawdown(r, _times(index))
    assert dd.depth == pytest.approx(0.98 * 0.99 - 1, rel=RTOL)
    assert (dd.start, dd.trough, dd.end) == (
        np.datetime64("2024-01-05"),
        np.datetime64("2024-01-08"),
        np.datetime64("2024-01-09"),
    )
    assert dd.days == 4  # Fri 5 .. Mon 8, inclusive
    row = _qs_worst(qs, r, index)
    assert (row["start"], row["valley"], row["end"], row["days"]) == (
        "2024-01-05",
        "2024-01-08",
        "2024-01-08",
        4,
    )


def test_a_first_day_loss_never_recovered_is_found():
    # quantstats' drawdown_details returns no rows for this series (its start detection needs
    # a day at the peak before the drawdown), so the expectation is worked out by hand:
    # equity 0.9, 0.945, 0.9261, 0.935361 against the 1.0 baseline.
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], "datetime64[D]")
    dd = max_drawdown([-0.1, 0.05, -0.02, 0.01], times)
    assert dd.depth == pytest.approx(-0.1, rel=RTOL)
    assert (dd.start, dd.trough, dd.end, dd.days) == (times[0], times[0], None, 4)


def test_intraday_stamps_are_normalised_to_days():
    r = np.array([0.01, -0.02, -0.01, 0.05])
    days = np.array(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"], "datetime64[D]")
    stamps = days.astype("datetime64[ns]") + np.timedelta64(15 * 60 + 30, "m")
    assert max_drawdown(r, stamps) == max_drawdown(r, days)
    dd = max_drawdown(r, stamps)
    assert dd.start is not None
    assert dd.start.dtype == np.dtype("datetime64[D]")
    # Python dates and ISO strings are accepted too.
    assert max_drawdown(r, [str(d) for d in days]) == max_drawdown(r, days)


def test_timezone_aware_stamps_are_refused():
    # numpy would silently shift them to UTC: KST midnight becomes the previous day.
    stamps = pd.date_range("2024-01-01", periods=3, tz="Asia/Seoul")
    with pytest.raises(ValueError, match="timezone-aware"):
        max_drawdown([-0.1, 0.0, 0.2], stamps)
    dd = max_drawdown([-0.1, 0.0, 0.2], stamps.tz_localize(None))
    assert dd.start == np.datetime64("2024-01-01")


def test_no_drawdown_gives_zero_and_no_dates():
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], "datetime64[D]")
    assert max_drawdown([0.01, 0.0, 0.02], times) == Drawdown(0.0, None, None, None, 0)
    assert max_drawdown([], np.array([], "datetime64[D]")) == Drawdown(0.0, None, None, None, 0)


# ------------------------------------------------------------------------------------------
# Drawdown series and returns from equity


@pytest.mark.parametrize("name", ["seed0", "unrecovered", "first_day_loss"])
def test_drawdown_series_matches_references(qs, ep, name):
    r = DAILY_CASES[name]
    index = _krx_days(len(r))
    equity = 1_000_000 * np.cumprod(1 + r)  # won, from 1,000,000 of capital
    # Built from returns (capital before day one known): quantstats' and empyrical's baseline.
    from_returns = drawdown_series(equity, initial=1_000_000)
    np.testing.assert_allclose(
        from_returns, _quiet(qs.stats.to_drawdown_series, _series(r, index)), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        from_returns, _quiet(ep.stats.drawdown_series, _series(r, index)), rtol=0, atol=1e-12
    )
    # A price series: quantstats' baseline is its first observation.
    as_prices = drawdown_series(equity)
    np.testing.assert_allclose(
        as_prices,
        _quiet(qs.stats.to_drawdown_series, _series(equity, index)),
        rtol=0,
        atol=1e-12,
    )
    assert as_prices.min() == _approx(_quiet(qs.stats.max_drawdown, _series(equity, index)))


def test_drawdown_series_by_hand():
    np.testing.assert_allclose(drawdown_series([100, 120, 90, 130]), [0, 0, -0.25, 0])
    np.testing.assert_allclose(
        drawdown_series([90, 120, 90], initial=100), [-0.1, 0.0, -0.25], rtol=1e-15
    )
    assert drawdown_series([]).shape == (0,)


def test_returns_from_equity():
    equity = [100.0, 110.0, 99.0, 99.0]
    np.testing.assert_allclose(returns_from_equity(equity), [0.1, -0.1, 0.0], rtol=1e-15)
    np.testing.assert_allclose(
        returns_from_equity(equity, initial=200.0), [-0.5, 0.1, -0.1, 0.0], rtol=1e-15
    )
    expected = pd.Series(equity).pct_change().to_numpy()[1:]
    np.testing.assert_allclose(returns_from_equity(equity), expected, rtol=1e-15)
    assert returns_from_equity([5.0]).shape == (0,)
    assert returns_from_equity([]).shape == (0,)
    assert returns_from_equity([], initial=1.0).shape == (0,)
    # A wipe-out is a -100 % return; nothing may follow it.
    np.testing.assert_allclose(returns_from_equity([100.0, 0.0]), [-1.0])


def test_returns_from_equity_round_trips_through_metrics(qs):
    r = DAILY_CASES["seed1"]
    equity = 5_000_000 * np.cumprod(1 + r)
    back = returns_from_equity(equity, initial=5_000_000)
    np.testing.assert_allclose(back, r, rtol=1e-9, atol=1e-15)
    index = _krx_days(len(r))
    m = compute_metrics(back, _times(index), [])
    assert m.total_return == pytest.approx(equity[-1] / 5_000_000 - 1, rel=1e-12)
    assert m.sharpe == pytest.approx(_quiet(qs.stats.sharpe, _series(r, index)), rel=1e-8)


# ------------------------------------------------------------------------------------------
# Trade-level metrics


def _trades(pnl: list[float]) -> Metrics:
    times = np.array(["2024-01-02", "2024-01-03"], "datetime64[D]")
    return compute_metrics([0.01, -0.005], times, pnl)


def test_trade_metrics_by_hand():
    # Wins 100, 200; losses -50, -25; one break-even trade.
    m = _trades([100.0, -50.0, 0.0, 200.0, -25.0])
    assert m.trades == 5
    assert m.win_rate == pytest.approx(2 / 5)
    assert m.profit_factor == pytest.approx(300 / 75)
    # WR·avg_win - (1 - WR)·|avg_loss| = 0.4·150 - 0.6·37.5 (the break-even counts in 1 - WR)
    assert m.expectancy == pytest.approx(60.0 - 22.5)


def test_trade_metrics_without_losers_or_winners():
    no_losers = _trades([10.0, 0.0, 5.0])
    assert no_losers.win_rate == pytest.approx(2 / 3)
    assert no_losers.profit_factor == math.inf
    assert no_losers.expectancy == pytest.approx(2 / 3 * 7.5)

    only_losers = _trades([-1.0, -3.0])
    assert (only_losers.win_rate, only_losers.profit_factor) == (0.0, 0.0)
    assert only_losers.expectancy == pytest.approx(-2.0)

    break_even = _trades([0.0, 0.0])
    assert break_even.win_rate == 0.0
    assert math.isnan(break_even.profit_factor)
    assert break_even.expectancy == 0.0

    none = _trades([])
    assert none.trades == 0
    assert all(math.isnan(v) for v in (none.win_rate, none.profit_factor, none.expectancy))


def _portfolio(vbt: ModuleType, close: pd.Series, entries: list[int], exits: list[int]) -> Any:
    entry = pd.Series(False, index=close.index)
    exit_ = pd.Series(False, index=close.index)
    entry.iloc[entries] = True
    exit_.iloc[exits] = True
    return _quiet(
        vbt.Portfolio.from_signals,
        close,
        entry,
        exit_,
        init_cash=10_000_000,
        fees=0.00015,
        freq="1D",
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_trade_metrics_match_vectorbt(vbt, seed):
    index = _krx_days(120)
    close = pd.Series(
        50_000 * np.cumprod(1 + np.random.default_rng(seed).normal(0, 0.02, 120)), index=index
    )
    pf = _portfolio(vbt, close, list(range(0, 110, 10)), list(range(5, 115, 10)))
    trades = pf.trades
    pnl = trades.pnl.values
    assert len(pnl) == 11
    assert (pnl > 0).any()
    assert (pnl < 0).any()
    returns = _quiet(pf.returns).to_numpy()
    m = compute_metrics(returns, _times(index), pnl)
    assert m.trades == _quiet(trades.count)
    assert m.win_rate == _approx(_quiet(trades.win_rate))
    assert m.profit_factor == _approx(_quiet(trades.profit_factor))
    assert m.expectancy == pytest.approx(_quiet(trades.expectancy), rel=1e-10, abs=1e-6)
    assert m.total_return == pytest.approx(_quiet(pf.total_return), rel=1e-9)


def test_trade_profit_factor_without_losers_matches_vectorbt(vbt):
    index = _krx_days(30)
    close = pd.Series(np.linspace(10_000, 13_000, 30), index=index)
    pf = _portfolio(vbt, close, [0, 10, 20], [5, 15, 25])
    trades = pf.trades
    m = compute_metrics(_quiet(pf.returns).to_numpy(), _times(index), trades.pnl.values)
    assert m.profit_factor == math.inf == _quiet(trades.profit_factor)
    assert m.win_rate == 1.0 == _quiet(trades.win_rate)
    assert m.expectancy == _approx(_quiet(trades.expectancy))


# ------------------------------------------------------------------------------------------
# Edge cases


def test_empty_returns_give_documented_values():
    m = compute_metrics([], np.array([], "datetime64[D]"), [])
    assert (m.periods, m.trades, m.max_drawdown_days) == (0, 0, 0)
    assert (m.total_return, m.max_drawdown, m.exposure) == (0.0, 0.0, 0.0)
    assert (m.max_drawdown_start, m.max_drawdown_end) == (None, None)
    for name in (
        "cagr",
        "volatility",
        "sharpe",
        "sortino",
        "calmar",
        "win_rate",
        "profit_factor",
        "expectancy",
        "period_win_rate",
        "period_profit_factor",
    ):
        assert math.isnan(getattr(m, name)), name
    assert json.loads(json.dumps(m.as_dict(), allow_nan=False))["cagr"] is None


def test_single_observation(qs, ep):
    index = _krx_days(1)
    s = _series(np.array([0.05]), index)
    m = compute_metrics([0.05], _times(index), [])
    assert m.total_return == pytest.approx(0.05, rel=RTOL)
    assert m.cagr == _approx(_quiet(qs.stats.cagr, s))
    assert m.cagr == _approx(_quiet(ep.annual_return, s))
    assert m.cagr == pytest.approx(1.05**252 - 1, rel=RTOL)
    # ddof=1 needs two observations (both libraries give NaN; quantstats' Sortino does not).
    assert math.isnan(m.volatility)
    assert math.isnan(m.sharpe)
    assert math.isnan(m.sortino)
    assert math.isnan(_quiet(ep.sortino_ratio, s))
    assert m.calmar == math.inf
    assert (m.period_win_rate, m.period_profit_factor, m.exposure) == (1.0, math.inf, 1.0)

    loss = compute_metrics([-0.02], _times(index), [])
    assert loss.max_drawdown == pytest.approx(-0.02, rel=1e-12)
    assert loss.max_drawdown_start == index[0].to_datetime64().astype("datetime64[D]")
    assert (loss.max_drawdown_end, loss.max_drawdown_days) == (None, 1)
    assert loss.calmar == pytest.approx((0.98**252 - 1) / 0.02, rel=1e-10)


def test_all_zero_returns(qs, ep):
    index = _krx_days(20)
    r = np.zeros(20)
    s = _series(r, index)
    m = compute_metrics(r, _times(index), [])
    assert (m.total_return, m.cagr, m.volatility, m.max_drawdown, m.exposure) == (
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    )
    assert _quiet(qs.stats.volatility, s) == 0.0 == _quiet(qs.stats.cagr, s)
    assert math.isnan(m.sharpe)
    assert math.isnan(_quiet(qs.stats.sharpe, s))
    assert math.isnan(_quiet(ep.sharpe_ratio, s))
    assert math.isnan(m.sortino)
    assert math.isnan(_quiet(ep.sortino_ratio, s))
    # Undefined, not 0.0 as quantstats says (it warns "no non-zero returns").
    assert math.isnan(m.period_win_rate)
    assert math.isnan(m.period_profit_factor)
    # quantstats raises ZeroDivisionError here.
    assert math.isnan(m.calmar)
    assert m.max_drawdown_days == 0


def test_constant_positive_returns(ep):
    index = _krx_days(10)
    s = _series(np.full(10, 0.01), index)
    m = compute_metrics(np.full(10, 0.01), _times(index), [])
    assert m.volatility == 0.0
    assert m.sharpe == math.inf == _quiet(ep.sharpe_ratio, s)
    assert m.sortino == math.inf == _quiet(ep.sortino_ratio, s)
    assert m.calmar == math.inf
    assert m.period_profit_factor == math.inf
    d = m.as_dict()
    assert d["sharpe"] is d["sortino"] is d["calmar"] is d["period_profit_factor"] is None


def test_total_wipe_out():
    times = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], "datetime64[D]")
    m = compute_metrics([0.1, -1.0, 0.0], times, [])
    assert (m.total_return, m.cagr, m.max_drawdown, m.calmar) == (-1.0, -1.0, -1.0, -1.0)
    assert m.max_drawdown_end is None


# ------------------------------------------------------------------------------------------
# Validation

DAYS3 = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], "datetime64[D]")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"times": DAYS3[:2]}, r"times has 2 values but returns has 3"),
        ({"returns": [0.01, math.nan, 0.0]}, r"returns\[1\] is nan"),
        ({"returns": [0.01, 0.0, math.inf]}, r"returns\[2\] is inf"),
        ({"returns": [0.01, -1.5, 0.0]}, r"returns\[1\] is -1\.5"),
        ({"returns": [[0.01, 0.0, 0.0]]}, r"returns must be one-dimensional"),
        ({"returns": ["0.01", "0", "0"]}, r"returns must hold numbers.*'0\.01'"),
        ({"returns": None}, r"returns must be a 1-D sequence of numbers, got None"),
        ({"trade_pnl": [1.0, math.nan]}, r"trade_pnl\[1\] is nan"),
        ({"periods_per_year": 0}, r"periods_per_year is 0"),
        ({"periods_per_year": -252}, r"periods_per_year is -252"),
        ({"periods_per_year": 252.0}, r"periods_per_year must be an int, got 252\.0"),
        ({"periods_per_year": True}, r"periods_per_year must be an int, got True"),
        ({"times": np.array([1, 2, 3])}, r"times must be datetime64, got dtype int"),
        (
            {"times": np.array(["2024-01-02", "NaT", "2024-01-04"], "datetime64[D]")},
            r"times\[1\] is NaT",
        ),
        ({"times": DAYS3[::-1]}, r"times\[1\] is 2024-01-03, not after"),
        ({"times": np.array(["2024-01-02"] * 3, "datetime64[D]")}, r"times\[1\] is 2024-01-02"),
        ({"times": ["2024-01-02", "not a date", "2024-01-04"]}, r"times must be datetime64"),
    ],
)
def test_compute_metrics_rejects_bad_input(kwargs, message):
    args: dict[str, Any] = {"returns": [0.01, -0.02, 0.0], "times": DAYS3, "trade_pnl": [1.0]}
    args.update(kwargs)
    returns, times, pnl = args.pop("returns"), args.pop("times"), args.pop("trade_pnl")
    with pytest.raises(ValueError, match=message) as info:
        compute_metrics(returns, times, pnl, **args)
    assert isinstance(info.value, MetricsInputError)
    assert isinstance(info.value, ValidationError)


def test_max_drawdown_validates_like_compute_metrics():
    with pytest.raises(ValueError, match=r"times has 3 values but returns has 2"):
        max_drawdown([0.01, 0.02], DAYS3)
    with pytest.raises(ValueError, match=r"returns\[0\] is nan"):
        max_drawdown([math.nan, 0.0, 0.0], DAYS3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: returns_from_equity([100.0, -5.0]), r"equity\[1\] is -5\.0"),
        (lambda: returns_from_equity([100.0, math.nan]), r"equity\[1\] is nan"),
        (lambda: returns_from_equity([100.0, 0.0, 50.0]), r"equity\[1\] is 0\.0"),
        (lambda: returns_from_equity([0.0, 50.0], initial=100.0), r"equity\[0\] is 0\.0"),
        (lambda: returns_from_equity([100.0], initial=0.0), r"initial is 0\.0"),
        (lambda: returns_from_equity([100.0], initial=math.inf), r"initial is inf"),
        (lambda: returns_from_equity([100.0], initial=True), r"initial must be a number"),
        (lambda: drawdown_series([0.0, 1.0]), r"equity\[0\] is 0\.0"),
        (lambda: drawdown_series([1.0, math.inf]), r"equity\[1\] is inf"),
        (lambda: drawdown_series([1.0], initial=-1.0), r"initial is -1\.0"),
    ],
)
def test_equity_helpers_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------
# Serialization


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def test_as_dict_is_json_safe_and_round_trips():
    r = DAILY_CASES["recovered"]
    m = compute_metrics(r, _times(_krx_days(len(r))), [120_000.0, -30_000.0, 0.0])
    d = m.as_dict()
    assert list(d) == [
        "total_return",
        "cagr",
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_start",
        "max_drawdown_end",
        "max_drawdown_days",
        "calmar",
        "win_rate",
        "profit_factor",
        "expectancy",
        "exposure",
        "trades",
        "period_win_rate",
        "period_profit_factor",
        "periods",
    ]
    assert isinstance(d["max_drawdown_start"], str)
    assert len(d["max_drawdown_start"]) == 10
    assert isinstance(d["max_drawdown_end"], str)
    assert type(d["trades"]) is int
    assert type(d["periods"]) is int
    assert type(d["sharpe"]) is float
    text = json.dumps(d, allow_nan=False)
    back = Metrics.from_dict(json.loads(text))
    assert back == m
    assert back.max_drawdown_start == m.max_drawdown_start


def test_round_trip_turns_non_finite_into_nan():
    m = _trades([10.0, 5.0])  # no losing trade: profit factor inf
    empty = compute_metrics([], np.array([], "datetime64[D]"), [])
    for metrics in (m, empty):
        d = metrics.as_dict()
        json.dumps(d, allow_nan=False)
        back = Metrics.from_dict(d)
        for name, value in d.items():
            if value is None and name not in ("max_drawdown_start", "max_drawdown_end"):
                assert math.isnan(getattr(back, name)), name
            else:
                assert _same(getattr(back, name), getattr(metrics, name)), name
    assert m.as_dict()["profit_factor"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"periods": None}, r"periods must be an int, got None"),
        ({"trades": 1.5}, r"trades must be an int, got 1\.5"),
        ({"sharpe": "high"}, r"sharpe must be a number or None, got 'high'"),
        ({"max_drawdown_start": "2024-13-45"}, r"max_drawdown_start is '2024-13-45'"),
        ({"max_drawdown_end": 20240101}, r"max_drawdown_end must be 'YYYY-MM-DD' or None"),
        ({"bogus": 1}, r"unknown key\(s\) bogus"),
    ],
)
def test_from_dict_rejects_bad_values(change, message):
    d: dict[str, Any] = {**_trades([1.0, -1.0]).as_dict(), **change}
    with pytest.raises(ValueError, match=message):
        Metrics.from_dict(d)


def test_from_dict_names_a_missing_key():
    d = _trades([1.0]).as_dict()
    del d["calmar"]
    with pytest.raises(ValueError, match="missing calmar"):
        Metrics.from_dict(d)

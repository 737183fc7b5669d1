"""Indicators of many instruments at once (quant.indicators.columns) and the scan conditions
over matrices (quant.scans.trend.passes_on_each_bar_columns,
quant.scans.vcp.breakout_volume_possible_columns): every column bit-identical to the
one-series function on it — complete columns, columns with leading, inner and trailing
missing bars, halted bars, every column gappy and none — and the errors name the bad value."""

from __future__ import annotations

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators.candles import Candles
from quant.indicators.columns import high_low_columns, rs_raw_columns, sma_columns
from quant.indicators.custom import rolling_high_low, rs_raw
from quant.indicators.standard import sma
from quant.scans.inputs import ScanInputs
from quant.scans.trend import (
    TrendTemplateParams,
    passes_on_each_bar,
    passes_on_each_bar_columns,
)
from quant.scans.vcp import VcpParams, breakout_volume_possible, breakout_volume_possible_columns


def _prices(seed: int, n: int = 330, m: int = 7, gaps: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # random walks at very different price levels, so sums round differently per order
    x = rng.uniform(50, 500_000, m) * np.exp(np.cumsum(rng.normal(0.001, 0.03, (n, m)), axis=0))
    if gaps:
        x[:40, 1] = np.nan  # listed late
        x[[17, 200, 201], 3] = np.nan  # missing bars inside
        x[-5:, 5] = np.nan  # delisted
    return x


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize("gaps", [True, False])
@pytest.mark.parametrize("period", [1, 2, 5, 50, 150, 200, 330, 400])
def test_sma_columns_is_sma_of_each_column_bit_for_bit(gaps, period):
    x = _prices(period, gaps=gaps)
    got = sma_columns(x, period)
    for c in range(x.shape[1]):
        want = sma(np.ascontiguousarray(x[:, c]), period)
        assert _same(got[:, c], want), (period, c)
    if period <= 200:
        assert not np.isnan(got[:, 0]).all()  # the comparison covers values, not only NaN


def test_sma_columns_differs_from_a_cumulative_sum():
    # the guard of the bit-for-bit claim: another summation order gives other bits here
    x = _prices(3, gaps=False)
    c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
    other = (c[50:] - c[:-50]) / 50
    assert not np.array_equal(sma_columns(x, 50)[49:], other)


@pytest.mark.parametrize("gaps", [True, False])
@pytest.mark.parametrize(("window", "min_periods"), [(252, None), (10, None), (60, 5), (1, None)])
def test_high_low_columns_is_rolling_high_low_of_each_column(gaps, window, min_periods):
    close = _prices(window, gaps=gaps)
    high, low = close * 1.02, close * 0.97
    got_high, got_low = high_low_columns(high, low, window=window, min_periods=min_periods)
    for c in range(close.shape[1]):
        want_high, want_low = rolling_high_low(
            np.ascontiguousarray(high[:, c]),
            np.ascontiguousarray(low[:, c]),
            window=window,
            min_periods=min_periods,
        )
        assert _same(got_high[:, c], want_high), c
        assert _same(got_low[:, c], want_low), c


@pytest.mark.parametrize("gaps", [True, False])
@pytest.mark.parametrize(
    ("periods", "weights"),
    [((63, 126, 189, 252), (0.4, 0.2, 0.2, 0.2)), ((5, 20), (0.7, 0.3)), ((400,), (1.0,))],
)
def test_rs_raw_columns_is_rs_raw_of_each_column(gaps, periods, weights):
    close = _prices(len(periods), gaps=gaps)
    got = rs_raw_columns(close, periods=periods, weights=weights)
    for c in range(close.shape[1]):
        want = rs_raw(np.ascontiguousarray(close[:, c]), periods=periods, weights=weights)
        assert _same(got[:, c], want), c


def test_every_column_gappy_and_empty_matrices():
    x = _prices(9)
    x[0] = np.nan
    assert _same(sma_columns(x, 20)[:, 2], sma(np.ascontiguousarray(x[:, 2]), 20))
    empty = np.empty((0, 3))
    assert sma_columns(empty, 5).shape == (0, 3)
    assert high_low_columns(empty, empty)[0].shape == (0, 3)
    assert rs_raw_columns(empty).shape == (0, 3)


def test_errors_name_the_bad_value():
    x = _prices(1, gaps=False)
    with pytest.raises(ValidationError, match="2-D"):
        sma_columns(x[:, 0], 5)
    with pytest.raises(ValidationError, match="period"):
        sma_columns(x, 0)
    with pytest.raises(ValidationError, match="same shape"):
        high_low_columns(x, x[:, :3])
    with pytest.raises(ValidationError, match="weights"):
        rs_raw_columns(x, periods=(5,), weights=(0.5, 0.5))
    bad = x.copy()
    bad[100, 4] = -1.0
    with pytest.raises(ValidationError, match=r"column 4: close\[100\] is -1\.0"):
        rs_raw_columns(bad)


def _candles(close: np.ndarray, volume: np.ndarray) -> Candles:
    return Candles.from_columns(
        np.datetime64("2024-01-01") + np.arange(len(close)),
        unit="D",
        open=close,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=volume,
    )


def _uptrends(seed: int, n: int = 420, m: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 10_000 * np.exp(np.cumsum(rng.normal(0.003, 0.02, (n, m)), axis=0))
    close[rng.choice(100, 8, replace=False), 1] = np.nan
    close[[n - 25, n - 3], 2] = np.nan
    close[:30, 4] = np.nan
    volume = rng.uniform(1e5, 1e6, (n, m))
    volume[rng.choice(n, 40, replace=False), :] *= 3.0
    volume[[5, 70, 300], 3] = 0.0  # halted
    volume[[90, 310], 5] = np.nan  # unknown
    return close, volume


@pytest.mark.parametrize(
    "params",
    [TrendTemplateParams(), TrendTemplateParams(rising_lookback=3, min_rs_rating=40.0)],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_the_trend_template_over_columns_is_each_instruments(seed, params):
    close, volume = _uptrends(seed)
    n, m = close.shape
    rs = np.random.default_rng(seed).uniform(30, 99, (n, m))
    rs[::17] = np.nan
    high_52w, low_52w = high_low_columns(close * 1.01, close * 0.99, window=params.week52_window)
    got = passes_on_each_bar_columns(
        close,
        sma_short=sma_columns(close, params.sma_short),
        sma_mid=sma_columns(close, params.sma_mid),
        sma_long=sma_columns(close, params.sma_long),
        high_52w=high_52w,
        low_52w=low_52w,
        rs_rating=rs,
        params=params,
    )
    for c in range(m):
        inputs = ScanInputs(instrument="X", candles=_candles(close[:, c], volume[:, c]))
        want = passes_on_each_bar(inputs, params, rs_rating=rs[:, c])
        assert got[:, c].tolist() == want.tolist(), c
    assert got.any()
    assert not got.all()


def test_the_trend_template_over_columns_refuses_mismatched_shapes():
    close, _ = _uptrends(1)
    with pytest.raises(ValidationError, match=r"sma_mid has shape \(420, 5\)"):
        passes_on_each_bar_columns(
            close,
            sma_short=close,
            sma_mid=close[:, :5],
            sma_long=close,
            high_52w=close,
            low_52w=close,
            rs_rating=50.0,
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_breakout_volume_condition_over_columns_is_each_instruments(seed):
    close, volume = _uptrends(seed)
    params = VcpParams()
    got = breakout_volume_possible_columns(close * 1.01, close * 0.99, volume, params)
    for c in range(close.shape[1]):
        want = breakout_volume_possible(_candles(close[:, c], volume[:, c]), params)
        assert got[:, c].tolist() == want.tolist(), c
    assert got.any()
    assert not got.all()
    with pytest.raises(ValidationError, match="one shape"):
        breakout_volume_possible_columns(close, close, volume[:, :2], params)

"""The Trend Template decided for every bar at once (quant.scans.trend.passes_on_each_bar)
is exactly trend_template run on the candles ending at each bar, and the breakout-volume
condition (quant.scans.vcp.breakout_volume_possible) exactly find_vcp's volume rule — on
walks with missing bars, halted bars and unknown volumes, an RS rating per bar or one for
all, default and other parameters (a window that is not the precomputed 52-week one, a short
lookback)."""

from __future__ import annotations

import numpy as np
import pytest

from quant.indicators.candles import Candles
from quant.scans.inputs import ScanInputs
from quant.scans.trend import TrendTemplateParams, passes_on_each_bar, trend_template
from quant.scans.vcp import VcpParams, breakout_volume_possible, find_vcp


def _walk(seed: int, n: int = 420) -> Candles:
    rng = np.random.default_rng(seed)
    # an uptrend with pullbacks: the template passes on some bars and fails on others
    close = 10_000 * np.exp(np.cumsum(rng.normal(0.003, 0.02, n)))
    close[rng.choice(100, 8, replace=False)] = np.nan  # missing bars early
    close[[n - 25, n - 3]] = np.nan  # and two late ones, inside every long window
    volume = rng.uniform(1e5, 1e6, n)
    return Candles.from_columns(
        np.datetime64("2024-01-01") + np.arange(n),
        unit="D",
        open=close,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=volume,
    )


def _sliced(candles: Candles, t: int, rs: float) -> ScanInputs:
    return ScanInputs(instrument="X", candles=candles.head(t + 1), rs_rating=rs)


@pytest.mark.parametrize("seed", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "params",
    [
        TrendTemplateParams(),
        TrendTemplateParams(rising_lookback=3, week52_window=120, min_rs_rating=40.0),
    ],
)
def test_each_bar_is_trend_template_on_the_candles_up_to_it(seed, params):
    candles = _walk(seed)
    n = len(candles)
    rs = np.random.default_rng(seed + 100).uniform(30, 99, n)
    rs[::17] = np.nan
    got = passes_on_each_bar(ScanInputs(instrument="X", candles=candles), params, rs_rating=rs)
    want = np.array([trend_template(_sliced(candles, t, rs[t]), params).passed for t in range(n)])
    assert got.tolist() == want.tolist()
    assert want.any()  # the walk passes somewhere: the comparison covers both outcomes
    assert not want.all()


def test_one_rating_for_every_bar():
    candles = _walk(7)
    params = TrendTemplateParams(min_rs_rating=1.0)
    got = passes_on_each_bar(ScanInputs(instrument="X", candles=candles), params, rs_rating=1.0)
    want = [trend_template(_sliced(candles, t, 1.0), params).passed for t in range(len(candles))]
    assert got.tolist() == want


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_breakout_volume_condition_is_find_vcps_volume_rule_on_each_bar(seed):
    # breakout_volume_possible keeps a bar exactly when find_vcp's volume ratio on the candles
    # ending there reaches the breakout multiple: a necessary condition of a breakout
    rng = np.random.default_rng(seed)
    candles = _walk(seed)
    volume = candles.volume.copy()
    volume[rng.choice(len(volume), 30, replace=False)] *= 3.0  # spikes: some bars qualify
    volume[[5, 70, 300]] = 0.0  # halted bars
    volume[[90, 310]] = np.nan  # unknown volumes
    candles = Candles(
        time=candles.time,
        open=candles.open,
        high=candles.high,
        low=candles.low,
        close=candles.close,
        volume=volume,
        traded_value=candles.traded_value,
    )
    params = VcpParams()
    got = breakout_volume_possible(candles, params)
    ratios = [
        find_vcp(ScanInputs(instrument="X", candles=candles.head(t + 1)), params).volume_ratio
        for t in range(len(candles))
    ]
    want = [r is not None and r >= params.breakout_volume for r in ratios]
    assert got.tolist() == want
    assert any(want)
    assert not all(want)

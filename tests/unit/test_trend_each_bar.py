"""The Trend Template decided for every bar at once (quant.scans.trend.passes_on_each_bar)
is exactly trend_template run on the candles ending at each bar — on walks with missing
bars, an RS rating per bar or one for all, default and other parameters (a window that is
not the precomputed 52-week one, a short lookback)."""

from __future__ import annotations

import numpy as np
import pytest

from quant.indicators.candles import Candles
from quant.scans.inputs import ScanInputs
from quant.scans.trend import TrendTemplateParams, passes_on_each_bar, trend_template


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
    end = t + 1
    return ScanInputs(
        instrument="X",
        candles=Candles(
            time=candles.time[:end],
            open=candles.open[:end],
            high=candles.high[:end],
            low=candles.low[:end],
            close=candles.close[:end],
            volume=candles.volume[:end],
            traded_value=candles.traded_value[:end],
        ),
        rs_rating=rs,
    )


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

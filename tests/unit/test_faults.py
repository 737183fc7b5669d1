"""The fault-injecting source corrupts a stable fraction of rows, and the row checks catch
every corruption it makes."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from quant.calendar import krx_approximate_calendar
from quant.errors import ValidationError
from quant.market.faults import CorruptingSource
from quant.market.quality import check_daily_candles, check_investor_flows
from quant.market.simulated import SimulatedMarket

D = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=7, universe_size=2000, calendar=krx_approximate_calendar())


def test_zero_rate_changes_nothing(market):
    source = CorruptingSource(market, 0.0)
    pd.testing.assert_frame_equal(source.daily_candles(D, D), market.daily_candles(D, D))


def test_every_corrupted_candle_is_rejected_and_nothing_else(market):
    clean = market.daily_candles(D, D)
    dirty = CorruptingSource(market, 0.05, seed=1).daily_candles(D, D)
    differs = (clean.fillna(-1) != dirty.fillna(-1)).any(axis=1)
    assert 0.02 * len(clean) < differs.sum() < 0.08 * len(clean)
    good, rejected = check_daily_candles(dirty)
    assert len(rejected) == differs.sum()
    assert {r.ticker for r in rejected} == set(dirty.loc[differs, "ticker"])
    assert {r.reason for r in rejected} == {
        "non_finite",
        "high_below_low",
        "negative_volume",
        "non_positive_price",
    }
    assert len(good) == len(clean) - len(rejected)


def test_every_corrupted_flow_is_rejected(market):
    dirty = CorruptingSource(market, 0.05, seed=1).investor_flows(D, D)
    good, rejected = check_investor_flows(dirty)
    assert {r.reason for r in rejected} == {"non_finite", "non_integer"}
    assert len(good) + len(rejected) == len(dirty)


def test_corruption_is_deterministic(market):
    a = CorruptingSource(market, 0.1, seed=3).daily_candles(D, D)
    b = CorruptingSource(market, 0.1, seed=3).daily_candles(D, D)
    pd.testing.assert_frame_equal(a, b)
    c = CorruptingSource(market, 0.1, seed=4).daily_candles(D, D)
    assert not a.fillna(-1).equals(c.fillna(-1))


def test_rate_is_validated(market):
    with pytest.raises(ValidationError, match=r"1\.5"):
        CorruptingSource(market, 1.5)

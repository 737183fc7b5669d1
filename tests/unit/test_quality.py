"""Row checks: each impossible row is rejected with its reason; the rest is kept."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant.errors import ValidationError
from quant.market.quality import check_daily_candles, check_investor_flows

D = dt.date(2026, 11, 20)
GOOD = {
    "market": "KOSPI",
    "ticker": "005930",
    "trade_date": D,
    "open": 100.0,
    "high": 110.0,
    "low": 95.0,
    "close": 105.0,
    "volume": 1000.0,
    "traded_value": 102_000.0,
}


def candles(*changes: dict[str, object]) -> pd.DataFrame:
    rows = []
    for n, change in enumerate(changes):
        rows.append({**GOOD, "ticker": f"{n:06d}", **change})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        ({}, None, None),
        ({"close": np.nan}, "non_finite", "not a finite number"),
        ({"volume": np.inf}, "non_finite", "not a finite number"),
        ({"open": 0.0}, "non_positive_price", "open 0.0"),
        ({"low": -5.0}, "non_positive_price", "low -5.0"),
        ({"high": 90.0}, "high_below_low", "high 90.0 < low 95.0"),
        ({"open": 120.0}, "open_outside_range", "open 120.0"),
        ({"close": 94.0}, "close_outside_range", "close 94.0"),
        ({"volume": -1.0}, "negative_volume", "volume -1.0"),
        ({"traded_value": -3.0}, "negative_volume", "traded value -3.0"),
        ({"ticker": ""}, "missing_key", "missing"),
        ({"trade_date": None}, "missing_key", "missing"),
        ({"close": "abc"}, "non_finite", "not a finite number"),
    ],
)
def test_one_bad_row_among_good_ones(
    change: dict[str, object], reason: str | None, named: str | None
):
    frame = candles({}, change, {})
    good, rejected = check_daily_candles(frame)
    if reason is None:
        assert len(good) == 3
        assert rejected == []
        return
    assert len(good) == 2
    assert list(good["ticker"]) == ["000000", "000002"]  # the good rows are kept, in order
    (r,) = rejected
    assert r.reason == reason
    assert named is not None
    assert named in r.detail
    assert r.dataset == "daily_candles"
    assert r.values["open"] == (change.get("open", GOOD["open"]))


def test_a_halted_bar_is_not_rejected():
    frame = candles(
        {
            "open": 100.0,
            "high": 100.0,
            "low": 100.0,
            "close": 100.0,
            "volume": 0.0,
            "traded_value": 0.0,
        }
    )
    good, rejected = check_daily_candles(frame)
    assert (len(good), rejected) == (1, [])


def test_duplicates_and_unknown_instruments():
    frame = pd.DataFrame([GOOD, GOOD, {**GOOD, "ticker": "999999"}])
    good, rejected = check_daily_candles(frame, known={("KOSPI", "005930")})
    assert len(good) == 1
    assert sorted(r.reason for r in rejected) == ["duplicate_row", "unknown_instrument"]
    unknown = next(r for r in rejected if r.reason == "unknown_instrument")
    assert "KOSPI:999999" in unknown.detail


def test_rejected_values_are_json_safe():
    _, (r,) = check_daily_candles(candles({"close": np.nan}))
    assert r.values["close"] == "nan"
    assert r.values["trade_date"] == D.isoformat()
    assert r.trade_date == D


def test_a_frame_without_required_columns_is_a_validation_error():
    with pytest.raises(ValidationError, match="close"):
        check_daily_candles(pd.DataFrame([GOOD]).drop(columns=["close"]))


FLOW = {
    "market": "KOSDAQ",
    "ticker": "035720",
    "trade_date": D,
    "foreign_net_shares": 10,
    "institution_net_shares": -4,
    "individual_net_shares": -6,
    "foreign_net_krw": 1_000,
    "institution_net_krw": -400,
    "individual_net_krw": -600,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"foreign_net_shares": np.nan}, "non_finite"),
        ({"institution_net_krw": 1.5}, "non_integer"),
    ],
)
def test_flows(change: dict[str, object], reason: str | None):
    frame = pd.DataFrame([FLOW, {**FLOW, "ticker": "000001", **change}])
    good, rejected = check_investor_flows(frame)
    assert good["foreign_net_shares"].dtype == np.int64
    if reason is None:
        assert (len(good), rejected) == (2, [])
    else:
        assert len(good) == 1
        assert [r.reason for r in rejected] == [reason]

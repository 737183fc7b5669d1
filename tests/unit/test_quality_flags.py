"""Doubtful but storable bars are flagged, never stored as clean."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from quant.market.quality import flag_daily_candles

D = dt.date(2026, 11, 20)


def bars(*rows: tuple[str, dt.date, float, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "market": "KOSPI",
                "ticker": t,
                "trade_date": d,
                "open": c,
                "high": c,
                "low": c,
                "close": c,
                "volume": v,
                "traded_value": c * v,
            }
            for t, d, c, v in rows
        ]
    )


@pytest.mark.parametrize(
    ("previous", "close", "volume", "expected"),
    [
        (100.0, 110.0, 10.0, None),
        (100.0, 130.0, 10.0, None),  # exactly the +30 % limit is allowed
        (100.0, 131.0, 10.0, "limit_move"),
        (100.0, 69.0, 10.0, "limit_move"),  # -31 %
        (100.0, 100.0, 0.0, "zero_volume"),
        (100.0, 200.0, 0.0, "zero_volume,limit_move"),
        (None, 500.0, 10.0, None),  # no previous close known: no move to judge
    ],
)
def test_flags_against_the_stored_previous_close(previous, close, volume, expected):
    frame = bars(("005930", D, close, volume))
    prev = {("KOSPI", "005930"): previous} if previous is not None else {}
    assert list(flag_daily_candles(frame, prev)) == [expected]


def test_within_a_frame_the_row_before_is_the_previous_close():
    day2 = D + dt.timedelta(days=3)
    frame = bars(("000001", day2, 150.0, 5.0), ("000001", D, 100.0, 5.0), ("000002", D, 50.0, 5.0))
    flags = flag_daily_candles(frame)
    assert list(flags) == ["limit_move", None, None]  # aligned with the frame's own order


def test_limits_are_per_market():
    frame = pd.concat(
        [
            bars(("000001", D, 118.0, 5.0)),  # KOSPI +18 %: fine
            bars(("000002", D, 118.0, 5.0)).assign(market="KONEX"),  # KONEX +18 % > 15 %
            bars(("KRW-BTC", D, 300.0, 1.0)).assign(market="UPBIT"),  # crypto: no limit
        ],
        ignore_index=True,
    )
    prev = {("KOSPI", "000001"): 100.0, ("KONEX", "000002"): 100.0, ("UPBIT", "KRW-BTC"): 100.0}
    assert list(flag_daily_candles(frame, prev)) == [None, "limit_move", None]

"""The candle-read scenario shared by the PostgreSQL test (tests/integration/
test_candle_reads.py) and the embedded default's (tests/unit/test_candle_reads_embedded.py):
one history, stored the same way, and the same checks of db.candles.read_daily_bars — the
"last N bars" read (a wide date range trimmed, then an exact read for the few short ones)
gives exactly each instrument's last N bars across gaps, a long suspension, a new listing, an
instrument without bars and NULL prices, and the range read gives every bar in range; and the
sessions per market of db.outcomes.market_sessions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from db.candles import align, read_daily_bars
from db.outcomes import market_sessions
from db.store import upsert_daily_candles, upsert_instruments
from quant.market.types import Instrument, Market

END = dt.date(2026, 11, 20)
BARS = 60


def _weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    days = pd.bdate_range(first, last)
    return [d.date() for d in days]


def _history() -> pd.DataFrame:
    """Four instruments: A every weekday for a year; B with a 120-day suspension inside the
    last 60 bars' window; C listed 20 sessions ago; D (no bars) is only listed. A's newest bar
    has no traded value (NULL)."""
    rows = []
    year = _weekdays(END - dt.timedelta(days=365), END)
    gap = (END - dt.timedelta(days=150), END - dt.timedelta(days=30))
    suspended = [d for d in year if not gap[0] < d < gap[1]]
    for ticker, days in (("A00001", year), ("B00002", suspended), ("C00003", year[-20:])):
        for n, day in enumerate(days):
            price = 1000.0 + n
            rows.append(("KOSPI", ticker, day, price, price + 5, price - 5, price + 1, 1e5, 1e8))
    frame = pd.DataFrame(
        rows,
        columns=["market", "ticker", "trade_date", "open", "high", "low", "close", "volume",
                 "traded_value"],
    )  # fmt: skip
    frame.loc[(frame["ticker"] == "A00001") & (frame["trade_date"] == END), "traded_value"] = None
    return frame


def store_history(session: Session) -> None:
    """Store the four instruments and their history; their ids go to ``session.info``."""
    ids = upsert_instruments(
        session,
        [Instrument(Market.KOSPI, t, t, "KRW") for t in ("A00001", "B00002", "C00003", "D00004")],
        source="test",
    )
    upsert_daily_candles(session, _history(), ids, source="test")
    session.commit()
    session.info["ids"] = ids


def _expected_last(frame: pd.DataFrame, bars: int) -> dict[str, list[dt.date]]:
    return {
        str(t): sorted(g["trade_date"])[-bars:]
        for t, g in frame[frame["trade_date"] <= END].groupby("ticker")
    }


def check_last_bars_are_exactly_each_instruments_last_bars(session: Session):
    ids = session.info["ids"]
    by_id = {i: t for (_, t), i in ids.items()}
    got = read_daily_bars(session, list(ids.values()), end=END, bars=BARS)
    want = _expected_last(_history(), BARS)
    found = {
        by_id[ident]: got.time[lo:hi].astype(dt.date).tolist() for ident, lo, hi in got.spans()
    }
    assert found == want
    assert len(found["B00002"]) == BARS  # reached back past its suspension
    assert len(found["C00003"]) == 20  # all it has
    assert "D00004" not in found
    order = np.lexsort((got.time, got.instrument_id))
    assert (order == np.arange(len(got))).all()  # sorted by instrument, then date


def check_null_prices_read_as_nan_and_values_come_with_their_dates(session: Session):
    ids = session.info["ids"]
    a = ids[("KOSPI", "A00001")]
    got = read_daily_bars(session, [a], end=END, bars=3)
    assert got.time.astype(dt.date).tolist()[-1] == END
    assert np.isnan(got.columns["traded_value"][-1])
    assert got.columns["traded_value"][0] == 1e8
    first_close = got.columns["close"][0]
    assert got.columns["open"][0] == first_close - 1


def check_range_read_and_alignment(session: Session):
    ids = session.info["ids"]
    order = [ids[("KOSPI", t)] for t in ("D00004", "C00003", "B00002", "A00001")]
    start = END - dt.timedelta(days=40)
    got = read_daily_bars(session, order, start=start, end=END)
    frame = _history()
    in_range = frame[(frame["trade_date"] >= start) & (frame["trade_date"] <= END)]
    assert len(got) == len(in_range)
    times, rows, cols = align(got, order)
    assert times.astype(dt.date).tolist() == sorted(set(in_range["trade_date"]))
    matrix = np.full((len(times), len(order)), np.nan)
    matrix[rows, cols] = got.columns["close"]
    assert np.isnan(matrix[:, 0]).all()  # D has no bars
    assert int(np.isfinite(matrix[:, 1]).sum()) == len(in_range[in_range["ticker"] == "C00003"])


def check_more_bars_than_stored_gives_every_bar(session: Session):
    # the range reaches back past the oldest stored bar: read once, nothing read exactly
    ids = session.info["ids"]
    by_id = {i: t for (_, t), i in ids.items()}
    got = read_daily_bars(session, list(ids.values()), end=END, bars=400)
    found = {by_id[i]: got.time[lo:hi].astype(dt.date).tolist() for i, lo, hi in got.spans()}
    assert found == _expected_last(_history(), 400)


def check_market_sessions(session: Session):
    # db.outcomes.market_sessions walks the distinct dates through the index and probes each
    # per market: a KOSDAQ instrument with bars on three days (one a Saturday no KOSPI
    # instrument traded, one before the range), a market without instruments
    kosdaq = upsert_instruments(
        session, [Instrument(Market.KOSDAQ, "K00005", "K", "KRW")], source="test"
    )
    start = END - dt.timedelta(days=40)
    saturday = END - dt.timedelta(days=(END.weekday() - 5) % 7 or 7)
    days = [start - dt.timedelta(days=3), END - dt.timedelta(days=10), saturday, END]
    frame = pd.DataFrame(
        [("KOSDAQ", "K00005", d, 10.0, 11.0, 9.0, 10.5, 1e3, 1e4) for d in days],
        columns=["market", "ticker", "trade_date", "open", "high", "low", "close", "volume",
                 "traded_value"],
    )  # fmt: skip
    upsert_daily_candles(session, frame, kosdaq, source="test")
    session.commit()
    got = market_sessions(session, {"KOSPI", "KOSDAQ", "KONEX"}, start, END)
    history = _history()
    kospi = sorted({d for d in history["trade_date"] if start <= d <= END})
    assert got["KOSPI"].astype(dt.date).tolist() == kospi
    assert got["KOSDAQ"].astype(dt.date).tolist() == sorted(d for d in days if d >= start)
    assert saturday not in kospi  # the probe is per market: KOSPI did not trade that day
    assert len(got["KONEX"]) == 0

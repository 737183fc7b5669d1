"""The simulated market's reference series (indices, sector ETFs, USD/KRW), its news-driven
movers (closing-bet candidates, checked with the scan's own function), its intraday snapshots
and the simulated news that follows the movers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.ai.offline import keyword_hits
from quant.errors import NotFound, ValidationError
from quant.indicators import Candles
from quant.market.base import ReferenceDataSource, SnapshotSource
from quant.market.simulated import SimulatedMarket
from quant.market.snapshot import KST, volume_fraction
from quant.market.types import (
    DEFAULT_SECTOR_ETFS,
    KRX_INDICES,
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    USDKRW,
    Market,
    ReferenceKind,
    ReferenceSeries,
    default_reference_series,
)
from quant.news.simulated import SimulatedNewsSource
from quant.scans.closing_bet import closing_bet
from quant.scans.inputs import ScanInputs

START, END = date(2025, 12, 1), date(2026, 3, 31)
DAY = date(2026, 3, 3)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=42, universe_size=2500)


@pytest.fixture(scope="module")
def reference(market: SimulatedMarket) -> pd.DataFrame:
    return market.reference_bars(START, END, default_reference_series())


@pytest.fixture(scope="module")
def candles(market: SimulatedMarket) -> pd.DataFrame:
    return market.daily_candles(date(2025, 10, 1), END)


def cell(frame: pd.DataFrame, row: str, column: str) -> float:
    value: Any = frame.at[row, column]
    return float(value)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=KST)


# --- types ------------------------------------------------------------------------------------


def test_default_reference_series() -> None:
    series = default_reference_series()
    assert [s.code for s in series[:3]] == ["1001", "2001", "1028"]
    assert [s.code for s in series[3:-1]] == list(DEFAULT_SECTOR_ETFS)
    assert all(s.kind is ReferenceKind.ETF for s in series[3:-1])
    assert series[-1] == ReferenceSeries(USDKRW, ReferenceKind.FX, "USD/KRW", "KRW")
    assert [s.code for s in default_reference_series({"091160": "반도체"})][3:] == [
        "091160",
        USDKRW,
    ]
    with pytest.raises(ValidationError, match="'12'"):
        default_reference_series({"12": "bad"})


def test_implements_both_protocols_and_is_labelled(market: SimulatedMarket) -> None:
    assert isinstance(market, ReferenceDataSource)
    assert isinstance(market, SnapshotSource)
    assert market.simulated is True


# --- reference bars ---------------------------------------------------------------------------


def test_reference_frame_shape(reference: pd.DataFrame, market: SimulatedMarket) -> None:
    assert tuple(reference.columns) == REFERENCE_BAR_COLUMNS
    assert isinstance(reference.index, pd.RangeIndex)
    assert all(type(d) is date for d in reference["trade_date"])
    ordered = reference.sort_values(["code", "trade_date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(reference, ordered)
    sessions = market.calendar.sessions(START, END)
    counts = reference.groupby("code").size()
    assert set(counts.index) == {s.code for s in default_reference_series()}
    assert (counts == len(sessions)).all()
    for column in REFERENCE_BAR_COLUMNS[2:]:
        assert reference[column].dtype == np.float64
    f = reference
    assert (f["low"] <= np.minimum(f["open"], f["close"])).all()
    assert (f["high"] >= np.maximum(f["open"], f["close"])).all()


def test_indices_start_at_their_base_and_sum_their_members(market: SimulatedMarket) -> None:
    epoch = market.calendar.sessions(market.epoch, market.epoch + timedelta(days=10))[0]
    indices = [s for s in default_reference_series() if s.kind is ReferenceKind.INDEX]
    first = market.reference_bars(epoch, epoch, indices).set_index("code")
    # the epoch's first session moves at most a few percent from the base level
    for code, base in (("1001", 2_500.0), ("2001", 800.0), ("1028", 330.0)):
        assert abs(cell(first, code, "close") / base - 1.0) < 0.05, code
    bars = market.daily_candles(epoch, epoch)
    kospi = bars[bars["market"] == Market.KOSPI.value]
    assert cell(first, "1001", "volume") == pytest.approx(kospi["volume"].sum())
    assert cell(first, "1001", "value") == pytest.approx(kospi["traded_value"].sum())
    kosdaq = bars[bars["market"] == Market.KOSDAQ.value]
    assert cell(first, "2001", "value") == pytest.approx(kosdaq["traded_value"].sum())
    assert cell(first, "1028", "value") < cell(first, "1001", "value")


def test_kodex200_follows_kospi200(reference: pd.DataFrame) -> None:
    k200 = reference[reference["code"] == "1028"]["close"].to_numpy()
    kodex = reference[reference["code"] == "069500"]["close"].to_numpy()
    assert np.abs(kodex / (k200 * 100.0) - 1.0).max() < 0.001  # within ETF tick rounding


def test_sector_etfs_are_plausible(reference: pd.DataFrame) -> None:
    for code in DEFAULT_SECTOR_ETFS:
        f = reference[reference["code"] == code]
        assert (f["close"] % 5 == 0).all(), code  # on the 5-KRW ETF tick
        assert (f["volume"] > 0).all(), code
        assert (f["value"] > 0).all(), code
        assert (f["volume"] == f["volume"].round()).all(), code
        returns = np.diff(np.log(f["close"].to_numpy()))
        assert 0.001 < returns.std() < 0.05, code
    # different sectors move differently
    a = reference[reference["code"] == "091160"]["close"].to_numpy()
    b = reference[reference["code"] == "102960"]["close"].to_numpy()
    assert np.corrcoef(np.diff(np.log(a)), np.diff(np.log(b)))[0, 1] < 0.99


def test_usdkrw_walks_around_1380_and_sometimes_crosses_1400(market: SimulatedMarket) -> None:
    fx_series = [ReferenceSeries(USDKRW, ReferenceKind.FX, "USD/KRW")]
    fx = market.reference_bars(date(2018, 1, 1), END, fx_series)
    assert fx["volume"].isna().all()
    assert fx["value"].isna().all()
    assert fx["close"].min() > 1_300
    assert fx["close"].max() < 1_460
    above = (fx["close"] >= 1_400).mean()
    assert 0.02 < above < 0.5, above
    assert (fx["low"] <= np.minimum(fx["open"], fx["close"])).all()
    assert (fx["high"] >= np.maximum(fx["open"], fx["close"])).all()
    # a bar does not depend on the requested range
    part = market.reference_bars(date(2024, 5, 1), date(2024, 5, 31), fx_series)
    whole = fx[(fx["trade_date"] >= date(2024, 5, 1)) & (fx["trade_date"] <= date(2024, 5, 31))]
    pd.testing.assert_frame_equal(part, whole.reset_index(drop=True))


def test_reference_bars_are_deterministic_and_range_independent(
    market: SimulatedMarket, reference: pd.DataFrame
) -> None:
    other = SimulatedMarket(seed=42, universe_size=2500)
    series = default_reference_series()
    got = other.reference_bars(date(2026, 2, 2), date(2026, 2, 6), series)
    expected = reference[
        (reference["trade_date"] >= date(2026, 2, 2))
        & (reference["trade_date"] <= date(2026, 2, 6))
    ].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_reference_bad_requests(market: SimulatedMarket) -> None:
    with pytest.raises(NotFound, match="'9999'"):
        market.reference_bars(START, START, [ReferenceSeries("9999", ReferenceKind.INDEX, "x")])
    with pytest.raises(NotFound, match="'EURKRW'"):
        market.reference_bars(START, START, [ReferenceSeries("EURKRW", ReferenceKind.FX, "x")])
    with pytest.raises(ValidationError):
        market.reference_bars(START, START, "1001")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        market.reference_bars(END, START, default_reference_series())
    empty = market.reference_bars(date(2000, 1, 3), date(2000, 1, 7), default_reference_series())
    assert empty.empty
    assert tuple(empty.columns) == REFERENCE_BAR_COLUMNS


def test_an_unmapped_etf_code_gets_members_by_hash(market: SimulatedMarket) -> None:
    series = [ReferenceSeries("999990", ReferenceKind.ETF, "other")]
    a = market.reference_bars(START, START + timedelta(days=10), series)
    assert len(a) > 0
    assert (a["close"] > 0).all()


# --- closing-bet candidates -------------------------------------------------------------------


def _scan(groups: dict[str, pd.DataFrame], ticker: str, day: date):
    g = groups[ticker]
    g = g[g["trade_date"] <= day]
    c = Candles.from_columns(
        np.array(g["trade_date"], dtype="datetime64[D]"),
        unit="D",
        **{k: g[k].to_numpy() for k in ("open", "high", "low", "close", "volume", "traded_value")},
    )
    return closing_bet(ScanInputs(f"{g['market'].iloc[0]}:{ticker}", c))


def test_sessions_have_closing_bet_candidates(
    market: SimulatedMarket, candles: pd.DataFrame
) -> None:
    sessions = market.calendar.sessions(date(2026, 2, 2), END)
    groups = {str(t): g for t, g in candles.groupby("ticker")}
    per_day = []
    for day in sessions:
        movers = market.movers(day)
        passed = [_scan(groups, inst.ticker, day) for inst in movers]
        assert all(r.passed_filters or r.failed_filters == ("volume_ratio",) for r in passed), [
            (r.instrument, r.failed_filters) for r in passed if not r.passed_filters
        ]
        per_day.append(sum(r.passed_filters for r in passed))
    per_day_arr = np.array(per_day)
    assert (per_day_arr >= 1).mean() > 0.8, per_day
    assert per_day_arr.max() <= 15
    assert 2 <= per_day_arr.mean() <= 10, per_day


def test_movers_are_large_deterministic_and_within_limits(
    market: SimulatedMarket, candles: pd.DataFrame
) -> None:
    frame = candles.copy()
    frame["prev_close"] = frame.groupby("ticker")["close"].shift()
    fresh = SimulatedMarket(42, 2500)
    for day in market.calendar.sessions(date(2026, 3, 2), date(2026, 3, 13)):
        tickers = [i.ticker for i in market.movers(day)]
        assert tickers == sorted(tickers)
        assert tickers == [i.ticker for i in fresh.movers(day)]
        rows = frame[(frame["trade_date"] == day) & frame["ticker"].isin(tickers)]
        change = rows["close"] / rows["prev_close"] - 1.0
        assert ((change >= 0.05) & (change <= 0.299)).all()
        assert (rows["traded_value"] >= 5e10).all()
        upper_wick = rows["high"] - rows["close"]
        assert (upper_wick <= 0.5 * (rows["close"] - rows["open"])).all()
    assert market.movers(date(2026, 3, 1)) == []  # a Sunday
    assert market.movers(date(2000, 1, 4)) == []  # before the epoch


def test_small_universes_have_few_movers() -> None:
    small = SimulatedMarket(seed=1, universe_size=60)
    days = small.calendar.sessions(date(2026, 1, 5), date(2026, 3, 31))
    assert sum(len(small.movers(d)) for d in days) < 0.05 * 60 * len(days)


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_ends_exactly_at_the_daily_bar(market: SimulatedMarket) -> None:
    bars = market.daily_candles(DAY, DAY).set_index("ticker")
    final = market.market_snapshot(DAY, at(DAY, 15, 30)).set_index("ticker")
    assert tuple(market.market_snapshot(DAY, at(DAY, 15, 30)).columns) == SNAPSHOT_COLUMNS
    assert list(final.index) == list(bars.index)
    for column, source in (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close")):
        assert (final[column] == bars[source]).all(), column
    assert (final["volume"] == bars["volume"]).all()
    assert (final["value"] == bars["traded_value"]).all()
    later = market.market_snapshot(DAY, at(DAY, 18, 10))
    pd.testing.assert_frame_equal(later, final.reset_index())


def test_intraday_path_properties(market: SimulatedMarket) -> None:
    bars = market.daily_candles(DAY, DAY, market=Market.KOSDAQ).set_index("ticker")
    opening = market.market_snapshot(DAY, at(DAY, 9, 0), Market.KOSDAQ).set_index("ticker")
    assert (opening["close"] == bars["open"]).all()
    assert (opening["volume"] == 0).all()
    previous = opening
    for hour, minute in ((9, 30), (11, 0), (13, 15), (15, 10), (15, 20)):
        snap = market.market_snapshot(DAY, at(DAY, hour, minute), Market.KOSDAQ)
        snap = snap.set_index("ticker")
        assert (snap["open"] == bars["open"]).all()
        assert (snap["high"] <= bars["high"]).all()
        assert (snap["low"] >= bars["low"]).all()
        assert (snap["high"] >= previous["high"]).all()
        assert (snap["low"] <= previous["low"]).all()
        assert (snap["low"] <= snap["close"]).all()
        assert (snap["close"] <= snap["high"]).all()
        assert (snap["volume"] >= previous["volume"]).all()
        assert (snap["volume"] <= bars["volume"]).all()
        assert (snap["value"] <= bars["traded_value"] + 1e-6).all()
        previous = snap
    tau = 370.0 / 390.0  # 15:10
    expected = np.floor(bars["volume"] * volume_fraction(tau))
    snap = market.market_snapshot(DAY, at(DAY, 15, 10), Market.KOSDAQ).set_index("ticker")
    assert (snap["volume"] == expected).all()
    moved = (snap["close"] != bars["close"]).mean()
    assert moved > 0.3  # the 15:10 price is not simply the close


def test_snapshot_is_deterministic_and_utc_is_accepted(market: SimulatedMarket) -> None:
    kst = market.market_snapshot(DAY, at(DAY, 14, 0), Market.KOSPI)
    utc = market.market_snapshot(DAY, datetime(2026, 3, 3, 5, 0, tzinfo=UTC), Market.KOSPI)
    pd.testing.assert_frame_equal(kst, utc)
    again = SimulatedMarket(42, 2500).market_snapshot(DAY, at(DAY, 14, 0), Market.KOSPI)
    pd.testing.assert_frame_equal(kst, again)


def test_index_snapshot_ends_at_the_reference_bar(market: SimulatedMarket) -> None:
    codes = [*KRX_INDICES, "069500", USDKRW]
    bars = market.reference_bars(DAY, DAY, [s for s in default_reference_series()])
    bars = bars[bars["code"].isin(codes)].set_index("code")
    final = market.index_snapshot(DAY, at(DAY, 15, 30), codes).set_index("ticker")
    assert sorted(final.index) == sorted(codes)
    for column in ("open", "high", "low", "close"):
        assert (final[column] == bars.loc[final.index, column]).all(), column
    mid = market.index_snapshot(DAY, at(DAY, 12, 0), codes).set_index("ticker")
    assert (mid["open"] == bars.loc[mid.index, "open"]).all()
    assert (mid["high"] <= bars.loc[mid.index, "high"]).all()
    assert (mid["low"] >= bars.loc[mid.index, "low"]).all()
    assert np.isnan(cell(mid, USDKRW, "volume"))
    assert np.isnan(cell(mid, USDKRW, "value"))
    assert cell(mid, "1001", "volume") < cell(bars, "1001", "volume")
    with pytest.raises(NotFound):
        market.index_snapshot(DAY, at(DAY, 12, 0), ["9999"])


@pytest.mark.parametrize(
    ("when", "match"),
    [
        (datetime(2026, 3, 3, 12, 0), "timezone-aware"),
        (at(DAY, 8, 59), "before the 09:00"),
        (at(date(2026, 3, 4), 10, 0), "not the session day"),
    ],
)
def test_snapshot_rejects_bad_times(market: SimulatedMarket, when: datetime, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        market.market_snapshot(DAY, when)
    with pytest.raises(ValidationError, match=match):
        market.index_snapshot(DAY, when, ["1001"])


def test_snapshot_rejects_a_non_session(market: SimulatedMarket) -> None:
    sunday = date(2026, 3, 1)
    with pytest.raises(ValidationError, match="not a session"):
        market.market_snapshot(sunday, at(sunday, 10, 0))


# --- news follows the movers ------------------------------------------------------------------


def test_simulated_news_names_the_movers(market: SimulatedMarket) -> None:
    movers = market.movers(DAY)
    assert movers
    ids = [f"{i.market.value}:{i.ticker}" for i in movers]
    pairs = [(f"{i.market.value}:{i.ticker}", i.name) for i in market.list_instruments(DAY)]
    plain = SimulatedNewsSource(pairs, seed=42, day=DAY).fetch().items
    with_movers = SimulatedNewsSource(pairs, seed=42, day=DAY, movers=ids).fetch().items
    about = {item.instruments[0] for item in with_movers}
    assert set(ids) <= about
    others = [item for item in with_movers if item.instruments[0] not in ids]
    assert others == [item for item in plain if item.instruments[0] not in ids]
    for item in with_movers:
        assert item.source == "simulated"
        assert item.summary.startswith("[SIMULATED]")
    close = datetime.combine(DAY, time(15, 0), tzinfo=KST)
    for inst, ident in zip(movers, ids, strict=True):
        items = [item for item in with_movers if item.instruments == (ident,)]
        assert 2 <= len(items) <= 3
        assert all(item.published_at is not None and item.published_at <= close for item in items)
        assert inst.ticker in items[0].title
        assert inst.name in items[0].title
        # a positive keyword in the title, none negative: the offline news score is >= 2
        assert keyword_hits(items[0].title).positive
        assert not any(keyword_hits(f"{i.title} / {i.summary}").negative for i in items)
    again = SimulatedNewsSource(pairs, seed=42, day=DAY, movers=ids).fetch().items
    assert again == with_movers

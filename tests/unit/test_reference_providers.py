"""Real reference-data providers, offline: KrxSource's index/ETF bars and snapshots over a
fake KrxApi answering frames shaped like pykrx 1.2.9's (Korean columns, 날짜/티커 index,
pykrx's dtypes; see pykrx/website/krx/market/wrap.py and etx/wrap.py), YahooFxSource over a
fake yfinance Ticker answering like ``yf.Ticker("KRW=X").history`` (volume 0), and the
ReferenceSources router."""

from __future__ import annotations

import os
from datetime import date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.market.base import ReferenceDataSource, SnapshotSource
from quant.market.krx import KrxSource, PykrxApi
from quant.market.reference import ReferenceSources
from quant.market.simulated import SimulatedMarket
from quant.market.snapshot import KST
from quant.market.types import (
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    USDKRW,
    Market,
    ReferenceKind,
    ReferenceSeries,
    default_reference_series,
)
from quant.market.yahoo import YahooFxSource
from tests.unit.test_krx import (
    CAL,
    D2,
    D3,
    D4,
    FakeApi,
    FakeClock,
    FakeSession,
    fake_pykrx,
    market_ohlcv,
)

KOSPI = ReferenceSeries("1001", ReferenceKind.INDEX, "KOSPI")
KODEX = ReferenceSeries("069500", ReferenceKind.ETF, "KOSPI200")
FX = ReferenceSeries(USDKRW, ReferenceKind.FX, "USD/KRW")


def index_ohlcv(rows: dict[str, tuple[float, float, float, float, int, int]]) -> pd.DataFrame:
    """``stock.get_index_ohlcv_by_date(from, to, code, name_display=False)``: index 날짜;
    시가 고가 저가 종가 (float64 points), 거래량 거래대금 상장시가총액 (int64)."""
    frame = pd.DataFrame(
        [(*r, r[5] * 80) for r in rows.values()],
        index=pd.DatetimeIndex(pd.to_datetime(list(rows)), name="날짜"),
        columns=["시가", "고가", "저가", "종가", "거래량", "거래대금", "상장시가총액"],
    )
    return frame.astype(
        {
            "시가": np.float64,
            "고가": np.float64,
            "저가": np.float64,
            "종가": np.float64,
            "거래량": np.int64,
            "거래대금": np.int64,
            "상장시가총액": np.int64,
        }
    ).sort_index()


def etf_ohlcv(rows: dict[str, tuple[int, int, int, int, int, int]]) -> pd.DataFrame:
    """``stock.get_etf_ohlcv_by_date(from, to, code)``: index 날짜; NAV (float64), 시가 고가
    저가 종가 (uint32), 거래량 거래대금 (uint64), 기초지수 (float64)."""
    frame = pd.DataFrame(
        [(r[3] * 1.001, *r, r[3] / 100.0) for r in rows.values()],
        index=pd.DatetimeIndex(pd.to_datetime(list(rows)), name="날짜"),
        columns=["NAV", "시가", "고가", "저가", "종가", "거래량", "거래대금", "기초지수"],
    )
    return frame.astype(
        {
            "NAV": np.float64,
            "시가": np.uint32,
            "고가": np.uint32,
            "저가": np.uint32,
            "종가": np.uint32,
            "거래량": np.uint64,
            "거래대금": np.uint64,
            "기초지수": np.float64,
        }
    ).sort_index()


KOSPI_INDEX = index_ohlcv(
    {
        "2024-01-02": (2_645.47, 2_669.81, 2_642.56, 2_669.81, 414_386_000, 8_801_000_000_000),
        "2024-01-03": (2_659.44, 2_660.47, 2_603.55, 2_607.31, 520_184_000, 11_208_000_000_000),
        "2024-01-04": (2_592.41, 2_602.36, 2_575.36, 2_587.02, 690_110_000, 11_020_000_000_000),
    }
)
KODEX_ETF = etf_ohlcv(
    {
        "2024-01-02": (35_010, 35_450, 34_950, 35_435, 3_873_450, 136_578_000_000),
        "2024-01-03": (35_200, 35_260, 34_555, 34_590, 7_052_001, 245_021_000_000),
        "2024-01-04": (0, 0, 0, 34_320, 0, 0),  # only a close: treated like a halted day
    }
)


def make(answers: dict[tuple[Any, ...], Any]) -> tuple[KrxSource, FakeApi]:
    clock = FakeClock()
    api = FakeApi(clock, answers, 0.25)
    source = KrxSource(api=api, calendar=CAL, clock=clock.clock, pause=clock.pause, retry_wait=0)
    return source, api


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=KST)


# --- KRX reference bars -----------------------------------------------------------------------


def test_krx_implements_the_protocols() -> None:
    source, _ = make({})
    assert isinstance(source, ReferenceDataSource)
    assert isinstance(source, SnapshotSource)


def test_krx_index_and_etf_bars() -> None:
    source, api = make(
        {
            ("index", "20240102", "20240104", "1001"): KOSPI_INDEX,
            ("etf", "20240102", "20240104", "069500"): KODEX_ETF,
        }
    )
    out = source.reference_bars(D2, D4, [KODEX, KOSPI])
    assert tuple(out.columns) == REFERENCE_BAR_COLUMNS
    assert list(out["code"]) == ["069500"] * 3 + ["1001"] * 3
    assert all(type(d) is date for d in out["trade_date"])
    assert list(out["trade_date"][:3]) == [D2, D3, D4]
    for column in REFERENCE_BAR_COLUMNS[2:]:
        assert out[column].dtype == np.float64, column
    kospi = out[out["code"] == "1001"].reset_index(drop=True)
    assert kospi.loc[0, "close"] == pytest.approx(2_669.81)
    assert kospi.loc[1, "volume"] == 520_184_000
    assert kospi.loc[1, "value"] == 11_208_000_000_000
    halted = out[(out["code"] == "069500") & (out["trade_date"] == D4)].iloc[0]
    assert halted["open"] == halted["high"] == halted["low"] == halted["close"] == 34_320
    assert sorted(api.calls) == [
        ("etf", "20240102", "20240104", "069500"),
        ("index", "20240102", "20240104", "1001"),
    ]


def test_krx_rows_outside_the_range_are_dropped() -> None:
    source, _ = make({("index", "20240103", "20240103", "1001"): KOSPI_INDEX})
    out = source.reference_bars(D3, D3, [KOSPI])
    assert list(out["trade_date"]) == [D3]


def test_krx_empty_answer_on_a_session_is_throttling() -> None:
    source, api = make({})
    with pytest.raises(RateLimited, match="get_index_ohlcv_by_date"):
        source.reference_bars(D2, D2, [KOSPI])
    assert len(api.calls) == 3  # retried


def test_krx_no_sessions_no_requests() -> None:
    source, api = make({})
    out = source.reference_bars(date(2024, 1, 6), date(2024, 1, 7), [KOSPI])
    assert out.empty
    assert tuple(out.columns) == REFERENCE_BAR_COLUMNS
    assert api.calls == []


@pytest.mark.parametrize(
    ("series", "match"),
    [
        (FX, "not the FX series"),
        (ReferenceSeries("10011", ReferenceKind.INDEX, "x"), "not four digits"),
        (ReferenceSeries("69500", ReferenceKind.ETF, "x"), "not six characters"),
        (ReferenceSeries(USDKRW, ReferenceKind.ETF, "x"), "USDKRW"),
    ],
)
def test_krx_rejects_series_it_does_not_serve(series: ReferenceSeries, match: str) -> None:
    source, api = make({})
    with pytest.raises(ValidationError, match=match):
        source.reference_bars(D2, D2, [series])
    assert api.calls == []


def test_krx_changed_format_is_permanent() -> None:
    broken = KOSPI_INDEX.rename(columns={"종가": "close"})
    source, _ = make({("index", "20240102", "20240102", "1001"): broken})
    with pytest.raises(PermanentError, match="종가"):
        source.reference_bars(D2, D2, [KOSPI])


# --- KRX snapshots ----------------------------------------------------------------------------


def test_krx_market_snapshot_is_todays_table() -> None:
    kosdaq = market_ohlcv({"060310": (2_370, 2_395, 2_355, 2_365, 152_157, 361_210_535)})
    kospi = market_ohlcv(
        {
            "005930": (78_200, 79_800, 78_200, 79_600, 17_142_847, 1_356_958_839_920),
            "000040": (0, 0, 0, 1_234, 0, 0),  # halted: only 종가
            "000050": (0, 0, 0, 0, 0, 0),  # no price yet
        }
    )
    source, api = make(
        {
            ("ohlcv_market", "20240102", "KOSPI"): kospi,
            ("ohlcv_market", "20240102", "KOSDAQ"): kosdaq,
        }
    )
    out = source.market_snapshot(D2, at(D2, 15, 10))
    assert tuple(out.columns) == SNAPSHOT_COLUMNS
    assert list(out["ticker"]) == ["000040", "005930", "060310"]
    row = out.set_index("ticker").loc["005930"]
    assert (row["open"], row["high"], row["low"], row["close"]) == (78_200, 79_800, 78_200, 79_600)
    assert row["value"] == 1_356_958_839_920
    halted = out.set_index("ticker").loc["000040"]
    assert halted["open"] == halted["close"] == 1_234
    only_kosdaq = source.market_snapshot(D2, at(D2, 10, 0), Market.KOSDAQ)
    assert list(only_kosdaq["ticker"]) == ["060310"]
    assert api.calls[-1] == ("ohlcv_market", "20240102", "KOSDAQ")


def test_krx_index_snapshot() -> None:
    source, _api = make(
        {
            ("index", "20240102", "20240102", "1001"): KOSPI_INDEX.iloc[:1],
            ("etf", "20240102", "20240102", "069500"): KODEX_ETF.iloc[:1],
        }
    )
    out = source.index_snapshot(D2, at(D2, 15, 10), ["1001", "069500"])
    assert tuple(out.columns) == SNAPSHOT_COLUMNS
    assert list(out["ticker"]) == ["069500", "1001"]
    assert out.set_index("ticker").loc["1001", "close"] == pytest.approx(2_669.81)


@pytest.mark.parametrize(
    ("when", "match"),
    [
        (datetime(2024, 1, 2, 12, 0), "timezone-aware"),
        (at(D2, 8, 30), "before the 09:00"),
        (at(D3, 10, 0), "not the session day"),
    ],
)
def test_krx_snapshot_times_are_checked(when: datetime, match: str) -> None:
    source, api = make({})
    with pytest.raises(ValidationError, match=match):
        source.market_snapshot(D2, when)
    with pytest.raises(ValidationError, match=match):
        source.index_snapshot(D2, when, ["1001"])
    holiday = date(2024, 1, 1)
    with pytest.raises(ValidationError, match="not a session"):
        source.market_snapshot(holiday, at(holiday, 10, 0))
    assert api.calls == []


# --- Yahoo USD/KRW ----------------------------------------------------------------------------


def fx_history(rows: dict[str, tuple[float, float, float, float]]) -> pd.DataFrame:
    """``yf.Ticker("KRW=X").history(interval="1d", auto_adjust=True)``: tz-aware index named
    Date at local midnight (Europe/London for FX), Volume 0, Dividends/Stock Splits 0."""
    index = pd.DatetimeIndex(pd.to_datetime(list(rows)), name="Date").tz_localize("Europe/London")
    frame = pd.DataFrame(
        [(*r, 0, 0.0, 0.0) for r in rows.values()],
        index=index,
        columns=["Open", "High", "Low", "Close", "Volume", "Dividends", "Stock Splits"],
    )
    return frame.astype({"Volume": np.int64})


KRW_X = fx_history(
    {
        "2024-01-01": (1_288.0, 1_290.1, 1_283.5, 1_288.0),
        "2024-01-02": (1_291.7, 1_306.0, 1_290.9, 1_291.7),
        "2024-01-03": (1_300.8, 1_312.6, 1_300.2, 1_300.8),
    }
)


class FxTicker:
    def __init__(self, answer: pd.DataFrame | BaseException) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def history(self, **kwargs: Any) -> pd.DataFrame:
        self.calls.append(kwargs)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_yahoo_usdkrw() -> None:
    tickers: dict[str, FxTicker] = {}

    def factory(symbol: str) -> FxTicker:
        tickers[symbol] = FxTicker(KRW_X)
        return tickers[symbol]

    source = YahooFxSource(ticker_factory=factory)
    assert isinstance(source, ReferenceDataSource)
    out = source.reference_bars(D2, D3, [FX])
    assert tuple(out.columns) == REFERENCE_BAR_COLUMNS
    assert list(out["trade_date"]) == [D2, D3]
    assert all(type(d) is date for d in out["trade_date"])
    assert list(out["close"]) == [1_291.7, 1_300.8]
    assert out["volume"].isna().all()
    assert out["value"].isna().all()
    assert list(tickers) == ["KRW=X"]
    assert tickers["KRW=X"].calls[0]["end"] == "2024-01-04"  # Yahoo's end is exclusive
    assert tickers["KRW=X"].calls[0]["interval"] == "1d"


def test_yahoo_fx_rejects_other_series() -> None:
    source = YahooFxSource(ticker_factory=lambda s: FxTicker(KRW_X))
    with pytest.raises(ValidationError, match="FX series only"):
        source.reference_bars(D2, D3, [KOSPI])
    with pytest.raises(NotFound, match="EURKRW"):
        source.reference_bars(D2, D3, [ReferenceSeries("EURKRW", ReferenceKind.FX, "EUR/KRW")])


def test_yahoo_fx_network_failure_is_transient() -> None:
    source = YahooFxSource(ticker_factory=lambda s: FxTicker(ConnectionError("reset")))
    with pytest.raises(ServiceUnavailable, match="KRW=X"):
        source.reference_bars(D2, D3, [FX])


# --- routing ----------------------------------------------------------------------------------


def test_reference_sources_route_by_kind() -> None:
    krx, api = make({("index", "20240102", "20240103", "1001"): KOSPI_INDEX})
    fx = YahooFxSource(ticker_factory=lambda s: FxTicker(KRW_X))
    both = ReferenceSources(krx, fx)
    assert isinstance(both, ReferenceDataSource)
    assert both.name == "krx+yfinance"
    assert both.simulated is False
    out = both.reference_bars(D2, D3, [FX, KOSPI])
    assert list(out["code"]) == ["1001", "1001", USDKRW, USDKRW]
    assert api.calls == [("index", "20240102", "20240103", "1001")]
    only_fx = both.reference_bars(D2, D3, [FX])
    assert set(only_fx["code"]) == {USDKRW}
    assert len(api.calls) == 1  # KRX not asked
    empty = both.reference_bars(D2, D3, [])
    assert empty.empty
    assert tuple(empty.columns) == REFERENCE_BAR_COLUMNS


def test_reference_sources_over_the_simulated_market_are_labelled() -> None:
    sim = SimulatedMarket(seed=3, universe_size=80, epoch=date(2024, 1, 2))
    both = ReferenceSources(sim, sim)
    assert both.simulated is True
    out = both.reference_bars(date(2024, 3, 4), date(2024, 3, 8), default_reference_series())
    direct = sim.reference_bars(date(2024, 3, 4), date(2024, 3, 8), default_reference_series())
    pd.testing.assert_frame_equal(out, direct)


# --- the pykrx adapter ------------------------------------------------------------------------


def test_pykrx_adapter_calls_the_index_and_etf_functions() -> None:

    FakeSession.accept = True
    import_module, modules = fake_pykrx({"market": KOSPI_INDEX})
    calls: list[tuple[Any, ...]] = []
    stock = modules["pykrx.stock"]

    def index_by_date(fromdate: str, todate: str, ticker: str, **kwargs: Any) -> pd.DataFrame:
        calls.append(("index", fromdate, todate, ticker, kwargs))
        return KOSPI_INDEX

    def etf_by_date(fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        calls.append(("etf", fromdate, todate, ticker))
        return KODEX_ETF

    stock.get_index_ohlcv_by_date = index_by_date
    stock.get_etf_ohlcv_by_date = etf_by_date
    clock = FakeClock()
    source = KrxSource(
        api=PykrxApi("id", "pw", import_module=import_module),
        calendar=CAL,
        clock=clock.clock,
        pause=clock.pause,
    )
    out = source.reference_bars(D2, D4, [KOSPI, KODEX])
    assert len(out) == 6
    assert calls == [
        ("index", "20240102", "20240104", "1001", {"name_display": False}),
        ("etf", "20240102", "20240104", "069500"),
    ]


# --- live -------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_krx_kospi_and_kodex200() -> None:
    krx_id, krx_pw = os.environ.get("KRX_ID"), os.environ.get("KRX_PW")
    if not (krx_id and krx_pw):
        pytest.skip("set KRX_ID and KRX_PW (a data.krx.co.kr account) for the live KRX test")
    out = KrxSource(krx_id, krx_pw).reference_bars(D2, D4, [KOSPI, KODEX])
    assert out.groupby("code").size().to_dict() == {"069500": 3, "1001": 3}
    assert (out.loc[out["code"] == "1001", "close"].between(1_000, 10_000)).all()
    assert (out["value"] > 0).all()


@pytest.mark.live
def test_live_yahoo_usdkrw() -> None:
    out = YahooFxSource().reference_bars(D2, D4, [FX])
    assert len(out) >= 2
    assert out["close"].between(900, 2_000).all()

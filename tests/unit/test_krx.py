"""KrxSource over a fake KrxApi, and PykrxApi over real pykrx with a faked HTTP layer.

The fake API returns frames built like pykrx 1.2.9 builds them (Korean column names, the
티커/날짜 index, pykrx's dtypes; see pykrx/website/krx/market/wrap.py). The adapter tests run
pykrx's own parsing on raw KRX-shaped JSON (tests/fixtures/krx/krx_responses.json) with only
the HTTP POST replaced, so the shapes KrxSource relies on are checked against pykrx's code.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.calendar import WeekdayCalendar
from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.market.base import MarketDataSource
from quant.market.krx import KrxSource, PykrxApi
from quant.market.types import DAILY_CANDLE_COLUMNS, INVESTOR_FLOW_COLUMNS, Market

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "krx" / "krx_responses.json"

# 2024-01-01 is a holiday; Jan 2-5 and 8 are sessions; Jan 6-7 a weekend.
CAL = WeekdayCalendar("test KRX", holidays=[date(2024, 1, 1)])
D2, D3, D4, D5 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)

SECRET_ID = "quant-user-7f3a"
SECRET_PW = "pw-S3cr3t!xyz"


# --- frames shaped like pykrx's ---------------------------------------------------------------


def market_ohlcv(rows: dict[str, tuple[int, int, int, int, int, int]]) -> pd.DataFrame:
    """``stock.get_market_ohlcv(date, market=…)``: index 티커; 시가 고가 저가 종가 거래량 (int32),
    거래대금 (int64), 등락률 (float32), 시가총액 (int64)."""
    frame = pd.DataFrame(
        [(*r, 0.0, r[3] * 1_000) for r in rows.values()],
        index=pd.Index(list(rows), name="티커"),
        columns=["시가", "고가", "저가", "종가", "거래량", "거래대금", "등락률", "시가총액"],
    )
    return frame.astype(
        {
            "시가": np.int32,
            "고가": np.int32,
            "저가": np.int32,
            "종가": np.int32,
            "거래량": np.int32,
            "거래대금": np.int64,
            "등락률": np.float32,
            "시가총액": np.int64,
        }
    )


def ticker_ohlcv(rows: dict[str, tuple[int, int, int, int, int, int]]) -> pd.DataFrame:
    """``stock.get_market_ohlcv(from, to, ticker, adjusted=False)``: index 날짜 (ascending)."""
    frame = pd.DataFrame(
        [(*r, 0.0) for r in rows.values()],
        index=pd.DatetimeIndex(pd.to_datetime(list(rows)), name="날짜"),
        columns=["시가", "고가", "저가", "종가", "거래량", "거래대금", "등락률"],
    )
    frame = frame.astype(
        {
            "시가": np.int32,
            "고가": np.int32,
            "저가": np.int32,
            "종가": np.int32,
            "거래량": np.int32,
            "거래대금": np.int64,
            "등락률": np.float32,
        }
    )
    return frame.sort_index()


def investor_table(rows: dict[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    """``get_market_trading_value/volume_by_date``: index 날짜; 기관합계 기타법인 개인 외국인합계
    전체 (int64); 전체 is 0 for net buying."""
    frame = pd.DataFrame(
        [(*r, 0) for r in rows.values()],
        index=pd.DatetimeIndex(pd.to_datetime(list(rows)), name="날짜"),
        columns=["기관합계", "기타법인", "개인", "외국인합계", "전체"],
    )
    return frame.astype(np.int64).sort_index()


def net_purchases(rows: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """``get_market_net_purchases_of_equities``: index 티커; (net shares, net KRW) per row."""
    data = [
        ("이름" + t, 1_000, 1_000 + sh, sh, 5_000_000, 5_000_000 + krw, krw)
        for t, (sh, krw) in rows.items()
    ]
    return pd.DataFrame(
        data,
        index=pd.Index(list(rows), name="티커"),
        columns=[
            "종목명",
            "매도거래량",
            "매수거래량",
            "순매수거래량",
            "매도거래대금",
            "매수거래대금",
            "순매수거래대금",
        ],
    )


# --- fakes ------------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when someone pauses or a request 'takes time'."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class FakeApi:
    """A KrxApi answering from ``answers[(method, *args)]``; a list is consumed in order (its
    last entry repeats). Records every call with the fake clock's time at its start and end."""

    def __init__(self, clock: FakeClock, answers: dict[tuple[Any, ...], Any], duration: float):
        self.clock = clock
        self.answers = answers
        self.duration = duration
        self.calls: list[tuple[Any, ...]] = []
        self.spans: list[tuple[float, float]] = []

    def _answer(self, key: tuple[Any, ...]) -> Any:
        started = self.clock.now
        self.calls.append(key)
        self.clock.now += self.duration
        self.spans.append((started, self.clock.now))
        answer = self.answers.get(key, pd.DataFrame())
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _frame(self, key: tuple[Any, ...]) -> pd.DataFrame:
        answer = self._answer(key)
        assert isinstance(answer, pd.DataFrame)
        return answer

    def get_market_ticker_names(self, date: str, market: str) -> dict[str, str]:
        answer = self._answer(("names", date, market))
        return {} if isinstance(answer, pd.DataFrame) else answer

    def get_market_ohlcv_by_ticker(self, date: str, market: str) -> pd.DataFrame:
        return self._frame(("ohlcv_market", date, market))

    def get_market_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        return self._frame(("ohlcv_ticker", fromdate, todate, ticker))

    def get_market_trading_value_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        return self._frame(("value", fromdate, todate, ticker))

    def get_market_trading_volume_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        return self._frame(("volume", fromdate, todate, ticker))

    def get_market_net_purchases_of_equities(
        self, fromdate: str, todate: str, market: str, investor: str
    ) -> pd.DataFrame:
        return self._frame(("net", fromdate, todate, market, investor))

    def get_index_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        return self._frame(("index", fromdate, todate, ticker))

    def get_etf_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        return self._frame(("etf", fromdate, todate, ticker))


KOSPI_0102 = market_ohlcv(
    {
        "005930": (78_200, 79_800, 78_200, 79_600, 17_142_847, 1_356_958_839_920),
        "000660": (139_100, 139_900, 136_300, 137_500, 3_077_658, 425_203_530_500),
        "000040": (0, 0, 0, 1_234, 0, 0),  # halted: only 종가
        "000050": (0, 0, 0, 0, 0, 0),  # no price at all
    }
)
KOSPI_0103 = market_ohlcv(
    {
        "005930": (78_500, 78_800, 77_000, 77_000, 21_753_644, 1_689_224_000_000),
        "000660": (137_000, 138_000, 135_000, 136_000, 2_000_000, 272_000_000_000),
    }
)
KOSDAQ_0102 = market_ohlcv({"060310": (2_370, 2_395, 2_355, 2_365, 152_157, 361_210_535)})


def make(
    answers: dict[tuple[Any, ...], Any] | None = None,
    *,
    duration: float = 0.25,
    **kwargs: Any,
) -> tuple[KrxSource, FakeApi, FakeClock]:
    clock = FakeClock()
    api = FakeApi(clock, answers or {}, duration)
    source = KrxSource(api=api, calendar=CAL, clock=clock.clock, pause=clock.pause, **kwargs)
    return source, api, clock


# --- daily candles ----------------------------------------------------------------------------


def test_is_a_market_data_source_labelled_real():
    source, _, _ = make()
    assert isinstance(source, MarketDataSource)
    assert source.name == "krx"
    assert source.simulated is False


def test_market_wide_candles_map_korean_columns_per_session():
    source, api, _ = make(
        {
            ("ohlcv_market", "20240102", "KOSPI"): KOSPI_0102,
            ("ohlcv_market", "20240103", "KOSPI"): KOSPI_0103,
        }
    )
    out = source.daily_candles(date(2024, 1, 1), D3, market=Market.KOSPI)

    # one request per session (Jan 1 is a holiday: not asked)
    assert api.calls == [
        ("ohlcv_market", "20240102", "KOSPI"),
        ("ohlcv_market", "20240103", "KOSPI"),
    ]
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)
    assert isinstance(out.index, pd.RangeIndex)
    assert list(zip(out["ticker"], out["trade_date"], strict=True)) == [
        ("000040", D2),
        ("000660", D2),
        ("000660", D3),
        ("005930", D2),
        ("005930", D3),
    ]
    assert set(out["market"]) == {"KOSPI"}
    assert all(type(d) is date for d in out["trade_date"])
    for column in DAILY_CANDLE_COLUMNS[3:]:
        assert out[column].dtype == np.float64, column
    samsung = out[(out["ticker"] == "005930") & (out["trade_date"] == D2)].iloc[0]
    assert (samsung["open"], samsung["high"], samsung["low"], samsung["close"]) == (
        78_200.0,
        79_800.0,
        78_200.0,
        79_600.0,
    )
    assert samsung["volume"] == 17_142_847.0
    assert samsung["traded_value"] == 1_356_958_839_920.0  # 거래대금, KRW


def test_halted_stock_gets_its_close_as_ohlc_and_zero_volume_and_priceless_rows_are_dropped():
    source, _, _ = make({("ohlcv_market", "20240102", "KOSPI"): KOSPI_0102})
    out = source.daily_candles(D2, D2, market=Market.KOSPI)
    halted = out[out["ticker"] == "000040"].iloc[0]
    assert (halted["open"], halted["high"], halted["low"], halted["close"]) == (1234.0,) * 4
    assert halted["volume"] == 0.0
    assert halted["traded_value"] == 0.0
    assert "000050" not in set(out["ticker"])  # 종가 0: no bar rather than a zero-price bar


def test_whole_krx_means_kospi_and_kosdaq():
    source, api, _ = make(
        {
            ("ohlcv_market", "20240102", "KOSPI"): KOSPI_0102,
            ("ohlcv_market", "20240102", "KOSDAQ"): KOSDAQ_0102,
        }
    )
    out = source.daily_candles(D2, D2)
    assert {c[2] for c in api.calls} == {"KOSPI", "KOSDAQ"}
    assert out.loc[out["ticker"] == "060310", "market"].tolist() == ["KOSDAQ"]


def test_all_zero_table_on_a_calendar_session_is_a_holiday_not_throttling(caplog):
    zeros = market_ohlcv({"005930": (0, 0, 0, 0, 0, 0), "000660": (0, 0, 0, 0, 0, 0)})
    source, api, _ = make({("ohlcv_market", "20240102", "KOSPI"): zeros})
    with caplog.at_level(logging.WARNING, logger="quant.market.krx"):
        out = source.daily_candles(D2, D2, market=Market.KOSPI)
    assert out.empty
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)
    assert len(api.calls) == 1  # not retried
    assert "holiday" in caplog.text


def test_few_tickers_use_one_range_request_per_ticker():
    frame = ticker_ohlcv(
        {
            "2024-01-02": (78_200, 79_800, 78_200, 79_600, 17_142_847, 1_356_958_839_920),
            "2024-01-03": (0, 0, 0, 77_000, 0, 0),  # halted that day
            "2024-01-04": (76_100, 77_300, 76_100, 77_000, 15_324_439, 1_177_269_385_916),
        }
    )
    source, api, _ = make({("ohlcv_ticker", "20240102", "20240104", "005930"): frame})
    out = source.daily_candles(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert api.calls == [("ohlcv_ticker", "20240102", "20240104", "005930")]
    assert out["trade_date"].tolist() == [D2, D3, D4]
    assert out["market"].tolist() == ["KOSPI"] * 3
    assert out["close"].tolist() == [79_600.0, 77_000.0, 77_000.0]
    halted = out.iloc[1]
    assert (halted["open"], halted["high"], halted["low"], halted["volume"]) == (
        77_000.0,
        77_000.0,
        77_000.0,
        0.0,
    )
    assert out["traded_value"].iloc[2] == 1_177_269_385_916.0


def test_range_rows_outside_the_request_are_dropped():
    frame = ticker_ohlcv(
        {
            "2023-12-28": (1, 2, 1, 2, 10, 20),
            "2024-01-02": (78_200, 79_800, 78_200, 79_600, 17_142_847, 1_356_958_839_920),
            "2024-01-05": (1, 2, 1, 2, 10, 20),
        }
    )
    source, _, _ = make({("ohlcv_ticker", "20240102", "20240104", "005930"): frame})
    out = source.daily_candles(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert out["trade_date"].tolist() == [D2]


def test_many_tickers_over_few_sessions_use_the_market_table_filtered():
    tickers = ["005930", "000660", "000040"]
    source, api, _ = make({("ohlcv_market", "20240102", "KOSPI"): KOSPI_0102})
    out = source.daily_candles(D2, D2, market=Market.KOSPI, tickers=tickers)
    assert api.calls == [("ohlcv_market", "20240102", "KOSPI")]  # 1 request, not 3
    assert sorted(out["ticker"]) == ["000040", "000660", "005930"]


def test_tickers_without_market_are_located_in_the_listing_of_the_last_session():
    names_kospi = {"005930": "삼성전자", "000660": "SK하이닉스"}
    names_kosdaq = {"060310": "3S"}
    frame = ticker_ohlcv({"2024-01-05": (1, 2, 1, 2, 10, 20)})
    source, api, _ = make(
        {
            ("names", "20240105", "KOSPI"): names_kospi,
            ("names", "20240105", "KOSDAQ"): names_kosdaq,
            ("ohlcv_ticker", "20240105", "20240107", "060310"): frame,
        }
    )
    # Jan 7 is a Sunday: the listing of Friday Jan 5 is used
    out = source.daily_candles(D5, date(2024, 1, 7), tickers=["060310"])
    assert out["market"].tolist() == ["KOSDAQ"]
    assert ("names", "20240105", "KOSPI") in api.calls

    with pytest.raises(NotFound, match="999999"):
        source.daily_candles(D5, date(2024, 1, 7), tickers=["999999"])
    # the listings were cached: no new listing requests for the second call
    assert sum(1 for c in api.calls if c[0] == "names") == 2


def test_range_without_sessions_makes_no_request():
    source, api, _ = make()
    out = source.daily_candles(date(2024, 1, 6), date(2024, 1, 7), market=Market.KOSPI)
    assert out.empty
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)
    assert api.calls == []


# --- investor flows ---------------------------------------------------------------------------


def test_per_ticker_flows_take_shares_from_volume_and_krw_from_value():
    volume = investor_table(
        {  # 기관합계 기타법인 개인 외국인합계 (shares)
            "2024-01-02": (-300_000, 5_000, 95_000, 200_000),
            "2024-01-03": (500_000, -10_000, -1_490_000, 1_000_000),
        }
    )
    value = investor_table(
        {  # same columns, KRW
            "2024-01-02": (-23_880_000_000, 398_000_000, 7_562_000_000, 15_920_000_000),
            "2024-01-03": (38_500_000_000, -770_000_000, -114_730_000_000, 77_000_000_000),
        }
    )
    source, api, _ = make(
        {
            ("value", "20240102", "20240103", "005930"): value,
            ("volume", "20240102", "20240103", "005930"): volume,
        }
    )
    out = source.investor_flows(D2, D3, market=Market.KOSPI, tickers=["005930"])
    assert sorted(c[0] for c in api.calls) == ["value", "volume"]
    assert list(out.columns) == list(INVESTOR_FLOW_COLUMNS)
    for column in INVESTOR_FLOW_COLUMNS[3:]:
        assert out[column].dtype == np.int64, column
    first = out.iloc[0]
    assert first["trade_date"] == D2
    assert first["foreign_net_shares"] == 200_000
    assert first["institution_net_shares"] == -300_000
    assert first["individual_net_shares"] == 95_000
    assert first["foreign_net_krw"] == 15_920_000_000
    assert first["institution_net_krw"] == -23_880_000_000
    assert first["individual_net_krw"] == 7_562_000_000
    assert out["individual_net_shares"].tolist() == [95_000, -1_490_000]


def test_market_flows_sum_foreign_groups_and_fill_missing_investors_with_zero():
    answers = {
        ("net", "20240102", "20240102", "KOSPI", "외국인"): net_purchases(
            {"005930": (190_000, 15_124_000_000), "000660": (-50_000, -6_875_000_000)}
        ),
        ("net", "20240102", "20240102", "KOSPI", "기타외국인"): net_purchases(
            {"005930": (10_000, 796_000_000)}
        ),
        ("net", "20240102", "20240102", "KOSPI", "기관합계"): net_purchases(
            {"000660": (20_000, 2_750_000_000), "005930": (-300_000, -23_880_000_000)}
        ),
        ("net", "20240102", "20240102", "KOSPI", "개인"): net_purchases(
            {"005930": (95_000, 7_562_000_000), "000660": (30_000, 4_125_000_000)}
        ),
    }
    source, api, _ = make(answers)
    out = source.investor_flows(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 4
    assert out["ticker"].tolist() == ["000660", "005930"]
    hynix, samsung = out.iloc[0], out.iloc[1]
    assert samsung["foreign_net_shares"] == 200_000  # 외국인 + 기타외국인
    assert samsung["foreign_net_krw"] == 15_920_000_000
    assert samsung["institution_net_shares"] == -300_000
    assert samsung["individual_net_krw"] == 7_562_000_000
    assert hynix["foreign_net_shares"] == -50_000  # no 기타외국인 row: counted as 0
    assert hynix["institution_net_krw"] == 2_750_000_000


# --- throttling, failures, pacing -------------------------------------------------------------


def test_empty_answer_on_a_session_is_retried_then_rate_limited():
    source, api, clock = make(attempts=3, retry_wait=2.0)
    with pytest.raises(RateLimited, match="empty") as info:
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 3
    assert "3 attempts" in str(info.value)
    # backoff waits of 2 s and 4 s between the attempts (each longer than the 1 s spacing)
    assert [p for p in clock.pauses if p >= 1.5] == [2.0, 4.0]


def test_a_throttled_answer_that_recovers_is_used():
    source, api, _ = make(
        {("ohlcv_market", "20240102", "KOSPI"): [pd.DataFrame(), KOSPI_0102]}, attempts=3
    )
    out = source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 2
    assert "005930" in set(out["ticker"])


def test_empty_answer_for_a_listing_is_rate_limited():
    source, api, _ = make(attempts=2)
    with pytest.raises(RateLimited):
        source.list_instruments(D2, Market.KOSPI)
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("connection reset"),
        TimeoutError("read timed out"),
        json.JSONDecodeError("Expecting value", "<html>", 0),
    ],
    ids=["ConnectionError", "Timeout", "JSONDecodeError"],
)
def test_network_failures_become_service_unavailable_after_retries(error):
    source, api, _ = make({("ohlcv_market", "20240102", "KOSPI"): error}, attempts=3)
    with pytest.raises(ServiceUnavailable, match=type(error).__name__):
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 3


def test_requests_connection_error_is_service_unavailable():
    requests = pytest.importorskip("requests")
    source, _, _ = make(
        {("ohlcv_market", "20240102", "KOSPI"): requests.exceptions.ConnectionError("dns")},
        attempts=1,
    )
    with pytest.raises(ServiceUnavailable):
        source.daily_candles(D2, D2, market=Market.KOSPI)


def test_permanent_errors_are_not_retried():
    source, api, _ = make(
        {("ohlcv_ticker", "20240102", "20240102", "123456"): NotFound("unknown ticker")}
    )
    with pytest.raises(NotFound):
        source.daily_candles(D2, D2, market=Market.KOSPI, tickers=["123456"])
    assert len(api.calls) == 1


def test_changed_columns_are_a_permanent_error():
    renamed = KOSPI_0102.rename(columns={"거래대금": "TRDVAL"})
    source, api, _ = make({("ohlcv_market", "20240102", "KOSPI"): renamed})
    with pytest.raises(PermanentError, match="거래대금"):
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 1


def test_requests_are_at_least_one_second_apart():
    answers = {
        ("ohlcv_market", d, m): KOSPI_0102
        for d in ("20240102", "20240103", "20240104", "20240105")
        for m in ("KOSPI", "KOSDAQ")
    }
    source, api, clock = make(answers, duration=0.3)
    source.daily_candles(D2, D5)
    assert len(api.spans) == 8
    for (_, previous_end), (start, _) in zip(api.spans, api.spans[1:], strict=False):
        assert start - previous_end >= 1.0 - 1e-9
    # each request takes 0.3 s of fake time, so 1.0 s is waited out after each one
    assert clock.pauses == pytest.approx([1.0] * 7)


def test_slow_requests_need_no_extra_pause():
    answers = {("ohlcv_market", d, "KOSPI"): KOSPI_0102 for d in ("20240102", "20240103")}
    source, _, clock = make(answers, duration=1.5)
    clock.now = 5_000.0
    source.daily_candles(D2, D3, market=Market.KOSPI)
    assert clock.pauses == pytest.approx([1.0])  # spacing counts from the END of a request


def test_acquire_is_called_before_every_request_including_retries():
    calls: list[int] = []
    seen: list[FakeApi] = []
    source, api, _ = make(
        {("ohlcv_market", "20240102", "KOSPI"): [pd.DataFrame(), KOSPI_0102]},
        acquire=lambda: calls.append(len(seen[0].calls)),
    )
    seen.append(api)
    source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 2
    assert calls == [0, 1]  # once before each request


def test_an_acquire_failure_propagates_unretried():
    def refuse() -> None:
        raise RateLimited("global limiter says no")

    source, api, _ = make(acquire=refuse, attempts=3)
    with pytest.raises(RateLimited, match="global limiter"):
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert api.calls == []


# --- listings and arguments -------------------------------------------------------------------


def test_list_instruments_uses_the_last_session_on_or_before_as_of():
    source, api, _ = make(
        {
            ("names", "20240105", "KOSPI"): {"005930": "삼성전자", "000660": "SK하이닉스"},
            ("names", "20240105", "KOSDAQ"): {"060310": "3S"},
        }
    )
    out = source.list_instruments(date(2024, 1, 6))  # a Saturday
    assert [(i.market, i.ticker, i.name) for i in out] == [
        (Market.KOSPI, "000660", "SK하이닉스"),
        (Market.KOSPI, "005930", "삼성전자"),
        (Market.KOSDAQ, "060310", "3S"),
    ]
    assert all(i.currency == "KRW" for i in out)
    assert {c[1] for c in api.calls} == {"20240105"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"market": Market.UPBIT}, "market"),
        ({"tickers": "005930"}, "tickers"),
        ({"tickers": ["5930"]}, "tickers"),
    ],
)
def test_bad_arguments_are_validation_errors(kwargs, field):
    source, api, _ = make()
    with pytest.raises(ValidationError) as info:
        source.daily_candles(D2, D2, **kwargs)
    assert info.value.field == field
    assert api.calls == []


def test_start_after_end_is_rejected():
    source, _, _ = make()
    with pytest.raises(ValidationError, match="after"):
        source.investor_flows(D3, D2)


def test_spacing_below_one_second_is_refused():
    with pytest.raises(ValidationError, match="min_interval"):
        make(min_interval=0.5)


def test_without_an_account_the_real_api_cannot_be_built():
    with pytest.raises(ConfigError, match="KRX_ID"):
        KrxSource(None, None)
    with pytest.raises(ConfigError):
        KrxSource("someone", "")


# --- purity, credentials ----------------------------------------------------------------------


def test_importing_and_constructing_does_not_import_pykrx():
    code = (
        "import sys\n"
        "import quant.market.krx as k\n"
        "assert 'pykrx' not in sys.modules, 'imported by the module'\n"
        "k.KrxSource('id', 'pw')\n"
        "assert 'pykrx' not in sys.modules, 'imported by the constructor'\n"
        "print('clean')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


class FakeSession:
    """pykrx's KRXSession as far as PykrxApi uses it; prints like pykrx does."""

    accept = True
    logins = 0

    def __init__(self) -> None:
        self.session = type("Http", (), {"request": lambda *a, **k: None})()
        self.valid = False

    def refresh(self, login_id: str, login_pw: str) -> bool:
        type(self).logins += 1
        print(f"  로그인 ID: {login_id} / {login_pw}")  # worse than pykrx: both
        self.valid = type(self).accept
        return self.valid

    def is_valid(self, buffer_seconds: int = 300) -> bool:
        return self.valid


def fake_pykrx(frames: dict[str, pd.DataFrame]) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """An ``import_module`` serving fake pykrx modules that print at import like pykrx."""
    auth = type("Auth", (), {})()
    auth.KRXSession = FakeSession
    auth._auth_session = None

    def set_auth_session(session: Any) -> None:
        auth._auth_session = session

    auth.set_auth_session = set_auth_session
    stock = type("Stock", (), {})()
    stock.get_market_ohlcv_by_ticker = lambda date, market: frames["market"]
    krx = type("Krx", (), {})()
    modules = {"pykrx.stock": stock, "pykrx.website.comm.auth": auth, "pykrx.website.krx": krx}

    def import_module(name: str) -> Any:
        if name == "pykrx.stock":
            print(f"KRX 로그인 시도...\n  로그인 ID: {SECRET_ID}")  # pykrx's import-time login
        return modules[name]

    return import_module, modules


def test_credentials_are_never_printed_logged_or_shown(capsys, caplog):
    FakeSession.accept, FakeSession.logins = True, 0
    import_module, modules = fake_pykrx({"market": KOSPI_0102})
    api = PykrxApi(SECRET_ID, SECRET_PW, import_module=import_module)
    clock = FakeClock()
    source = KrxSource(api=api, calendar=CAL, clock=clock.clock, pause=clock.pause)
    with caplog.at_level(logging.DEBUG):
        out = source.daily_candles(D2, D2, market=Market.KOSPI)
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert not out.empty
    assert FakeSession.logins == 1  # the session is reused while valid
    assert modules["pykrx.website.comm.auth"]._auth_session is not None
    printed = capsys.readouterr()
    shown = printed.out + printed.err + caplog.text + repr(source) + repr(api)
    assert "로그인 ID" in caplog.text  # pykrx's output was relayed to the log ...
    assert SECRET_ID not in shown  # ... with the credentials masked
    assert SECRET_PW not in shown


def test_rejected_login_is_a_config_error_not_retried(capsys):
    FakeSession.accept, FakeSession.logins = False, 0
    import_module, _ = fake_pykrx({"market": KOSPI_0102})
    clock = FakeClock()
    source = KrxSource(
        api=PykrxApi(SECRET_ID, SECRET_PW, import_module=import_module),
        calendar=CAL,
        clock=clock.clock,
        pause=clock.pause,
    )
    with pytest.raises(ConfigError, match="login failed") as info:
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert FakeSession.logins == 1
    assert SECRET_PW not in str(info.value)
    assert SECRET_ID not in capsys.readouterr().out


def test_missing_pykrx_is_a_config_error():
    def import_module(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    source = KrxSource(
        api=PykrxApi("a", "b", import_module=import_module), calendar=CAL, pause=lambda s: None
    )
    with pytest.raises(ConfigError, match="pykrx"):
        source.daily_candles(D2, D2, market=Market.KOSPI)


def test_pykrx_requests_get_a_default_timeout_once():
    from quant.market.krx import _with_default_timeout

    seen: list[dict[str, Any]] = []

    class Http:
        def request(self, method: str, url: str, **kwargs: Any) -> None:
            seen.append(kwargs)

    http = Http()
    _with_default_timeout(http, 30.0)
    _with_default_timeout(http, 99.0)  # already wrapped: unchanged
    http.request("POST", "https://data.krx.co.kr/x", data={})
    http.request("POST", "https://data.krx.co.kr/x", timeout=15)
    assert [k.get("timeout") for k in seen] == [30.0, 15]


# --- PykrxApi over real pykrx, HTTP faked -----------------------------------------------------


class _Response:
    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def json(self) -> dict[str, Any]:
        return self._payload


@pytest.fixture
def real_pykrx(monkeypatch):
    """Real pykrx 1.2.9 with its POST to data.krx.co.kr answered from the fixture file and its
    login replaced; yields the list of request parameters sent."""
    monkeypatch.delenv("KRX_ID", raising=False)
    monkeypatch.delenv("KRX_PW", raising=False)
    import pykrx.stock  # type: ignore[import-untyped]  # noqa: F401  (prints "KRX 로그인 실패")
    from pykrx.website.comm import auth, webio  # type: ignore[import-untyped]
    from pykrx.website.krx.market import ticker  # type: ignore[import-untyped]

    fixtures = json.loads(FIXTURE.read_text(encoding="utf-8"))
    sent: list[dict[str, Any]] = []

    def post(self: Any, **params: Any) -> _Response:
        sent.append(params)
        bld = params["bld"].rsplit("/", 1)[-1]
        if bld.startswith("finder_"):
            key = bld
        elif bld == "MDCSTAT01501":
            key = f"{bld}/{params['mktId']}/{params['trdDd']}"
        elif bld == "MDCSTAT01701":
            key = f"{bld}/{params['isuCd']}"
        elif bld == "MDCSTAT02302":
            key = f"{bld}/{params['isuCd']}/{params['trdVolVal']}"
        elif bld == "MDCSTAT02401":
            key = f"{bld}/{params['mktId']}/{params['strtDd']}/{params['invstTpCd']}"
        else:
            key = bld
        return _Response(fixtures.get(key, {"output": [], "OutBlock_1": [], "block1": []}))

    def refresh(self: Any, login_id: str, login_pw: str) -> bool:
        self.is_authenticated = True
        self.expiry_time = time.time() + 3600
        return True

    monkeypatch.setattr(webio.Post, "read", post)
    monkeypatch.setattr(auth.KRXSession, "refresh", refresh)
    monkeypatch.setattr(auth, "_auth_session", None)
    monkeypatch.setattr(ticker.StockTicker, "_instance", None)
    return sent


def real_source() -> KrxSource:
    clock = FakeClock()
    return KrxSource(
        api=PykrxApi(SECRET_ID, SECRET_PW), calendar=CAL, clock=clock.clock, pause=clock.pause
    )


def test_pykrx_market_table_shape_is_what_krxsource_maps(real_pykrx):
    source = real_source()
    out = source.daily_candles(D2, D2)
    assert out[["market", "ticker"]].values.tolist() == [
        ["KOSPI", "000040"],
        ["KOSPI", "000660"],
        ["KOSPI", "005930"],
        ["KOSDAQ", "060310"],
    ]
    halted = out.iloc[0]
    assert (halted["open"], halted["close"], halted["volume"]) == (1234.0, 1234.0, 0.0)
    samsung = out.iloc[2]
    assert samsung["traded_value"] == 1_356_958_839_920.0
    assert samsung["high"] == 79_800.0
    # pykrx was asked for the STK (KOSPI) and KSQ (KOSDAQ) all-stock tables of that day
    assert {(p.get("mktId"), p.get("trdDd")) for p in real_pykrx} == {
        ("STK", "20240102"),
        ("KSQ", "20240102"),
    }


def test_pykrx_listing_gives_point_in_time_names(real_pykrx):
    out = real_source().list_instruments(D2, Market.KOSPI)
    assert [(i.ticker, i.name) for i in out] == [
        ("000040", "KR모터스"),
        ("000660", "SK하이닉스"),
        ("005930", "삼성전자"),
    ]


def test_pykrx_per_ticker_range_and_flows_shapes(real_pykrx):
    source = real_source()
    candles = source.daily_candles(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert candles["trade_date"].tolist() == [D2, D3, D4]  # KRX sends newest first
    assert candles["close"].tolist() == [79_600.0, 77_000.0, 77_000.0]
    assert candles["traded_value"].iloc[1] == 1_689_224_000_000.0
    assert {p.get("adjStkPrc") for p in real_pykrx if "adjStkPrc" in p} == {1}  # unadjusted

    flows = source.investor_flows(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert flows["trade_date"].tolist() == [D2, D3, D4]
    assert flows["foreign_net_shares"].tolist() == [200_000, 1_000_000, -777_778]
    assert flows["foreign_net_krw"].tolist() == [15_920_000_000, 77_000_000_000, -59_888_906_000]
    assert flows["institution_net_shares"].tolist() == [-300_000, 500_000, -1_234_567]
    assert flows["individual_net_krw"].tolist() == [7_562_000_000, -114_730_000_000, 154e9]

    # the whole-market path (net-purchase tables) agrees with the per-ticker path
    market = source.investor_flows(D2, D2, market=Market.KOSPI)
    row = market[market["ticker"] == "005930"].iloc[0]
    per_ticker = flows.iloc[0]
    for column in INVESTOR_FLOW_COLUMNS[3:]:
        assert row[column] == per_ticker[column], column
    hynix = market[market["ticker"] == "000660"].iloc[0]
    assert hynix["foreign_net_shares"] == -50_000


def test_pykrx_unknown_ticker_is_not_found_not_throttling(real_pykrx):
    source = real_source()
    with pytest.raises(NotFound, match="999999"):
        source.daily_candles(D2, D3, market=Market.KOSPI, tickers=["999999"])
    sent_blds = [p["bld"].rsplit("/", 1)[-1] for p in real_pykrx]
    assert "MDCSTAT01701" not in sent_blds  # no broken price request was sent


# --- live ---------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_krx_samsung_candles_and_flows():
    krx_id, krx_pw = os.environ.get("KRX_ID"), os.environ.get("KRX_PW")
    if not (krx_id and krx_pw):
        pytest.skip("set KRX_ID and KRX_PW (a data.krx.co.kr account) for the live KRX test")
    source = KrxSource(krx_id, krx_pw)
    candles = source.daily_candles(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert candles["trade_date"].tolist() == [D2, D3, D4]
    assert (candles["close"] > 10_000).all()
    assert (candles["traded_value"] > candles["volume"]).all()
    flows = source.investor_flows(D2, D4, market=Market.KOSPI, tickers=["005930"])
    assert len(flows) == 3
    listing = source.list_instruments(D4, Market.KOSPI)
    assert any(i.ticker == "005930" and i.name == "삼성전자" for i in listing)


# --- bounded retries and turn waits (issue 16) -----------------------------------------------


def test_max_elapsed_stops_retries_before_the_next_wait_would_pass_it():
    failing = {("ohlcv_market", "20240102", "KOSPI"): ConnectionError("reset")}
    # Waits 2, 4, 8 s between attempts: with 1 s allowed only the first attempt runs.
    source, api, _ = make(failing, attempts=10, retry_wait=2.0, max_elapsed=1.0)
    with pytest.raises(ServiceUnavailable, match="gave up after 1 attempt in"):
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 1
    # With 5 s allowed the 2 s and 4 s waits fit, the 8 s one does not: three attempts.
    source, api, _ = make(failing, attempts=10, retry_wait=2.0, max_elapsed=5.0)
    with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts in"):
        source.daily_candles(D2, D2, market=Market.KOSPI)
    assert len(api.calls) == 3


def test_a_thread_waits_for_its_turn_at_most_max_elapsed():
    source, api, _ = make(attempts=3, max_elapsed=0.2)
    source._lock.acquire()  # another thread's request is in flight
    try:
        started = time.monotonic()
        with pytest.raises(RateLimited, match=r"queued longer than 0\.2 s"):
            source.daily_candles(D2, D2, market=Market.KOSPI)
        assert time.monotonic() - started < 10  # generous: the bound is 0.2 s
    finally:
        source._lock.release()
    assert api.calls == []  # refused before any request, and not retried


@pytest.mark.parametrize("field", ["max_elapsed", "request_timeout"])
@pytest.mark.parametrize("bad", [0, -1.0, True])
def test_time_bounds_must_be_positive(field: str, bad: Any):
    with pytest.raises(ValidationError, match=field):
        make(**{field: bad})


def test_the_default_api_gets_the_request_timeout():
    source = KrxSource("someone", "secret", calendar=CAL, request_timeout=4.5)
    assert source._api._timeout == 4.5  # type: ignore[attr-defined]

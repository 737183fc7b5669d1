"""YahooSource over a fake yfinance Ticker, and over real yfinance with its HTTP layer faked.

The fake ticker's frames look like yfinance 1.7.0's ``Ticker.history`` output: a tz-aware
DatetimeIndex named ``Date`` at local midnight, columns Open High Low Close Volume Dividends
Stock Splits. The real-yfinance tests feed Yahoo-shaped chart JSON
(tests/fixtures/yahoo/chart_aapl.json) through yfinance's own parsing.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.market.base import MarketDataSource
from quant.market.types import DAILY_CANDLE_COLUMNS, Market
from quant.market.yahoo import YahooSource, yahoo_symbol

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "yahoo" / "chart_aapl.json"
yf_exceptions = pytest.importorskip("yfinance.exceptions")

D2, D3, D4, D5 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)


def history_frame(tz: str, rows: dict[str, tuple[float, float, float, float, int]]) -> pd.DataFrame:
    """A frame shaped like ``yf.Ticker(...).history(interval="1d", auto_adjust=True)``."""
    index = pd.DatetimeIndex(pd.to_datetime(list(rows)), name="Date").tz_localize(tz)
    frame = pd.DataFrame(
        [(*r, 0.0, 0.0) for r in rows.values()],
        index=index,
        columns=["Open", "High", "Low", "Close", "Volume", "Dividends", "Stock Splits"],
    )
    return frame.astype({"Volume": np.int64})


class FakeTicker:
    def __init__(self, symbol: str, answer: pd.DataFrame | BaseException) -> None:
        self.symbol = symbol
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def history(self, **kwargs: Any) -> pd.DataFrame:
        self.calls.append(kwargs)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Factory:
    def __init__(self, answers: dict[str, pd.DataFrame | BaseException]) -> None:
        self.answers = answers
        self.tickers: dict[str, FakeTicker] = {}

    def __call__(self, symbol: str) -> FakeTicker:
        ticker = FakeTicker(symbol, self.answers.get(symbol, pd.DataFrame()))
        self.tickers[symbol] = ticker
        return ticker


AAPL = history_frame(
    "America/New_York",
    {
        "2024-01-02": (186.5, 187.5, 182.0, 184.7, 82_488_700),
        "2024-01-03": (183.3, 184.9, 182.5, 183.4, 58_414_500),
        "2024-01-04": (181.2, 182.2, 180.0, 181.0, 71_983_600),
        "2024-01-05": (181.1, 181.8, 179.3, 180.3, 62_303_300),  # outside a Jan 2..4 request
    },
)
SAMSUNG = history_frame(
    "Asia/Seoul",
    {
        "2024-01-02": (78_200.0, 79_800.0, 78_200.0, 79_600.0, 17_142_847),
        "2024-01-03": (78_500.0, 78_800.0, 77_000.0, 77_000.0, 21_753_644),
    },
)


def make(answers: dict[str, pd.DataFrame | BaseException], symbols=None, **kwargs: Any):
    factory = Factory(answers)
    symbols = symbols or [(Market.US, "AAPL"), (Market.KOSPI, "005930")]
    return YahooSource(symbols, ticker_factory=factory, **kwargs), factory


# --- symbols ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "ticker", "symbol"),
    [
        (Market.US, "AAPL", "AAPL"),
        (Market.US, "BRK-B", "BRK-B"),
        (Market.KOSPI, "005930", "005930.KS"),
        (Market.KOSDAQ, "035720", "035720.KQ"),
        (Market.KOSDAQ, "0088K0", "0088K0.KQ"),
    ],
)
def test_yahoo_symbol(market, ticker, symbol):
    assert yahoo_symbol(market, ticker) == symbol


@pytest.mark.parametrize(
    ("market", "ticker", "field"),
    [
        (Market.UPBIT, "BTC", "market"),
        (Market.KONEX, "123456", "market"),
        (Market.KOSPI, "5930", "ticker"),
        (Market.KOSPI, "005930.KS", "ticker"),
        (Market.US, "aapl lower", "ticker"),
    ],
)
def test_yahoo_symbol_rejects_what_it_cannot_map(market, ticker, field):
    with pytest.raises(ValidationError) as info:
        yahoo_symbol(market, ticker)
    assert info.value.field == field


# --- candles ----------------------------------------------------------------------------------


def test_is_a_market_data_source_labelled_real():
    source, _ = make({})
    assert isinstance(source, MarketDataSource)
    assert (source.name, source.simulated) == ("yfinance", False)


def test_history_is_asked_with_an_exclusive_end_one_day_later():
    source, factory = make({"AAPL": AAPL})
    source.daily_candles(D2, D4, market=Market.US)
    assert factory.tickers["AAPL"].calls == [
        {
            "start": "2024-01-02",
            "end": "2024-01-05",  # Yahoo's end is exclusive: Jan 4 is included
            "interval": "1d",
            "auto_adjust": True,
            "timeout": 10.0,
        }
    ]


def test_columns_are_mapped_and_traded_value_is_close_times_volume():
    source, _ = make({"AAPL": AAPL})
    out = source.daily_candles(D2, D4, market=Market.US)
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)
    assert isinstance(out.index, pd.RangeIndex)
    # the Jan 5 row Yahoo appended past the end is not returned
    assert out["trade_date"].tolist() == [D2, D3, D4]
    assert all(type(d) is date for d in out["trade_date"])
    first = out.iloc[0]
    assert (first["market"], first["ticker"]) == ("US", "AAPL")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        186.5,
        187.5,
        182.0,
        184.7,
    )
    assert first["volume"] == 82_488_700.0
    assert first["traded_value"] == pytest.approx(184.7 * 82_488_700)
    for column in DAILY_CANDLE_COLUMNS[3:]:
        assert out[column].dtype == np.float64, column


def test_trade_date_is_the_exchange_local_date():
    # Seoul midnight is the previous day in UTC; the bar belongs to the Seoul date
    source, _ = make({"005930.KS": SAMSUNG})
    out = source.daily_candles(D2, D3, market=Market.KOSPI)
    assert out["trade_date"].tolist() == [D2, D3]
    assert out["market"].tolist() == ["KOSPI", "KOSPI"]
    assert out["close"].tolist() == [79_600.0, 77_000.0]


def test_all_configured_symbols_sorted_by_ticker_then_date():
    source, factory = make({"AAPL": AAPL, "005930.KS": SAMSUNG})
    out = source.daily_candles(D2, D4)
    assert set(factory.tickers) == {"AAPL", "005930.KS"}
    assert list(zip(out["ticker"], out["trade_date"], strict=True)) == [
        ("005930", D2),
        ("005930", D3),
        ("AAPL", D2),
        ("AAPL", D3),
        ("AAPL", D4),
    ]


def test_tickers_select_and_unknown_tickers_are_not_found():
    source, factory = make({"AAPL": AAPL})
    out = source.daily_candles(D2, D2, tickers=["AAPL"])
    assert out["ticker"].tolist() == ["AAPL"]
    assert set(factory.tickers) == {"AAPL"}
    with pytest.raises(NotFound, match="MSFT"):
        source.daily_candles(D2, D2, tickers=["MSFT"])
    with pytest.raises(NotFound, match="AAPL"):
        source.daily_candles(D2, D2, market=Market.KOSPI, tickers=["AAPL"])
    with pytest.raises(ValidationError):
        source.daily_candles(D2, D2, tickers="AAPL")


def test_empty_history_is_an_empty_frame():
    source, _ = make({"AAPL": pd.DataFrame()})
    out = source.daily_candles(D2, D4, market=Market.US)
    assert out.empty
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)


def test_no_prices_for_a_valid_symbol_is_an_empty_frame():
    missing = yf_exceptions.YFPricesMissingError("AAPL", "(1d 2024-01-06 -> 2024-01-08)")
    source, _ = make({"AAPL": missing})
    out = source.daily_candles(date(2024, 1, 6), date(2024, 1, 7), market=Market.US)
    assert out.empty
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (yf_exceptions.YFRateLimitError(), RateLimited),
        (yf_exceptions.YFTzMissingError("AAPL"), NotFound),
        (
            yf_exceptions.YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"),
            ServiceUnavailable,
        ),
        (ConnectionError("connection reset by peer"), ServiceUnavailable),
        (TimeoutError("timed out"), ServiceUnavailable),
        (json.JSONDecodeError("Expecting value", "<html>", 0), ServiceUnavailable),
    ],
    ids=["429", "no-timezone", "yahoo-down", "ConnectionError", "Timeout", "bad-json"],
)
def test_errors_are_mapped(error, expected):
    source, _ = make({"AAPL": error})
    with pytest.raises(expected):
        source.daily_candles(D2, D4, market=Market.US)


def test_curl_http_errors_404_is_not_found_others_unavailable():
    curl = pytest.importorskip("curl_cffi.requests.exceptions")

    class Response:
        def __init__(self, status: int) -> None:
            self.status_code = status

    source, _ = make({"AAPL": curl.HTTPError("HTTP Error 404", response=Response(404))})
    with pytest.raises(NotFound):
        source.daily_candles(D2, D4, market=Market.US)
    source, _ = make({"AAPL": curl.HTTPError("HTTP Error 502", response=Response(502))})
    with pytest.raises(ServiceUnavailable):
        source.daily_candles(D2, D4, market=Market.US)
    source, _ = make({"AAPL": curl.ConnectionError("could not resolve host")})
    with pytest.raises(ServiceUnavailable):
        source.daily_candles(D2, D4, market=Market.US)


def test_unrelated_exceptions_are_not_disguised():
    source, _ = make({"AAPL": KeyError("chart")})
    with pytest.raises(KeyError):
        source.daily_candles(D2, D4, market=Market.US)


def test_acquire_is_called_per_request():
    calls: list[str] = []
    source, _ = make({"AAPL": AAPL, "005930.KS": SAMSUNG}, acquire=lambda: calls.append("x"))
    source.daily_candles(D2, D4)
    assert calls == ["x", "x"]


def test_investor_flows_are_a_permanent_error():
    source, _ = make({})
    with pytest.raises(PermanentError, match="investor"):
        source.investor_flows(D2, D4)


def test_list_instruments_are_the_configured_symbols():
    source, factory = make({})
    out = source.list_instruments(D2)
    assert [(i.market, i.ticker, i.currency) for i in out] == [
        (Market.KOSPI, "005930", "KRW"),
        (Market.US, "AAPL", "USD"),
    ]
    assert [i.ticker for i in source.list_instruments(D2, Market.US)] == ["AAPL"]
    assert factory.tickers == {}  # Yahoo was not asked


def test_bad_symbols_and_duplicates_are_rejected():
    with pytest.raises(ValidationError):
        YahooSource([(Market.UPBIT, "BTC")], ticker_factory=Factory({}))
    with pytest.raises(ValidationError, match="duplicates"):
        YahooSource([(Market.US, "AAPL"), (Market.US, "AAPL")], ticker_factory=Factory({}))


# --- the optional extra -----------------------------------------------------------------------


def test_importing_and_constructing_does_not_import_yfinance():
    code = (
        "import sys\n"
        "from quant.market.types import Market\n"
        "import quant.market.yahoo as y\n"
        "assert 'yfinance' not in sys.modules, 'imported by the module'\n"
        "y.YahooSource([(Market.US, 'AAPL')])\n"
        "assert 'yfinance' not in sys.modules, 'imported by the constructor'\n"
        "print('clean')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_missing_yfinance_is_a_config_error(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "yfinance" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"quantbeat\[yfinance\]"):
        YahooSource([(Market.US, "AAPL")])


def test_yfinance_that_fails_to_import_at_first_use_is_a_config_error(monkeypatch):
    source = YahooSource([(Market.US, "AAPL")])
    monkeypatch.setitem(sys.modules, "yfinance", None)  # makes "import yfinance" fail
    with pytest.raises(ConfigError, match=r"quantbeat\[yfinance\]"):
        source.daily_candles(D2, D4)


# --- real yfinance, HTTP faked ----------------------------------------------------------------


class _Response:
    def __init__(self, payload: dict[str, Any], status: int = 200) -> None:
        self._payload = payload
        self.status_code = status
        self.text = json.dumps(payload)

    def json(self) -> dict[str, Any]:
        return copy.deepcopy(self._payload)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            from yfinance._http import HTTPError  # type: ignore[import-untyped]

            raise HTTPError(f"HTTP Error {self.status_code}", response=self)


class _NoTzCache:
    def lookup(self, key: str) -> None:
        return None

    def store(self, key: str, value: Any) -> None:
        pass


@pytest.fixture
def real_yfinance(monkeypatch):
    """Real yfinance with every GET answered from the fixture; yields the requests sent."""
    from yfinance import cache  # type: ignore[import-untyped]
    from yfinance import data as yf_data

    fixtures = json.loads(FIXTURE.read_text(encoding="utf-8"))
    mode = {"chart": "daily"}
    sent: list[tuple[str, dict[str, Any]]] = []

    def get(self: Any, url: str, params: Any = None, timeout: Any = 30, **kwargs: Any) -> Any:
        sent.append((url, dict(params or {})))
        if "/chart/" in url:
            if "NOPE" in url:
                return _Response(fixtures["unknown_symbol"], status=404)
            if (params or {}).get("range") == "1d":  # yfinance's timezone probe
                return _Response(fixtures["daily"])
            return _Response(fixtures[mode["chart"]])
        return _Response({"finance": {"result": None, "error": {"code": "Not Found"}}}, 404)

    monkeypatch.setattr(yf_data.YfData, "get", get)
    monkeypatch.setattr(yf_data.YfData, "cache_get", get)
    monkeypatch.setattr(
        yf_data.YfData,
        "get_raw_json",
        lambda self, url, params=None, timeout=30: get(self, url, params).raise_for_status(),
    )
    monkeypatch.setattr(cache, "get_tz_cache", lambda: _NoTzCache())
    return mode, sent


def test_real_yfinance_frame_maps(real_yfinance):
    _, sent = real_yfinance
    source = YahooSource([(Market.US, "AAPL")])
    out = source.daily_candles(D2, D4)
    assert out["trade_date"].tolist() == [D2, D3, D4]
    # auto_adjust: Close is Yahoo's adjusted close
    assert out["close"].tolist() == pytest.approx([184.73, 183.35, 181.02])
    assert out["volume"].tolist() == [82_488_700.0, 58_414_500.0, 71_983_600.0]
    assert out["traded_value"].iloc[0] == pytest.approx(184.73 * 82_488_700)
    history_request = next(p for _, p in sent if "period2" in p)
    # period2 = 2024-01-05 00:00 New York: the exclusive end one day after Jan 4
    assert pd.Timestamp(history_request["period2"], unit="s", tz="UTC") == pd.Timestamp(
        "2024-01-05 00:00", tz="America/New_York"
    )
    import yfinance

    assert yfinance.config.debug.hide_exceptions is False


def test_real_yfinance_range_without_bars_is_empty(real_yfinance):
    mode, _ = real_yfinance
    mode["chart"] = "no_bars"
    source = YahooSource([(Market.US, "AAPL")])
    out = source.daily_candles(date(2024, 1, 6), date(2024, 1, 7))
    assert out.empty
    assert list(out.columns) == list(DAILY_CANDLE_COLUMNS)


def test_real_yfinance_unknown_symbol_is_not_found(real_yfinance):
    source = YahooSource([(Market.US, "NOPE")])
    with pytest.raises(NotFound, match="NOPE"):
        source.daily_candles(D2, D4)


# --- live -------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_yahoo_daily_candles():
    source = YahooSource([(Market.US, "AAPL"), (Market.KOSPI, "005930")])
    out = source.daily_candles(D2, D5)
    assert set(out["ticker"]) == {"AAPL", "005930"}
    assert out.loc[out["ticker"] == "005930", "trade_date"].tolist() == [D2, D3, D4, D5]
    assert (out["close"] > 0).all()
    assert (out["traded_value"] > 0).all()

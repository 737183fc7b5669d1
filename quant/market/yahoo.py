"""Yahoo Finance daily candles through yfinance: REAL (but unofficial) market data.

:class:`YahooSource` implements the daily-candle part of
:class:`quant.market.base.MarketDataSource` for a fixed list of symbols given at construction:
US symbols as Yahoo spells them (``AAPL``, ``BRK-B``) and KRX stocks as ``005930.KS`` (KOSPI) /
``xxxxxx.KQ`` (KOSDAQ), see :func:`yahoo_symbol`. Yahoo has no investor flows and no KRX
listing; it is a fallback or cross-check for prices, not a replacement for :mod:`quant.market.krx`.

yfinance is an optional extra (``pip install quantbeat[yfinance]``) and is imported only when
the first request is made. On that import this module sets yfinance's process-wide
``yf.config.debug.hide_exceptions = False``, the documented replacement in yfinance 1.x of the
deprecated ``history(raise_errors=True)``: without it yfinance logs network failures and returns
an empty frame (or reports a failed timezone lookup as a missing symbol), which would be
indistinguishable from "no data".

Each symbol is one request: ``yf.Ticker(symbol).history(start=start, end=end + 1 day,
interval="1d", auto_adjust=True, timeout=...)`` (Yahoo's ``end`` is exclusive). Prices are
split- and dividend-adjusted (``auto_adjust``), unlike KRX's unadjusted prices.

Units: prices in the instrument's own currency (USD for US symbols, KRW for KRX),
``volume`` float64 shares (split-adjusted), and ``traded_value`` = adjusted ``Close x Volume``,
an ESTIMATE of the day's traded value in the instrument's currency: NOT KRW for US symbols (the
module-wide KRW convention of ``traded_value`` does not hold for them), and not KRX's 거래대금
for KRX symbols.

Errors: ``YFRateLimitError`` (HTTP 429) -> :class:`quant.errors.RateLimited`; a symbol Yahoo
does not know (no timezone for it, or HTTP 404) -> :class:`quant.errors.NotFound`; no bars in a
valid range (holidays, before the listing) -> no rows; connection errors, timeouts, other HTTP
errors, "Yahoo is down" and unparsable answers -> :class:`quant.errors.ServiceUnavailable`.
Nothing is retried here; the caller retries transient errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from quant.calendar import check_date, check_range
from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
)
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    REFERENCE_BAR_COLUMNS,
    USDKRW,
    Instrument,
    ListingStatus,
    Market,
    ReferenceKind,
    ReferenceSeries,
)

__all__ = ["YAHOO_FX_SYMBOLS", "YAHOO_MARKETS", "YahooFxSource", "YahooSource", "yahoo_symbol"]

logger = logging.getLogger(__name__)

#: Markets :func:`yahoo_symbol` can map, with Yahoo's suffix for each.
YAHOO_MARKETS: dict[Market, str] = {Market.US: "", Market.KOSPI: ".KS", Market.KOSDAQ: ".KQ"}
_CURRENCY = {Market.US: "USD", Market.KOSPI: "KRW", Market.KOSDAQ: "KRW"}
_KRX_TICKER = re.compile(r"^[0-9A-Z]{6}$")
_US_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,14}$")
_HISTORY_COLUMNS = ("Open", "High", "Low", "Close", "Volume")
#: Exchange-rate codes :class:`YahooFxSource` serves, with Yahoo's symbol for each.
YAHOO_FX_SYMBOLS: dict[str, str] = {USDKRW: "KRW=X"}
_INSTALL_HINT = "yfinance is not installed: install quantbeat[yfinance]"

# yfinance is process-global; its import and configuration happen once.
_YF_LOCK = threading.Lock()


def yahoo_symbol(market: Market, ticker: str) -> str:
    """Yahoo's symbol for ``ticker`` on ``market``: US symbols unchanged, KRX tickers with
    ``.KS`` (KOSPI) or ``.KQ`` (KOSDAQ). US symbols must already be Yahoo's spelling (class
    shares use a dash: ``BRK-B``).

    Raises:
        quant.errors.ValidationError: a market Yahoo is not used for here (UPBIT, KONEX) or a
            ticker that is not a KRX short code / US symbol.
    """
    if market not in YAHOO_MARKETS:
        known = ", ".join(m.value for m in YAHOO_MARKETS)
        raise ValidationError(
            f"no Yahoo symbol for market {market!r} (supported: {known})",
            field="market",
            value=market,
        )
    pattern = _US_SYMBOL if market is Market.US else _KRX_TICKER
    if not isinstance(ticker, str) or not pattern.match(ticker):
        raise ValidationError(
            f"{ticker!r} is not a valid {Market(market).value} ticker for Yahoo",
            field="ticker",
            value=ticker,
        )
    return ticker + YAHOO_MARKETS[Market(market)]


def _import_yfinance() -> ModuleType:
    """Import yfinance and make it raise instead of hiding failures (module docstring)."""
    with _YF_LOCK:
        try:
            yf = importlib.import_module("yfinance")
        except ImportError as exc:
            raise ConfigError(f"{_INSTALL_HINT} ({exc})") from exc
        yf.config.debug.hide_exceptions = False
        return yf


def _default_factory(symbol: str) -> Any:
    return _import_yfinance().Ticker(symbol)


def _yf_exceptions() -> ModuleType | None:
    """``yfinance.exceptions`` if yfinance is installed (it is when it raised something)."""
    try:
        return importlib.import_module("yfinance.exceptions")
    except ImportError:
        return None


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


class YahooSource:
    """REAL (unofficial) Yahoo Finance daily candles for the ``symbols`` given, as
    ``(market, ticker)`` pairs; see the module docstring for units and error mapping.

    ``ticker_factory(symbol)`` returns an object with yfinance's ``Ticker.history`` (default:
    ``yfinance.Ticker``, imported on first use); ``timeout`` is passed to each request;
    ``acquire()``, when given, is called before every request (a caller's rate limiter).

    Thread safety: no shared mutable state apart from yfinance's own caches.
    """

    name: str = "yfinance"
    simulated: bool = False

    def __init__(
        self,
        symbols: Sequence[tuple[Market, str]],
        *,
        ticker_factory: Callable[[str], Any] | None = None,
        timeout: float = 10.0,
        acquire: Callable[[], None] | None = None,
    ) -> None:
        """Validate the symbols; nothing is imported or requested yet.

        Raises:
            quant.errors.ValidationError: a pair :func:`yahoo_symbol` rejects, or duplicates.
            quant.errors.ConfigError: no ``ticker_factory`` and yfinance is not installed.
        """
        if ticker_factory is None and importlib.util.find_spec("yfinance") is None:
            raise ConfigError(_INSTALL_HINT)
        pairs: list[tuple[Market, str]] = []
        for item in symbols:
            if not isinstance(item, tuple) or len(item) != 2:
                raise ValidationError(
                    f"symbols must be (market, ticker) pairs, got {item!r}",
                    field="symbols",
                    value=item,
                )
            market, ticker = Market(item[0]), item[1]
            yahoo_symbol(market, ticker)
            pairs.append((market, ticker))
        if len(set(pairs)) != len(pairs):
            raise ValidationError("symbols contains duplicates", field="symbols", value=symbols)
        self._symbols = tuple(sorted(pairs, key=lambda p: (p[1], p[0].value)))
        self._factory: Callable[[str], Any] = ticker_factory or _default_factory
        self._timeout = timeout
        self._acquire = acquire

    def __repr__(self) -> str:
        return f"YahooSource(symbols=<{len(self._symbols)}>)"

    @property
    def symbols(self) -> tuple[tuple[Market, str], ...]:
        """The configured ``(market, ticker)`` pairs, sorted by ticker."""
        return self._symbols

    # -- MarketDataSource ---------------------------------------------------------------------

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """The configured symbols (of ``market`` when given), the same for every ``as_of``.

        Yahoo is not asked: ``name`` is the ticker, ``currency`` USD for US and KRW for KRX,
        status LISTED (not verified).

        Raises:
            quant.errors.ValidationError: ``as_of`` is not a plain date.
        """
        check_date(as_of, "as_of")
        return [
            Instrument(
                market=m,
                ticker=t,
                name=t,
                currency=_CURRENCY[m],
                listing_status=ListingStatus.LISTED,
            )
            for m, t in self._symbols
            if market is None or m == market
        ]

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Daily bars in ``[start, end]`` (both inclusive) for the configured symbols (of
        ``market``, and among ``tickers``, when given), with
        :data:`~quant.market.types.DAILY_CANDLE_COLUMNS`: adjusted prices float64 in the
        instrument's currency, ``volume`` float64 shares, ``traded_value`` float64 = Close x
        Volume (an estimate, in the instrument's currency). ``trade_date`` is the exchange's
        local date. Sorted by ticker then date; days without a bar have no row.

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end`` or ``tickers`` a string.
            quant.errors.NotFound: a requested ticker is not configured (for ``market``), or
                Yahoo does not know a symbol.
            quant.errors.RateLimited: Yahoo answered HTTP 429.
            quant.errors.ServiceUnavailable: network failure, Yahoo down, unparsable answer.
            quant.errors.ConfigError: yfinance is not installed.
        """
        check_range(start, end)
        selected = self._select(market, tickers)
        parts = [self._history(m, t, start, end) for m, t in selected]
        parts = [p for p in parts if not p.empty]
        if not parts:
            return _candles(pd.DataFrame(), Market.US, "", start, end)
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values(["ticker", "trade_date", "market"], kind="stable").reset_index(
            drop=True
        )

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Not available from Yahoo.

        Raises:
            quant.errors.PermanentError: always; use :class:`quant.market.krx.KrxSource`.
        """
        raise PermanentError(
            "Yahoo Finance publishes no investor flows; use KrxSource for KRX investor flows"
        )

    # -- helpers ------------------------------------------------------------------------------

    def _select(
        self, market: Market | None, tickers: Sequence[str] | None
    ) -> list[tuple[Market, str]]:
        pool = [(m, t) for m, t in self._symbols if market is None or m == market]
        if tickers is None:
            return pool
        if isinstance(tickers, str):
            raise ValidationError(
                f"tickers must be a sequence of tickers, not the single string {tickers!r}",
                field="tickers",
                value=tickers,
            )
        wanted = set(tickers)
        missing = sorted(wanted - {t for _, t in pool})
        if missing:
            where = f" for {Market(market).value}" if market is not None else ""
            raise NotFound(f"ticker(s) {missing[:20]} not configured in this YahooSource{where}")
        return [(m, t) for m, t in pool if t in wanted]

    def _history(self, market: Market, ticker: str, start: date, end: date) -> pd.DataFrame:
        symbol = yahoo_symbol(market, ticker)
        end_exclusive = end + timedelta(days=1) if end < date.max else end
        if self._acquire is not None:
            self._acquire()
        try:
            frame = self._factory(symbol).history(
                start=start.isoformat(),
                end=end_exclusive.isoformat(),
                interval="1d",
                auto_adjust=True,
                timeout=self._timeout,
            )
        except Exception as exc:
            self._map_error(exc, symbol, start, end)  # raises unless it means "no bars"
            return _candles(pd.DataFrame(), market, ticker, start, end)
        if not isinstance(frame, pd.DataFrame):
            raise ServiceUnavailable(
                f"Yahoo history of {symbol} returned {type(frame).__name__}, not a DataFrame"
            )
        return _candles(frame, market, ticker, start, end)

    @staticmethod
    def _map_error(exc: Exception, symbol: str, start: date, end: date) -> None:
        """Raise the quantbeat error for ``exc``; return only when it means "no bars"."""
        span = f"{start.isoformat()}..{end.isoformat()}"
        yfx = _yf_exceptions()
        if yfx is not None:
            if isinstance(exc, yfx.YFRateLimitError):
                raise RateLimited(f"Yahoo rate-limited the history request of {symbol}") from exc
            if isinstance(exc, yfx.YFTzMissingError):
                raise NotFound(f"Yahoo does not know symbol {symbol!r} ({exc})") from exc
            if isinstance(exc, yfx.YFPricesMissingError):
                logger.info("Yahoo has no bars for %s in %s: %s", symbol, span, exc)
                return
            if isinstance(exc, yfx.YFException):
                raise ServiceUnavailable(f"Yahoo history of {symbol} failed: {exc}") from exc
        if isinstance(exc, OSError | json.JSONDecodeError):
            if _http_status(exc) == 404:
                raise NotFound(f"Yahoo does not know symbol {symbol!r} (HTTP 404)") from exc
            raise ServiceUnavailable(
                f"Yahoo history of {symbol} ({span}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        raise exc


def _candles(
    frame: pd.DataFrame, market: Market, ticker: str, start: date, end: date
) -> pd.DataFrame:
    """A yfinance history frame (tz-aware index, columns Open High Low Close Volume …) as
    DAILY_CANDLE_COLUMNS rows in ``[start, end]``, rows without a close dropped."""
    if frame.empty:
        data: dict[str, Any] = {
            "market": pd.array([], dtype="str"),
            "ticker": pd.array([], dtype="str"),
            "trade_date": np.array([], dtype=object),
        }
        for column in DAILY_CANDLE_COLUMNS[3:]:
            data[column] = np.array([], dtype=np.float64)
        return pd.DataFrame(data, columns=list(DAILY_CANDLE_COLUMNS))
    missing = [c for c in _HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise PermanentError(
            f"Yahoo history of {ticker}: columns {missing} missing (got {list(frame.columns)})"
        )
    index = pd.DatetimeIndex(frame.index)
    days = np.array([ts.date() for ts in index], dtype=object)
    values = {
        name: pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        for name, column in zip(
            ("open", "high", "low", "close", "volume"), _HISTORY_COLUMNS, strict=True
        )
    }
    keep = (days >= start) & (days <= end) & np.isfinite(values["close"])
    n = int(keep.sum())
    close, volume = values["close"][keep], values["volume"][keep]
    data = {
        "market": pd.array([Market(market).value] * n, dtype="str"),
        "ticker": pd.array([ticker] * n, dtype="str"),
        "trade_date": days[keep],
        "open": values["open"][keep],
        "high": values["high"][keep],
        "low": values["low"][keep],
        "close": close,
        "volume": volume,
        "traded_value": close * volume,
    }
    return pd.DataFrame(data, columns=list(DAILY_CANDLE_COLUMNS))


class YahooFxSource:
    """REAL (unofficial) Yahoo Finance exchange rates: :class:`quant.market.base.
    ReferenceDataSource` for FX series, USD/KRW from Yahoo's ``KRW=X`` (KRW per US dollar).

    Each series is one request, ``Ticker(symbol).history(start, end + 1 day, interval="1d",
    auto_adjust=True, timeout=...)``; ``trade_date`` is the bar's date in Yahoo's exchange
    timezone for the symbol (FX days are weekdays, KRX holidays included). Yahoo reports no
    FX volume (0), so ``volume`` and ``value`` are NaN. Errors as :class:`YahooSource`.
    ``ticker_factory``, ``timeout`` and ``acquire`` as :class:`YahooSource`.
    """

    name: str = "yfinance"
    simulated: bool = False

    def __init__(
        self,
        *,
        ticker_factory: Callable[[str], Any] | None = None,
        timeout: float = 10.0,
        acquire: Callable[[], None] | None = None,
    ) -> None:
        """Nothing is imported or requested yet.

        Raises:
            quant.errors.ConfigError: no ``ticker_factory`` and yfinance is not installed.
        """
        if ticker_factory is None and importlib.util.find_spec("yfinance") is None:
            raise ConfigError(_INSTALL_HINT)
        self._factory: Callable[[str], Any] = ticker_factory or _default_factory
        self._timeout = timeout
        self._acquire = acquire

    def __repr__(self) -> str:
        return f"YahooFxSource(symbols={sorted(YAHOO_FX_SYMBOLS.values())})"

    def reference_bars(
        self, start: date, end: date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        """Daily bars of the FX ``series`` in ``[start, end]`` with
        :data:`~quant.market.types.REFERENCE_BAR_COLUMNS` (prices in KRW per unit of the
        foreign currency, volume/value NaN), sorted by code then date; days without a bar
        are absent.

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end``, ``series`` not a sequence
                of ReferenceSeries, or a series that is not FX.
            quant.errors.NotFound: an FX code not in :data:`YAHOO_FX_SYMBOLS`, or Yahoo does not
                know its symbol.
            quant.errors.RateLimited, quant.errors.ServiceUnavailable,
                quant.errors.ConfigError: as :meth:`YahooSource.daily_candles`.
        """
        check_range(start, end)
        if isinstance(series, str | ReferenceSeries) or not isinstance(series, Sequence):
            raise ValidationError(
                f"series must be a sequence of ReferenceSeries, got {series!r}",
                field="series",
                value=series,
            )
        codes: list[str] = []
        for item in series:
            if not isinstance(item, ReferenceSeries) or item.kind is not ReferenceKind.FX:
                raise ValidationError(
                    f"YahooFxSource serves FX series only, got {item!r}", field="series", value=item
                )
            if item.code not in YAHOO_FX_SYMBOLS:
                raise NotFound(
                    f"no Yahoo symbol for the FX series {item.code!r} "
                    f"(known: {sorted(YAHOO_FX_SYMBOLS)})"
                )
            if item.code not in codes:
                codes.append(item.code)
        parts = [self._history(code, start, end) for code in sorted(codes)]
        parts = [p for p in parts if not p.empty]
        if not parts:
            return _fx_rows(pd.DataFrame(), "", start, end)
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values(["code", "trade_date"], kind="stable").reset_index(drop=True)

    def _history(self, code: str, start: date, end: date) -> pd.DataFrame:
        symbol = YAHOO_FX_SYMBOLS[code]
        end_exclusive = end + timedelta(days=1) if end < date.max else end
        if self._acquire is not None:
            self._acquire()
        try:
            frame = self._factory(symbol).history(
                start=start.isoformat(),
                end=end_exclusive.isoformat(),
                interval="1d",
                auto_adjust=True,
                timeout=self._timeout,
            )
        except Exception as exc:
            YahooSource._map_error(exc, symbol, start, end)  # raises unless "no bars"
            return _fx_rows(pd.DataFrame(), code, start, end)
        if not isinstance(frame, pd.DataFrame):
            raise ServiceUnavailable(
                f"Yahoo history of {symbol} returned {type(frame).__name__}, not a DataFrame"
            )
        return _fx_rows(frame, code, start, end)


def _fx_rows(frame: pd.DataFrame, code: str, start: date, end: date) -> pd.DataFrame:
    """A yfinance FX history frame as REFERENCE_BAR_COLUMNS rows in ``[start, end]``; rows
    without a close dropped, volume/value NaN."""
    candles = _candles(frame, Market.US, code, start, end)
    n = len(candles)
    data: dict[str, Any] = {
        "code": pd.array([code] * n, dtype="str"),
        "trade_date": candles["trade_date"].to_numpy(dtype=object),
    }
    for column in ("open", "high", "low", "close"):
        data[column] = candles[column].to_numpy(dtype=np.float64)
    data["volume"] = np.full(n, np.nan)
    data["value"] = np.full(n, np.nan)
    return pd.DataFrame(data, columns=list(REFERENCE_BAR_COLUMNS))

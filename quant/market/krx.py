"""KRX (data.krx.co.kr) listings, daily candles and investor flows through pykrx: REAL data.

:class:`KrxSource` implements :class:`quant.market.base.MarketDataSource` for KOSPI, KOSDAQ and
(on request) KONEX. It talks to KRX only through a :class:`KrxApi`, a small typed protocol over
the pykrx 1.2.9 functions it uses; :class:`PykrxApi` is the real one, tests pass a fake.

Login and purity
    Since 2025-12-27 data.krx.co.kr answers its statistics pages only to a logged-in session.
    pykrx logs in *when it is imported*, from the ``KRX_ID``/``KRX_PW`` environment variables
    (printing "KRX 로그인 실패…" and the login ID), and re-logs in from them when its 1-hour
    session expires. This module reads no environment variable and never writes one: pykrx is
    imported lazily (on the first request, never when this module is imported), its import-time
    output is captured and relayed to the log with the credentials masked, and
    :class:`PykrxApi` then logs in itself with the account it was given (pykrx's
    ``KRXSession``) and renews the session before pykrx would consider it expired, so pykrx
    never needs the environment. If the process environment already holds ``KRX_ID``/``KRX_PW``
    pykrx's own import-time login uses them and that session is kept while it is valid. pykrx's
    session is process-wide: use one KRX account per process.

Pacing, retries and errors
    Every KRX request goes through one path: an optional caller-supplied ``acquire()`` (a
    global rate limiter), then at least ``min_interval`` (>= 1 s) after the end of the previous
    request of the same :class:`KrxSource` (an injectable ``clock``/``pause``; requests of one
    instance are serialized by a lock). KRX answers a throttled or IP-blocked client with an
    *empty* table (pykrx issues #294, #173), so an empty answer for a date the calendar calls a
    session is treated as throttling. Throttling and network failures (``ConnectionError``,
    timeouts, any ``OSError``, a JSON body that does not parse) are retried inside the provider
    a few times with exponential backoff (``attempts``, ``retry_wait``), then raised as
    :class:`quant.errors.RateLimited` / :class:`quant.errors.ServiceUnavailable` for the
    caller's (Celery's) longer backoff. A failed login is a :class:`quant.errors.ConfigError`;
    an unknown ticker a :class:`quant.errors.NotFound`; a table whose columns are not the
    expected ones a :class:`quant.errors.PermanentError` (pykrx or KRX changed format).

Calendar caveat
    Which dates are sessions comes from the ``calendar`` argument. The default,
    :func:`quant.calendar.krx_approximate_calendar`, misses lunar and substitute holidays: KRX
    answers such a day with an all-zero table, which is recognised and skipped (with a warning),
    but if KRX answers it with an *empty* table the day is reported as throttled. Pass an exact
    KRX calendar when one is available. Ask only for sessions that have closed: a session that
    has not started yet also comes back empty.

Data conventions
    Prices are KRX's unadjusted prices (as traded, not split-adjusted), KRW per share. Volume
    is shares, ``traded_value`` KRW (KRX's 거래대금). A halted stock, which KRX reports with
    only a close (시가/고가/저가 = 0), becomes open = high = low = close with its reported
    volume (0). Rows without a close (종가 0) are dropped. Investor flows are net buying (buy
    minus sell): ``*_shares`` from KRX's volume tables, ``*_krw`` from its value tables.
    foreign = 외국인합계 (registered foreigners 외국인 plus 기타외국인), institution =
    기관합계, individual = 개인; the remainder (기타법인) is not returned.

Request cost (each request is >= 1 s apart)
    * ``daily_candles`` for a whole market: one request per session and market. With ``tickers``
      it uses one per-ticker range request per ticker instead when that is fewer requests.
    * ``investor_flows`` for a whole market: four requests per session and market (외국인,
      기타외국인, 기관합계, 개인 net-purchase tables); per ticker: two range requests (value
      and volume), chosen by the same rule.
    * ``list_instruments``: one request per market.
    * ``tickers`` without ``market``: one listing request per market to find each ticker's
      market (cached per date).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from quant.calendar import TradingCalendar, check_date, check_range, krx_approximate_calendar
from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.market.snapshot import session_fraction
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    KRX_MARKETS,
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    USDKRW,
    Instrument,
    ListingStatus,
    Market,
    ReferenceKind,
    ReferenceSeries,
)

__all__ = [
    "KRX_SERVED_MARKETS",
    "MIN_INTERVAL",
    "KrxApi",
    "KrxSource",
    "PykrxApi",
]

logger = logging.getLogger(__name__)

#: Shortest allowed spacing (seconds) between two KRX requests of one source.
MIN_INTERVAL = 1.0
#: Markets :class:`KrxSource` serves; ``market=None`` means :data:`KRX_MARKETS` (no KONEX).
KRX_SERVED_MARKETS: tuple[Market, ...] = (Market.KOSPI, Market.KOSDAQ, Market.KONEX)

# KRX short codes: six digits, or since 2024 six characters with capital letters (e.g. 0088K0).
_TICKER = re.compile(r"^[0-9A-Z]{6}$")
# KRX index codes as pykrx spells them: the market digit and a three-digit index number.
_INDEX_CODE = re.compile(r"^[0-9]{4}$")
_OHLCV = ("시가", "고가", "저가", "종가", "거래량", "거래대금")
_INVESTOR_TABLE = ("기관합계", "기타법인", "개인", "외국인합계", "전체")
_NET_PURCHASE = ("순매수거래량", "순매수거래대금")
# Investor groups of get_market_net_purchases_of_equities summed into each output group.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foreign", ("외국인", "기타외국인")),
    ("institution", ("기관합계",)),
    ("individual", ("개인",)),
)
_NET_PURCHASE_INVESTORS: tuple[str, ...] = tuple(inv for _, invs in _GROUPS for inv in invs)
_LISTING_CACHE_SIZE = 16

T = TypeVar("T")


def _ymd(d: date) -> str:
    return d.strftime("%Y%m%d")


@runtime_checkable
class KrxApi(Protocol):
    """The pykrx calls :class:`KrxSource` makes. Dates are ``YYYYMMDD`` strings, markets
    ``"KOSPI"``/``"KOSDAQ"``/``"KONEX"``, tickers six-character KRX short codes.

    Frames are exactly what pykrx 1.2.9 returns; an empty frame is KRX's "nothing" (which on a
    session means throttling). Implementations may raise ``OSError`` (connection errors,
    timeouts), ``json.JSONDecodeError`` or any :class:`quant.errors.QuantbeatError`;
    :class:`quant.errors.NotFound` for a ticker KRX does not know.
    """

    def get_market_ticker_names(self, date: str, market: str) -> Mapping[str, str]:
        """Ticker -> name (종목명) of every instrument of ``market`` in KRX's all-stock price
        table (전종목시세) of ``date``: the names as of that day. Empty when KRX sent nothing."""
        ...

    def get_market_ohlcv_by_ticker(self, date: str, market: str) -> pd.DataFrame:
        """``pykrx.stock.get_market_ohlcv(date, market=market)``: index 티커 (str), columns
        시가 고가 저가 종가 거래량 거래대금 등락률 시가총액 (unadjusted KRW, shares, KRW)."""
        ...

    def get_market_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        """``pykrx.stock.get_market_ohlcv(fromdate, todate, ticker, adjusted=False)``: index
        날짜 (DatetimeIndex, ascending), columns 시가 고가 저가 종가 거래량 거래대금 등락률."""
        ...

    def get_market_trading_value_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        """Net buying in KRW per day: index 날짜, columns 기관합계 기타법인 개인 외국인합계 전체."""
        ...

    def get_market_trading_volume_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        """Net buying in shares per day, same shape as the value table."""
        ...

    def get_market_net_purchases_of_equities(
        self, fromdate: str, todate: str, market: str, investor: str
    ) -> pd.DataFrame:
        """One investor group's net buying per ticker over the period: index 티커, columns
        종목명 매도거래량 매수거래량 순매수거래량 매도거래대금 매수거래대금 순매수거래대금."""
        ...

    def get_index_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        """``pykrx.stock.get_index_ohlcv_by_date(fromdate, todate, ticker,
        name_display=False)`` for a KRX index code (``"1001"`` KOSPI, ``"2001"`` KOSDAQ,
        ``"1028"`` KOSPI200): index 날짜 (DatetimeIndex, ascending), columns 시가 고가 저가
        종가 (points) 거래량 (shares) 거래대금 (KRW) 상장시가총액 (KRW)."""
        ...

    def get_etf_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        """``pykrx.stock.get_etf_ohlcv_by_date(fromdate, todate, ticker)``: index 날짜,
        columns NAV 시가 고가 저가 종가 (KRW) 거래량 (shares) 거래대금 (KRW) 기초지수."""
        ...


# --- the real pykrx adapter -------------------------------------------------------------------

# pykrx keeps one login session per process; imports and logins are serialized.
_PYKRX_LOCK = threading.Lock()


class _Masked:
    """Relays captured pykrx output to the log with the credentials replaced by ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = [s for s in secrets if s]

    def relay(self, text: str, level: int) -> None:
        for line in text.splitlines():
            for secret in self._secrets:
                line = line.replace(secret, "***")
            if line.strip():
                logger.log(level, "pykrx: %s", line.strip())


def _with_default_timeout(session: Any, timeout: float) -> None:
    """Make every request of ``session`` (a ``requests.Session``) time out after ``timeout``
    seconds unless the caller gave a timeout: pykrx sends its data requests without one.
    Applying it twice to the same session changes nothing."""
    original = session.request
    if getattr(original, "_quantbeat_timeout", False):
        return

    def request(method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return original(method, url, *args, **kwargs)

    request._quantbeat_timeout = True  # type: ignore[attr-defined]
    session.request = request


class PykrxApi:
    """The real :class:`KrxApi`: pykrx 1.2.9, imported on first use, logged in with the account
    given here (never read from, nor written to, the environment; see the module docstring).

    ``request_timeout`` (seconds) bounds every KRX data request (pykrx sets none).
    ``session_margin`` (seconds): the session is renewed when it has less than this left, so
    pykrx's own renewal (which would read ``KRX_ID``/``KRX_PW``) never triggers.
    ``import_module`` is injectable for tests.

    Raises (from the calls):
        quant.errors.ConfigError: pykrx is not installed, its internals are not the 1.2.9 ones
            this adapter uses, or KRX rejected the login.
        quant.errors.NotFound: a per-ticker call for a ticker KRX's ticker table lacks.
        quant.errors.RateLimited: KRX's ticker table came back empty (throttled).
        OSError, json.JSONDecodeError: network failures, passed through for the caller.
    """

    def __init__(
        self,
        krx_id: str,
        krx_pw: str,
        *,
        request_timeout: float = 30.0,
        session_margin: float = 600.0,
        import_module: Callable[[str], ModuleType] = importlib.import_module,
    ) -> None:
        """Store the account; nothing is imported or sent yet.

        Raises:
            quant.errors.ConfigError: ``krx_id`` or ``krx_pw`` is empty.
        """
        if not krx_id or not krx_pw:
            raise ConfigError(
                "a data.krx.co.kr account is required (KRX answers only logged-in sessions since "
                "2025-12-27): set QUANTBEAT_KRX_ID and QUANTBEAT_KRX_PW"
            )
        self._id = krx_id
        self._pw = krx_pw
        self._timeout = request_timeout
        self._margin = session_margin
        self._import = import_module
        self._mask = _Masked([krx_id, krx_pw])
        self._stock: ModuleType | None = None
        self._auth: ModuleType | None = None
        self._krx: ModuleType | None = None

    def __repr__(self) -> str:
        return "PykrxApi(account=<set>)"

    # -- setup --------------------------------------------------------------------------------

    def _captured(self, action: Callable[[], T], level: int = logging.INFO) -> T:
        """Run ``action`` with stdout captured and relayed, masked, to the log at ``level``
        (pykrx prints the login ID). Other threads' prints during that moment are relayed
        too, not lost."""
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                return action()
        finally:
            self._mask.relay(buffer.getvalue(), level)

    def _modules(self) -> tuple[ModuleType, ModuleType]:
        """pykrx's ``stock`` and ``website.krx`` modules, with a valid login session."""
        with _PYKRX_LOCK:
            if self._stock is None or self._auth is None or self._krx is None:
                try:
                    self._stock, self._auth, self._krx = self._captured(
                        lambda: (
                            self._import("pykrx.stock"),
                            self._import("pykrx.website.comm.auth"),
                            self._import("pykrx.website.krx"),
                        ),
                        # pykrx's import-time login notice ("KRX 로그인 실패: … 환경 변수 …")
                        # is expected: this adapter logs in right after.
                        logging.DEBUG,
                    )
                except ImportError as exc:
                    raise ConfigError(f"pykrx is not importable ({exc}); install pykrx") from exc
            auth = self._auth
            if not hasattr(auth, "KRXSession") or not hasattr(auth, "set_auth_session"):
                raise ConfigError(
                    "this pykrx has no KRXSession/set_auth_session (pykrx 1.2.9 expected)"
                )
            current = getattr(auth, "_auth_session", None)
            if current is None or not current.is_valid(buffer_seconds=self._margin):
                session = auth.KRXSession()
                if not self._captured(lambda: session.refresh(self._id, self._pw)):
                    raise ConfigError(
                        "KRX login failed: data.krx.co.kr rejected the configured account "
                        "(check QUANTBEAT_KRX_ID/QUANTBEAT_KRX_PW; a password change may be due)"
                    )
                auth.set_auth_session(session)
                logger.info("logged in to data.krx.co.kr")
                current = session
            _with_default_timeout(current.session, self._timeout)
            return self._stock, self._krx

    def _check_ticker(self, krx: ModuleType, ticker: str) -> None:
        """Raise :class:`NotFound` unless KRX's ticker table (listed and delisted) knows
        ``ticker``. pykrx looks the ISIN up there before every per-ticker request and, for an
        unknown ticker, silently sends a broken request that comes back empty (which would look
        like throttling)."""
        isin = krx.get_stock_ticker_isin(ticker)
        if isinstance(isin, str) and isin:
            return
        holder = self._import("pykrx.website.krx.market.ticker")
        table = holder.StockTicker()
        listed = getattr(table, "listed", None)
        if not isinstance(listed, pd.DataFrame) or listed.empty:
            # pykrx caches its ticker table for the life of the process, also an empty one
            # from a throttled download; drop it so the next attempt downloads again.
            holder.StockTicker._instance = None
            raise RateLimited("KRX sent an empty ticker table (throttled?)")
        raise NotFound(f"ticker {ticker!r} is not in KRX's table of listed and delisted stocks")

    # -- KrxApi -------------------------------------------------------------------------------

    def get_market_ticker_names(self, date: str, market: str) -> Mapping[str, str]:
        _, krx = self._modules()
        series = krx.get_market_ticker_and_name(date, market)
        if not isinstance(series, pd.Series):  # pykrx returns DataFrame() on failure
            return {}
        return {str(t): str(n) for t, n in series.items()}

    def get_market_ohlcv_by_ticker(self, date: str, market: str) -> pd.DataFrame:
        stock, _ = self._modules()
        return _frame(stock.get_market_ohlcv_by_ticker(date, market=market))

    def get_market_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        stock, krx = self._modules()
        self._check_ticker(krx, ticker)
        return _frame(stock.get_market_ohlcv_by_date(fromdate, todate, ticker, adjusted=False))

    def get_market_trading_value_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        stock, krx = self._modules()
        self._check_ticker(krx, ticker)
        return _frame(stock.get_market_trading_value_by_date(fromdate, todate, ticker))

    def get_market_trading_volume_by_date(
        self, fromdate: str, todate: str, ticker: str
    ) -> pd.DataFrame:
        stock, krx = self._modules()
        self._check_ticker(krx, ticker)
        return _frame(stock.get_market_trading_volume_by_date(fromdate, todate, ticker))

    def get_market_net_purchases_of_equities(
        self, fromdate: str, todate: str, market: str, investor: str
    ) -> pd.DataFrame:
        stock, _ = self._modules()
        return _frame(
            stock.get_market_net_purchases_of_equities(fromdate, todate, market, investor)
        )

    def get_index_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        stock, _ = self._modules()
        # name_display=False: the name lookup would be one more KRX request
        return _frame(stock.get_index_ohlcv_by_date(fromdate, todate, ticker, name_display=False))

    def get_etf_ohlcv_by_date(self, fromdate: str, todate: str, ticker: str) -> pd.DataFrame:
        stock, _ = self._modules()
        return _frame(stock.get_etf_ohlcv_by_date(fromdate, todate, ticker))


def _frame(value: object) -> pd.DataFrame:
    """``value`` if it is a DataFrame; anything else pykrx returns counts as an empty answer."""
    return value if isinstance(value, pd.DataFrame) else pd.DataFrame()


# --- the source -------------------------------------------------------------------------------


class _AcquireFailed(Exception):
    """Carries an exception of the caller's ``acquire`` hook past the retry loop unretried."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PermanentError(
            f"KRX {what}: columns {missing} missing (got {list(frame.columns)}); pykrx or KRX "
            "changed format"
        )


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=0.0)


def _ints(frame: pd.DataFrame, column: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    values = pd.to_numeric(frame[column], errors="coerce").fillna(0)
    return values.to_numpy(dtype=np.int64)


def _bars(
    frame: pd.DataFrame, what: str
) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], dict[str, np.ndarray[Any, np.dtype[np.float64]]]]:
    """OHLCV arrays of a pykrx price table with halts filled in, and the rows to keep."""
    _require(frame, _OHLCV, what)
    o, h, lo, c, v, tv = (_floats(frame, col) for col in _OHLCV)
    halted = (o == 0) & (h == 0) & (lo == 0) & (c > 0)
    values = {
        "open": np.where(halted, c, o),
        "high": np.where(halted, c, h),
        "low": np.where(halted, c, lo),
        "close": c,
        "volume": v,
        "traded_value": tv,
    }
    return c > 0, values


def _candles(
    market: Sequence[str], ticker: Sequence[str], days: Sequence[date], **cols: Any
) -> pd.DataFrame:
    data: dict[str, Any] = {
        "market": pd.array(list(market), dtype="str"),
        "ticker": pd.array(list(ticker), dtype="str"),
        "trade_date": np.array(list(days), dtype=object),
    }
    for column in DAILY_CANDLE_COLUMNS[3:]:
        data[column] = np.asarray(cols.get(column, []), dtype=np.float64)
    return pd.DataFrame(data, columns=list(DAILY_CANDLE_COLUMNS))


def _flows(
    market: Sequence[str], ticker: Sequence[str], days: Sequence[date], **cols: Any
) -> pd.DataFrame:
    data: dict[str, Any] = {
        "market": pd.array(list(market), dtype="str"),
        "ticker": pd.array(list(ticker), dtype="str"),
        "trade_date": np.array(list(days), dtype=object),
    }
    for column in INVESTOR_FLOW_COLUMNS[3:]:
        data[column] = np.asarray(cols.get(column, []), dtype=np.int64)
    return pd.DataFrame(data, columns=list(INVESTOR_FLOW_COLUMNS))


def _combine(parts: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate ``parts``, sorted by ticker then date, with a fresh RangeIndex."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["ticker", "trade_date", "market"], kind="stable")
    return out.reset_index(drop=True)


def _dates(index: pd.Index) -> list[date]:
    return [ts.date() for ts in pd.DatetimeIndex(index)]


class KrxSource:
    """REAL KRX data (KOSPI, KOSDAQ, KONEX) through pykrx; see the module docstring for login,
    pacing, retries, units and request costs.

    ``KrxSource(krx_id, krx_pw)`` uses :class:`PykrxApi` with that account; ``api=`` replaces
    it (then the credentials are not used). ``calendar`` (default the approximate KRX calendar)
    decides which dates are sessions. ``min_interval`` (>= 1 s) is the spacing between
    requests, measured with ``clock`` and waited out with ``pause`` (which also sleeps between
    retries); ``acquire()``, when given, is called right before every request, and an exception
    it raises propagates unretried. ``attempts`` requests at most per call (waits
    ``retry_wait`` x 1, 2, 4 … seconds between them, at most ``max_retry_wait``), and with
    ``max_elapsed`` no retry starts more than that many seconds after the call's first attempt
    (waits included); a thread also waits at most ``max_elapsed`` for its turn behind other
    threads' requests, then gets :class:`quant.errors.RateLimited` (retry later).
    ``request_timeout`` (seconds) bounds each HTTP request of the default :class:`PykrxApi`.

    Thread safety: requests of one instance are serialized (lock), so the spacing holds across
    threads sharing it; separate instances or processes coordinate only through ``acquire``.
    """

    name: str = "krx"
    simulated: bool = False

    def __init__(
        self,
        krx_id: str | None = None,
        krx_pw: str | None = None,
        *,
        api: KrxApi | None = None,
        calendar: TradingCalendar | None = None,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
        acquire: Callable[[], None] | None = None,
        attempts: int = 3,
        retry_wait: float = 2.0,
        max_retry_wait: float = 10.0,
        max_elapsed: float | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        """Configure the source; nothing is imported or requested yet.

        Raises:
            quant.errors.ConfigError: no ``api`` and ``krx_id``/``krx_pw`` missing.
            quant.errors.ValidationError: ``min_interval`` < 1 s, ``attempts`` < 1, a negative
                wait, a ``max_elapsed`` or ``request_timeout`` that is not positive, or
                ``calendar`` not a TradingCalendar.
        """
        for field, limit in (("max_elapsed", max_elapsed), ("request_timeout", request_timeout)):
            if limit is not None and (isinstance(limit, bool) or not limit > 0):
                raise ValidationError(
                    f"{field} must be a positive number of seconds, got {limit!r}", field=field
                )
        if api is None:
            api = PykrxApi(krx_id or "", krx_pw or "", request_timeout=request_timeout)
        if isinstance(min_interval, bool) or not min_interval >= MIN_INTERVAL:
            raise ValidationError(
                f"min_interval must be >= {MIN_INTERVAL} s (KRX blocks faster clients), got "
                f"{min_interval!r}",
                field="min_interval",
                value=min_interval,
            )
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValidationError(
                f"attempts must be an integer >= 1, got {attempts!r}", field="attempts"
            )
        for field, wait in (("retry_wait", retry_wait), ("max_retry_wait", max_retry_wait)):
            if not wait >= 0:
                raise ValidationError(f"{field} must be >= 0, got {wait!r}", field=field)
        if calendar is None:
            calendar = krx_approximate_calendar()
        elif not isinstance(calendar, TradingCalendar):
            raise ValidationError(
                f"calendar must implement TradingCalendar, got {type(calendar).__name__}",
                field="calendar",
                value=calendar,
            )
        self._api = api
        self._calendar: TradingCalendar = calendar
        self._min_interval = float(min_interval)
        self._clock = clock
        self._pause = pause
        self._acquire = acquire
        self._attempts = attempts
        self._retry_wait = float(retry_wait)
        self._max_retry_wait = float(max_retry_wait)
        self._max_elapsed = None if max_elapsed is None else float(max_elapsed)
        self._lock = threading.Lock()
        self._last_end: float | None = None
        self._listings: dict[tuple[date, Market], Mapping[str, str]] = {}

    def __repr__(self) -> str:
        return (
            f"KrxSource(api={self._api!r}, calendar={self._calendar.name!r}, "
            f"min_interval={self._min_interval})"
        )

    @property
    def calendar(self) -> TradingCalendar:
        return self._calendar

    # -- MarketDataSource ---------------------------------------------------------------------

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """Instruments in KRX's all-stock table of the last session on or before ``as_of``
        (names as of that day), sorted by ticker; all markets of :data:`KRX_MARKETS` when
        ``market`` is None. Status is LISTED, currency KRW. One request per market.

        Raises:
            quant.errors.ValidationError: ``as_of`` not a plain date, or a market KRX does not
                run (UPBIT, US).
            quant.errors.RateLimited, quant.errors.ServiceUnavailable: see the module docstring.
        """
        check_date(as_of, "as_of")
        markets = self._markets(market)
        day = self._calendar.previous_session(as_of)
        instruments = [
            Instrument(
                market=m,
                ticker=ticker,
                name=name,
                currency="KRW",
                listing_status=ListingStatus.LISTED,
            )
            for m in markets
            for ticker, name in self._listing(day, m).items()
        ]
        instruments.sort(key=lambda inst: (inst.ticker, inst.market.value))
        return instruments

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Daily bars for the sessions in ``[start, end]`` with
        :data:`~quant.market.types.DAILY_CANDLE_COLUMNS`: ``open/high/low/close`` float64 KRW
        (unadjusted), ``volume`` float64 shares, ``traded_value`` float64 KRW (거래대금).
        Sorted by ticker then date; a session without a bar for an instrument has no row.

        ``tickers=None``: every instrument of ``market`` (KOSPI and KOSDAQ when None). With
        ``tickers`` and no ``market`` each ticker's market is looked up in the listing of the
        last session on or before ``end``.

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end``, a market KRX does not run,
                ``tickers`` a single string or a malformed ticker.
            quant.errors.NotFound: a ticker (without ``market``) not listed on KOSPI/KOSDAQ on
                that day, or (per-ticker requests) unknown to KRX.
            quant.errors.RateLimited: KRX kept answering a session with an empty table.
            quant.errors.ServiceUnavailable: KRX kept failing at the network level.
            quant.errors.ConfigError: login failed.
        """
        sessions, by_market = self._prepare(start, end, market, tickers)
        empty = _candles([], [], [])
        if not sessions:
            return empty
        if by_market is not None and self._per_ticker(by_market, sessions, 1, 1):
            parts = [
                self._ticker_candles(m, t, start, end)
                for m, group in by_market.items()
                for t in group
            ]
            return _combine(parts, empty)
        markets = self._markets(market) if by_market is None else list(by_market)
        parts = [
            self._market_candles(m, day, None if by_market is None else set(by_market[m]))
            for day in sessions
            for m in markets
        ]
        return _combine(parts, empty)

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Net buying per investor group for the sessions in ``[start, end]`` with
        :data:`~quant.market.types.INVESTOR_FLOW_COLUMNS`: ``*_net_shares`` int64 shares from
        KRX's volume tables, ``*_net_krw`` int64 KRW from its value tables. foreign =
        외국인합계 (외국인 + 기타외국인), institution = 기관합계, individual = 개인. Sorted
        by ticker then date. Same selection rules and errors as :meth:`daily_candles`.

        A whole market comes from the per-investor net-purchase tables, one per session; a
        ticker missing from one investor's table counts as zero net buying by that investor.
        """
        sessions, by_market = self._prepare(start, end, market, tickers)
        empty = _flows([], [], [])
        if not sessions:
            return empty
        if by_market is not None and self._per_ticker(
            by_market, sessions, 2, len(_NET_PURCHASE_INVESTORS)
        ):
            parts = [
                self._ticker_flows(m, t, start, end)
                for m, group in by_market.items()
                for t in group
            ]
            return _combine(parts, empty)
        markets = self._markets(market) if by_market is None else list(by_market)
        parts = [
            self._market_flows(m, day, None if by_market is None else set(by_market[m]))
            for day in sessions
            for m in markets
        ]
        return _combine(parts, empty)

    # -- ReferenceDataSource (INDEX and ETF series) ------------------------------------------

    def reference_bars(
        self, start: date, end: date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        """Daily bars of KRX indices (pykrx ``get_index_ohlcv_by_date``: points, 거래량
        shares, 거래대금 KRW) and ETFs (``get_etf_ohlcv_by_date``: KRW, shares, KRW) for the
        sessions in ``[start, end]``, with :data:`~quant.market.types.REFERENCE_BAR_COLUMNS`
        sorted by code then date. One request per series. A day KRX reports with only a close
        (시가/고가/저가 0) gets open = high = low = close; rows without a close are dropped.

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end``, ``series`` not a sequence
                of ReferenceSeries, an FX series (use :class:`quant.market.yahoo.YahooFxSource`),
                an index code that is not four digits or an ETF code that is not six characters.
            quant.errors.RateLimited, quant.errors.ServiceUnavailable,
                quant.errors.PermanentError, quant.errors.ConfigError: as :meth:`daily_candles`.
        """
        check_range(start, end)
        wanted = _check_reference(series)
        sessions = self._calendar.sessions(start, end)
        if not sessions:
            return _reference_frame([])
        parts = [self._reference_series(item, start, end) for item in wanted]
        return _reference_frame(parts)

    def _reference_series(self, item: ReferenceSeries, start: date, end: date) -> pd.DataFrame:
        args = (_ymd(start), _ymd(end), item.code)
        if item.kind is ReferenceKind.INDEX:
            label = f"get_index_ohlcv_by_date({', '.join(args)})"
            frame = self._request(
                label, lambda: self._api.get_index_ohlcv_by_date(*args), expect_data=True
            )
        else:
            label = f"get_etf_ohlcv_by_date({', '.join(args)})"
            frame = self._request(
                label, lambda: self._api.get_etf_ohlcv_by_date(*args), expect_data=True
            )
        keep, values = _bars(frame, label)
        days = np.array(_dates(frame.index), dtype=object)
        keep &= (days >= start) & (days <= end)
        n = int(keep.sum())
        return pd.DataFrame(
            {
                "code": pd.array([item.code] * n, dtype="str"),
                "trade_date": days[keep],
                "open": values["open"][keep],
                "high": values["high"][keep],
                "low": values["low"][keep],
                "close": values["close"][keep],
                "volume": values["volume"][keep],
                "value": values["traded_value"][keep],
            },
            columns=list(REFERENCE_BAR_COLUMNS),
        )

    # -- SnapshotSource -----------------------------------------------------------------------

    def market_snapshot(
        self, day: date, at: datetime, market: Market | None = None
    ) -> pd.DataFrame:
        """The day so far of every instrument of ``market`` (KOSPI and KOSDAQ when None):
        KRX's all-stock price table of ``day`` as KRX serves it when asked (during the session:
        open, high, low, the last price as close, cumulative volume and 거래대금, with KRX's
        delay), with :data:`~quant.market.types.SNAPSHOT_COLUMNS` sorted by ticker. ``at`` is
        the time the caller stamps the snapshot with: it is validated, not sent (KRX has no
        historical intraday table). One request per market. Instruments without a price yet
        are absent; a halted one has open = high = low = close.

        Raises:
            quant.errors.ValidationError: ``at`` naive, not on ``day`` (KST), before 09:00 KST,
                ``day`` not a session, or a market KRX does not run.
            quant.errors.RateLimited, quant.errors.ServiceUnavailable,
                quant.errors.PermanentError, quant.errors.ConfigError: as :meth:`daily_candles`.
        """
        self._check_snapshot(day, at)
        parts: list[pd.DataFrame] = []
        for m in self._markets(market):
            label = f"get_market_ohlcv({_ymd(day)}, market={m.value}) [snapshot]"
            frame = self._request(
                label,
                functools.partial(self._api.get_market_ohlcv_by_ticker, _ymd(day), m.value),
                expect_data=True,
            )
            keep, values = _bars(frame, label)
            tickers = frame.index.astype(str).to_numpy()
            parts.append(_snapshot_frame(list(tickers[keep]), values, keep))
        return _snapshot_combine(parts)

    def index_snapshot(self, day: date, at: datetime, codes: Sequence[str]) -> pd.DataFrame:
        """The day so far of KRX indices (four-digit codes, ``get_index_ohlcv_by_date(day,
        day, code)``) and ETFs (six-character codes, ``get_etf_ohlcv_by_date``), one request
        per code, with :data:`~quant.market.types.SNAPSHOT_COLUMNS` (``ticker`` = the code)
        sorted by code. ``at`` as in :meth:`market_snapshot`.

        Raises:
            quant.errors.ValidationError: as :meth:`market_snapshot`; ``codes`` a string or a
                code that is neither an index nor an ETF code.
            quant.errors.RateLimited, quant.errors.ServiceUnavailable,
                quant.errors.PermanentError, quant.errors.ConfigError: as :meth:`daily_candles`.
        """
        self._check_snapshot(day, at)
        if isinstance(codes, str):
            raise ValidationError(
                f"codes must be a sequence of codes, not the single string {codes!r}",
                field="codes",
                value=codes,
            )
        series = [
            ReferenceSeries(
                c, ReferenceKind.INDEX if _INDEX_CODE.match(str(c)) else ReferenceKind.ETF, c
            )
            for c in codes
        ]
        bars = self.reference_bars(day, day, series)
        values = {
            "open": bars["open"].to_numpy(),
            "high": bars["high"].to_numpy(),
            "low": bars["low"].to_numpy(),
            "close": bars["close"].to_numpy(),
            "volume": bars["volume"].to_numpy(),
            "traded_value": bars["value"].to_numpy(),
        }
        keep = np.ones(len(bars), dtype=np.bool_)
        return _snapshot_combine([_snapshot_frame(list(bars["code"]), values, keep)])

    def _check_snapshot(self, day: date, at: datetime) -> None:
        session_fraction(day, at)
        if not self._calendar.is_session(day):
            raise ValidationError(
                f"{day.isoformat()} is not a session of {self._calendar.name}",
                field="day",
                value=day,
            )

    # -- argument handling --------------------------------------------------------------------

    def _markets(self, market: Market | None) -> list[Market]:
        if market is None:
            return list(KRX_MARKETS)
        if market not in KRX_SERVED_MARKETS:
            served = ", ".join(m.value for m in KRX_SERVED_MARKETS)
            raise ValidationError(
                f"KrxSource serves {served}, not {market!r}", field="market", value=market
            )
        return [Market(market)]

    def _prepare(
        self,
        start: date,
        end: date,
        market: Market | None,
        tickers: Sequence[str] | None,
    ) -> tuple[list[date], dict[Market, list[str]] | None]:
        """Sessions in ``[start, end]`` and, when tickers were given, the tickers by market."""
        check_range(start, end)
        markets = self._markets(market)
        if tickers is None:
            return self._calendar.sessions(start, end), None
        if isinstance(tickers, str):
            raise ValidationError(
                f"tickers must be a sequence of tickers, not the single string {tickers!r}",
                field="tickers",
                value=tickers,
            )
        wanted = sorted(set(tickers))
        bad = [t for t in wanted if not isinstance(t, str) or not _TICKER.match(t)]
        if bad:
            raise ValidationError(
                f"KRX tickers are six characters (digits or capital letters), got {bad[:20]!r}",
                field="tickers",
                value=bad,
            )
        sessions = self._calendar.sessions(start, end)
        if not sessions or not wanted:
            return [], {}
        if market is not None:
            return sessions, {markets[0]: wanted}
        return sessions, self._resolve(wanted, end)

    def _resolve(self, tickers: list[str], end: date) -> dict[Market, list[str]]:
        """Group ``tickers`` by the KOSPI/KOSDAQ listing of the last session <= ``end``."""
        day = self._calendar.previous_session(end)
        remaining = set(tickers)
        out: dict[Market, list[str]] = {}
        for m in KRX_MARKETS:
            if not remaining:
                break
            listing = self._listing(day, m)
            found = sorted(t for t in remaining if t in listing)
            if found:
                out[m] = found
                remaining.difference_update(found)
        if remaining:
            missing = sorted(remaining)
            raise NotFound(
                f"ticker(s) {missing[:20]} not listed on KOSPI or KOSDAQ on {day.isoformat()}; "
                "pass market= explicitly for KONEX or delisted tickers"
            )
        return out

    def _per_ticker(
        self,
        by_market: Mapping[Market, Sequence[str]],
        sessions: Sequence[date],
        per_ticker: int,
        per_session: int,
    ) -> bool:
        """True when per-ticker range requests are no more than per-session market requests."""
        n_tickers = sum(len(group) for group in by_market.values())
        return n_tickers * per_ticker <= len(sessions) * len(by_market) * per_session

    # -- requests -----------------------------------------------------------------------------

    def _listing(self, day: date, market: Market) -> Mapping[str, str]:
        key = (day, market)
        cached = self._listings.get(key)
        if cached is not None:
            return cached
        label = f"get_market_ticker_names({_ymd(day)}, {market.value})"
        listing = self._request(
            label,
            lambda: self._api.get_market_ticker_names(_ymd(day), market.value),
            expect_data=self._calendar.is_session(day),
            is_empty=lambda names: len(names) == 0,
        )
        if len(self._listings) >= _LISTING_CACHE_SIZE:
            self._listings.pop(next(iter(self._listings)))
        self._listings[key] = listing
        return listing

    def _market_candles(self, market: Market, day: date, wanted: set[str] | None) -> pd.DataFrame:
        label = f"get_market_ohlcv({_ymd(day)}, market={market.value})"
        frame = self._request(
            label,
            lambda: self._api.get_market_ohlcv_by_ticker(_ymd(day), market.value),
            expect_data=True,
        )
        keep, values = _bars(frame, label)
        if not keep.any():
            logger.warning(
                "KRX %s is an all-zero (holiday) table although calendar %r calls %s a "
                "session; no bars for that day",
                label,
                self._calendar.name,
                day.isoformat(),
            )
            return _candles([], [], [])
        tickers = frame.index.astype(str).to_numpy()
        if wanted is not None:
            keep &= np.isin(tickers, list(wanted))
        n = int(keep.sum())
        return _candles(
            [market.value] * n,
            list(tickers[keep]),
            [day] * n,
            **{k: v[keep] for k, v in values.items()},
        )

    def _ticker_candles(self, market: Market, ticker: str, start: date, end: date) -> pd.DataFrame:
        label = f"get_market_ohlcv({_ymd(start)}, {_ymd(end)}, {ticker}, adjusted=False)"
        frame = self._request(
            label,
            lambda: self._api.get_market_ohlcv_by_date(_ymd(start), _ymd(end), ticker),
            expect_data=True,
        )
        keep, values = _bars(frame, label)
        days = np.array(_dates(frame.index), dtype=object)
        keep &= (days >= start) & (days <= end)
        n = int(keep.sum())
        return _candles(
            [market.value] * n,
            [ticker] * n,
            list(days[keep]),
            **{k: v[keep] for k, v in values.items()},
        )

    def _ticker_flows(self, market: Market, ticker: str, start: date, end: date) -> pd.DataFrame:
        args = (_ymd(start), _ymd(end), ticker)
        value = self._request(
            f"get_market_trading_value_by_date{args}",
            lambda: self._api.get_market_trading_value_by_date(*args),
            expect_data=True,
        )
        volume = self._request(
            f"get_market_trading_volume_by_date{args}",
            lambda: self._api.get_market_trading_volume_by_date(*args),
            expect_data=True,
        )
        _require(value, _INVESTOR_TABLE, f"trading value of {ticker}")
        _require(volume, _INVESTOR_TABLE, f"trading volume of {ticker}")
        common = value.index.intersection(volume.index)
        if len(common) != len(value.index) or len(common) != len(volume.index):
            logger.warning(
                "KRX investor tables of %s disagree on dates (value %d, volume %d rows); "
                "keeping the %d dates in both",
                ticker,
                len(value.index),
                len(volume.index),
                len(common),
            )
        value, volume = value.loc[common].sort_index(), volume.loc[common].sort_index()
        days = np.array(_dates(value.index), dtype=object)
        keep = (days >= start) & (days <= end)
        n = int(keep.sum())
        return _flows(
            [market.value] * n,
            [ticker] * n,
            list(days[keep]),
            foreign_net_shares=_ints(volume, "외국인합계")[keep],
            institution_net_shares=_ints(volume, "기관합계")[keep],
            individual_net_shares=_ints(volume, "개인")[keep],
            foreign_net_krw=_ints(value, "외국인합계")[keep],
            institution_net_krw=_ints(value, "기관합계")[keep],
            individual_net_krw=_ints(value, "개인")[keep],
        )

    def _market_flows(self, market: Market, day: date, wanted: set[str] | None) -> pd.DataFrame:
        ymd = _ymd(day)
        shares: dict[str, pd.Series[Any]] = {}
        krw: dict[str, pd.Series[Any]] = {}
        for investor in _NET_PURCHASE_INVESTORS:
            label = (
                f"get_market_net_purchases_of_equities({ymd}, {ymd}, {market.value}, {investor})"
            )
            frame = self._request(
                label,
                functools.partial(
                    self._api.get_market_net_purchases_of_equities, ymd, ymd, market.value, investor
                ),
                expect_data=True,
            )
            _require(frame, _NET_PURCHASE, label)
            index = frame.index.astype(str)
            shares[investor] = pd.Series(_ints(frame, "순매수거래량"), index=index)
            krw[investor] = pd.Series(_ints(frame, "순매수거래대금"), index=index)
        # union of tickers; a ticker absent from one investor's table: no net buying by it
        shares_table = pd.DataFrame(shares).fillna(0).astype(np.int64).sort_index()
        krw_table = pd.DataFrame(krw).reindex(shares_table.index).fillna(0).astype(np.int64)
        if wanted is not None:
            rows = shares_table.index.isin(list(wanted))
            shares_table, krw_table = shares_table[rows], krw_table[rows]
        columns: dict[str, Any] = {}
        for group, investors in _GROUPS:
            columns[f"{group}_net_shares"] = shares_table[list(investors)].sum(axis=1).to_numpy()
            columns[f"{group}_net_krw"] = krw_table[list(investors)].sum(axis=1).to_numpy()
        n = len(shares_table)
        return _flows([market.value] * n, list(shares_table.index), [day] * n, **columns)

    def _request(
        self,
        label: str,
        call: Callable[[], T],
        *,
        expect_data: bool,
        is_empty: Callable[[T], bool] | None = None,
    ) -> T:
        """``call()`` paced, retried and with its failures mapped (module docstring).

        ``expect_data``: the date is a session, so an empty answer means throttling.
        """

        def attempt() -> T:
            result = self._paced(label, call)
            empty = is_empty(result) if is_empty is not None else _is_empty_frame(result)
            if expect_data and empty:
                raise RateLimited(
                    f"KRX answered {label} with an empty table on a session: throttled or "
                    "IP-blocked (pykrx issues #294, #173)"
                )
            return result

        stop = stop_after_attempt(self._attempts)
        if self._max_elapsed is not None:
            stop = stop | stop_before_delay(self._max_elapsed)  # type: ignore[assignment]
        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=self._retry_wait, max=self._max_retry_wait),
            retry=retry_if_exception_type(TransientError),
            sleep=self._pause,
            reraise=True,
            before_sleep=self._log_retry,
        )
        try:
            return retrying(attempt)
        except _AcquireFailed as exc:
            raise exc.error from None
        except RateLimited as exc:
            raise RateLimited(
                f"{exc} ({self._gave_up(retrying)})", retry_after=exc.retry_after
            ) from exc
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(
                f"{exc} ({self._gave_up(retrying)})", retry_after=exc.retry_after
            ) from exc

    @staticmethod
    def _gave_up(retrying: Retrying) -> str:
        """ "gave up after N attempts in S s" from a finished retry loop's statistics."""
        attempts = retrying.statistics.get("attempt_number", 1)
        elapsed = retrying.statistics.get("delay_since_first_attempt", 0.0)
        return f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s"

    def _paced(self, label: str, call: Callable[[], T]) -> T:
        """One request, at least ``min_interval`` after the end of the previous one."""
        turn = -1.0 if self._max_elapsed is None else self._max_elapsed
        if not self._lock.acquire(timeout=turn):
            raise _AcquireFailed(
                RateLimited(
                    f"KRX {label}: this process's KRX requests are queued longer than "
                    f"{self._max_elapsed:g} s; retry later"
                )
            )
        try:
            return self._paced_locked(label, call)
        finally:
            self._lock.release()

    def _paced_locked(self, label: str, call: Callable[[], T]) -> T:
        """The request of :meth:`_paced`, with the instance lock held."""
        if self._last_end is not None:
            wait = self._last_end + self._min_interval - self._clock()
            if wait > 0:
                self._pause(wait)
        if self._acquire is not None:
            try:
                self._acquire()
            except BaseException as exc:
                raise _AcquireFailed(exc) from exc
        try:
            return call()
        except (OSError, json.JSONDecodeError) as exc:
            raise ServiceUnavailable(f"KRX {label} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._last_end = self._clock()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "KRX attempt %d of %d failed (%s); retrying in %.1f s",
            state.attempt_number,
            self._attempts,
            error,
            wait,
        )


def _is_empty_frame(value: object) -> bool:
    return not isinstance(value, pd.DataFrame) or value.empty


def _check_reference(series: Sequence[ReferenceSeries]) -> list[ReferenceSeries]:
    """``series`` as a list without duplicates; KRX serves INDEX and ETF series only."""
    if isinstance(series, str | ReferenceSeries) or not isinstance(series, Sequence):
        raise ValidationError(
            f"series must be a sequence of ReferenceSeries, got {series!r}",
            field="series",
            value=series,
        )
    out: dict[tuple[str, ReferenceKind], ReferenceSeries] = {}
    for item in series:
        if not isinstance(item, ReferenceSeries):
            raise ValidationError(
                f"series entry {item!r} is not a ReferenceSeries", field="series", value=item
            )
        if item.kind is ReferenceKind.FX or item.code == USDKRW:
            raise ValidationError(
                f"KrxSource serves index and ETF series, not the FX series {item.code!r} "
                "(use quant.market.yahoo.YahooFxSource)",
                field="series",
                value=item.code,
            )
        pattern = _INDEX_CODE if item.kind is ReferenceKind.INDEX else _TICKER
        if not pattern.match(item.code):
            shape = "four digits" if item.kind is ReferenceKind.INDEX else "six characters"
            raise ValidationError(
                f"KRX {item.kind.value} code {item.code!r} is not {shape}",
                field="series",
                value=item.code,
            )
        out[(item.code, item.kind)] = item
    return list(out.values())


def _reference_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        data: dict[str, Any] = {
            "code": pd.array([], dtype="str"),
            "trade_date": np.array([], dtype=object),
        }
        for column in REFERENCE_BAR_COLUMNS[2:]:
            data[column] = np.array([], dtype=np.float64)
        return pd.DataFrame(data, columns=list(REFERENCE_BAR_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["code", "trade_date"], kind="stable").reset_index(drop=True)


def _snapshot_frame(
    tickers: list[str],
    values: Mapping[str, np.ndarray[Any, np.dtype[np.float64]]],
    keep: np.ndarray[Any, np.dtype[np.bool_]],
) -> pd.DataFrame:
    data: dict[str, Any] = {"ticker": pd.array(tickers, dtype="str")}
    for column, key in zip(
        SNAPSHOT_COLUMNS[1:],
        ("open", "high", "low", "close", "volume", "traded_value"),
        strict=True,
    ):
        data[column] = np.asarray(values[key], dtype=np.float64)[keep]
    return pd.DataFrame(data, columns=list(SNAPSHOT_COLUMNS))


def _snapshot_combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _snapshot_frame(
            [],
            {k: np.empty(0) for k in ("open", "high", "low", "close", "volume", "traded_value")},
            np.empty(0, dtype=np.bool_),
        )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values("ticker", kind="stable").reset_index(drop=True)

"""Upbit (api.upbit.com) KRW-market candles: REAL market data over Upbit's public REST API.

:class:`UpbitSource` implements :class:`quant.market.base.MarketDataSource` (daily candles) and
:class:`quant.market.base.IntradaySource` (minute candles) for Upbit's KRW markets. The quotation
API needs no key. Endpoints used:

* ``GET /v1/market/all?isDetails=false`` — the current listing (``market``, ``korean_name``,
  ``english_name``);
* ``GET /v1/candles/days?market=KRW-BTC&count=200&to=…`` — daily bars, newest first;
* ``GET /v1/candles/minutes/{unit}?market=…&count=200&to=…`` — minute bars, unit in
  1, 3, 5, 10, 15, 30, 60, 240.

Paging: a candle request returns at most 200 bars that *start before* ``to`` (exclusive), newest
first. The next page is requested with ``to`` = the start (``candle_date_time_utc``) of the
oldest bar received, until the requested start is covered or a page comes back empty. Upbit
has no bar for a period without trades, so an empty page means "no more history", not an error.
``to`` is always sent in UTC as ``yyyy-MM-ddTHH:mm:ssZ``; for a range that reaches the present
the first request omits ``to`` (Upbit then answers with the newest bars).

A daily bar covers 00:00–24:00 UTC = 09:00–09:00 KST; its ``trade_date`` is the KST date of its
start (``candle_date_time_kst``), which is the same calendar date as its UTC start. The bar of the
current UTC day (and the newest minute bar) is still forming: its values change until it closes.

Rate limits and failures (Upbit quotation API, candle group ~10 requests/s per IP):

* ``Remaining-Req: group=candles; min=…; sec=N`` — when a response says ``sec=0`` the next
  request waits :data:`EXHAUSTED_PAUSE` seconds first;
* HTTP 429 — retried with exponential backoff and jitter (a ``Retry-After`` header is a floor),
  at most ``max_attempts`` attempts in all, then :class:`quant.errors.RateLimited` (carrying
  ``retry_after`` when the header was sent). Every 429 is reported to the caller's
  ``throttled`` hook first (a shared cooldown: other threads and hosts share the IP's budget,
  so they must pause too, not only the request that was refused). A ``Retry-After`` longer than
  :data:`MAX_IN_PROVIDER_WAIT` is not waited for here: ``RateLimited`` is raised at once so the
  caller (a Celery retry) can wait without holding a worker;
* HTTP 418 — Upbit has banned the IP for persisting after 429s. Retrying lengthens the ban, so
  :class:`UpbitBanned` (a :class:`~quant.errors.PermanentError`) is raised at once, unretried;
* HTTP 5xx, 408, timeouts and connection errors — retried like 429, then
  :class:`quant.errors.ServiceUnavailable`. The retries of one request stop after
  ``max_attempts`` attempts or once the next attempt would start more than ``max_elapsed``
  seconds after the first (waits included), whichever comes first: a provider that never
  answers holds the caller for at most about ``max_elapsed + timeout`` seconds;
* HTTP 404 — :class:`quant.errors.NotFound`; any other 4xx — :class:`quant.errors.ValidationError`
  (``field="market"``); both name the market and quote Upbit's error message;
* a 200 whose body is not JSON, or JSON of the wrong shape (not a list, an entry that is not an
  object, a missing or mistyped field, a bar for another market, paging that does not move
  back in time) — :class:`UpbitProtocolError` (a ``PermanentError``), NOT retried: the server
  answered, and asking again is not expected to change the contract it broke. It names the
  endpoint, the market and what was wrong.

No request ever carries an ``Origin`` header (Upbit allows such requests once per 10 s); it is
removed even when the caller's ``httpx.Client`` has one as a default header.

Thread safety: the HTTP client is thread-safe and the ``sec=0`` bookkeeping is locked, but the
rate-limit state is per instance; share one instance (or a caller-provided ``acquire`` limiter)
between threads that hit Upbit from the same IP.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
import pandas as pd
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from quant.calendar import check_aware, check_date, check_range
from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INTRADAY_INTERVALS,
    Instrument,
    ListingStatus,
    Market,
    selects,
)
from quant.retry_after import retry_after as retry_after_of

__all__ = [
    "DEFAULT_BASE_URL",
    "EXHAUSTED_PAUSE",
    "MAX_IN_PROVIDER_WAIT",
    "PAGE_SIZE",
    "UpbitBanned",
    "UpbitProtocolError",
    "UpbitSource",
]

#: Upbit's public REST endpoint (Korea).
DEFAULT_BASE_URL = "https://api.upbit.com"
#: Bars requested per candle call (Upbit's maximum).
PAGE_SIZE = 200
#: Seconds waited before the next request after a response with ``Remaining-Req: … sec=0``.
EXHAUSTED_PAUSE = 1.0
#: Longest ``Retry-After`` (seconds) waited for inside the provider; longer ones are raised.
MAX_IN_PROVIDER_WAIT = 10.0

# Backoff between attempts: 1 s, 2 s, 4 s … (capped at 8 s) plus up to 1 s of jitter.
_BACKOFF = wait_exponential_jitter(initial=1.0, max=8.0, exp_base=2.0, jitter=1.0)

_MARKET_ALL = "/v1/market/all"
_DAYS = "/v1/candles/days"
_KRW_PREFIX = "KRW-"
_UNITS: dict[str, int] = {interval: int(interval[:-1]) for interval in INTRADAY_INTERVALS}
_REMAINING_SEC = re.compile(r"(?:^|;)\s*sec\s*=\s*(\d+)\s*(?:;|$)")
_NUMERIC_FIELDS = (
    "opening_price",
    "high_price",
    "low_price",
    "trade_price",
    "candle_acc_trade_volume",
    "candle_acc_trade_price",
)
_TEXT_LIMIT = 300  # characters of an error body quoted in a message


class UpbitBanned(PermanentError):
    """Upbit answered HTTP 418: this IP is temporarily banned for ignoring 429s.

    Not retried (retrying lengthens the ban). ``detail`` is Upbit's explanation (the ban text,
    usually with its period) or ``""``; ``banned_for`` is the ``Retry-After`` header in seconds
    when Upbit sent one, else ``None``.
    """

    def __init__(self, message: str, *, detail: str = "", banned_for: float | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.banned_for = banned_for


class UpbitProtocolError(PermanentError):
    """Upbit answered 200 with a body that breaks its documented format.

    ``endpoint`` is the path requested (``/v1/candles/days`` …); the message says what was wrong.
    """

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class _AcquireFailed(Exception):
    """Carries an exception raised by the caller's ``acquire`` (or ``throttled``) hook past the
    retry loop, so a limiter's refusal is never retried here (the limiter, not this provider,
    decides)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class _Candle:
    start_utc: datetime  # timezone-aware UTC
    kst_date: date
    open: float
    high: float
    low: float
    close: float
    volume: float
    traded_value: float


def _utc_iso(moment: datetime) -> str:
    """``moment`` (aware) as Upbit's ``to`` format in UTC: ``2024-01-31T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(path: str, params: dict[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"GET {path}" + (f" ({shown})" if shown else "")


def _error_text(response: httpx.Response) -> str:
    """Upbit's error message from ``{"error": {"name": …, "message": …}}``, else the raw body
    (shortened); ``""`` for an empty body."""
    try:
        payload = json.loads(response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        parts = [str(error[k]) for k in ("name", "message") if error.get(k) not in (None, "")]
        if parts:
            return ": ".join(parts)[:_TEXT_LIMIT]
    try:
        text = response.text.strip()
    except (UnicodeDecodeError, LookupError):
        text = repr(response.content[:_TEXT_LIMIT])
    return " ".join(text.split())[:_TEXT_LIMIT]


def _check_tickers(tickers: Sequence[str]) -> list[str]:
    """Sorted, de-duplicated KRW market codes; raises ValidationError naming a bad one."""
    if isinstance(tickers, str):
        raise ValidationError(
            f"tickers must be a sequence of Upbit markets, not the single string {tickers!r}",
            field="tickers",
            value=tickers,
        )
    checked: set[str] = set()
    for ticker in tickers:
        if (
            not isinstance(ticker, str)
            or not ticker.startswith(_KRW_PREFIX)
            or len(ticker) <= len(_KRW_PREFIX)
        ):
            raise ValidationError(
                f"Upbit ticker {ticker!r} is not a KRW market code like 'KRW-BTC'",
                field="tickers",
                value=ticker,
            )
        checked.add(ticker)
    return sorted(checked)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _parse_candles(payload: object, path: str, market: str) -> list[_Candle]:
    """Upbit candle objects → :class:`_Candle`, raising UpbitProtocolError on any deviation."""

    def broken(what: str) -> UpbitProtocolError:
        return UpbitProtocolError(
            f"Upbit {path} for market {market!r} answered in an unexpected format: {what}",
            endpoint=path,
        )

    if not isinstance(payload, list):
        raise broken(f"expected a JSON list of candles, got {type(payload).__name__}")
    candles: list[_Candle] = []
    for i, item in enumerate(payload):
        if not isinstance(item, dict):
            raise broken(f"candle #{i} is a {type(item).__name__}, not an object")
        if item.get("market") != market:
            raise broken(f"candle #{i} is for market {item.get('market')!r}")
        utc = _parse_time(item.get("candle_date_time_utc"))
        kst = _parse_time(item.get("candle_date_time_kst"))
        if utc is None:
            raise broken(
                f"candle #{i} has no valid candle_date_time_utc "
                f"({item.get('candle_date_time_utc')!r})"
            )
        if kst is None:
            raise broken(
                f"candle #{i} has no valid candle_date_time_kst "
                f"({item.get('candle_date_time_kst')!r})"
            )
        values: list[float] = []
        for field in _NUMERIC_FIELDS:
            value = item.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise broken(f"candle #{i} ({utc.isoformat()}) has {field}={value!r}")
            values.append(float(value))
        start = utc.replace(tzinfo=UTC) if utc.tzinfo is None else utc.astimezone(UTC)
        candles.append(_Candle(start, kst.date(), *values))
    return candles


def _empty_daily() -> pd.DataFrame:
    return _daily_frame([], [])


def _daily_frame(tickers: list[str], candles: list[_Candle]) -> pd.DataFrame:
    data: dict[str, Any] = {
        "market": pd.Series([Market.UPBIT.value] * len(candles), dtype=object),
        "ticker": pd.Series(tickers, dtype=object),
        "trade_date": pd.Series([c.kst_date for c in candles], dtype=object),
    }
    for column in DAILY_CANDLE_COLUMNS[3:]:
        data[column] = pd.Series([getattr(c, column) for c in candles], dtype="float64")
    frame = pd.DataFrame(data, columns=list(DAILY_CANDLE_COLUMNS))
    return frame.sort_values(["ticker", "trade_date"], kind="stable").reset_index(drop=True)


def _intraday_frame(interval: str, tickers: list[str], candles: list[_Candle]) -> pd.DataFrame:
    data: dict[str, Any] = {
        "market": pd.Series([Market.UPBIT.value] * len(candles), dtype=object),
        "ticker": pd.Series(tickers, dtype=object),
        "interval": pd.Series([interval] * len(candles), dtype=object),
        "ts": pd.Series(pd.to_datetime([c.start_utc for c in candles], utc=True)),
    }
    for column in INTRADAY_CANDLE_COLUMNS[4:]:
        data[column] = pd.Series([getattr(c, column) for c in candles], dtype="float64")
    frame = pd.DataFrame(data, columns=list(INTRADAY_CANDLE_COLUMNS))
    return frame.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)


class UpbitSource:
    """REAL Upbit KRW-market data: listing, daily candles and minute candles.

    Args:
        client: an ``httpx.Client`` to send requests with (its base URL is not used; requests
            go to absolute URLs under ``base_url``). When ``None`` the source creates one
            that ignores environment variables (``trust_env=False``: no proxy or CA-bundle
            settings from the environment) and closes it in :meth:`close`.
        base_url: scheme and host of the API, without a trailing path.
        pause: called with a number of seconds whenever the source waits (``time.sleep`` by
            default; tests pass a recorder).
        max_attempts: attempts per request, first included (>= 1), for 429, 5xx and
            network failures.
        timeout: seconds allowed per HTTP request (connect, read, write and pool each).
        max_elapsed: when given, no retry starts later than this many seconds after the first
            attempt of a request (waits included); ``None``: bounded by ``max_attempts`` only.
        acquire: when given, called with no arguments right before EVERY HTTP request, retries
            included — a hook for a caller's global rate limiter. It may block; whatever it
            raises propagates unchanged and is not retried here.
        throttled: when given, called with the ``Retry-After`` seconds (``None`` when Upbit
            sent none) each time Upbit answers HTTP 429, before this source waits to retry or
            gives up — a hook for a caller's shared cooldown. Whatever it raises propagates
            unchanged and is not retried here.

    Raises:
        quant.errors.ValidationError: ``max_attempts`` < 1, or ``timeout`` or ``max_elapsed``
            not a positive number.
    """

    name: str = "upbit"
    simulated: bool = False

    def __init__(
        self,
        client: httpx.Client | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        pause: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        timeout: float = 10.0,
        max_elapsed: float | None = None,
        acquire: Callable[[], None] | None = None,
        throttled: Callable[[float | None], None] | None = None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationError(
                f"max_attempts must be an integer >= 1, got {max_attempts!r}",
                field="max_attempts",
                value=max_attempts,
            )
        for field, value in (("timeout", timeout), ("max_elapsed", max_elapsed)):
            if field == "max_elapsed" and value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or not math.isfinite(value)
            ):
                raise ValidationError(
                    f"{field} must be a positive number of seconds, got {value!r}",
                    field=field,
                    value=value,
                )
        self._owns_client = client is None
        # trust_env=False: quant/ reads no environment (proxies, CA bundles); a caller who
        # needs them configures and passes its own client. Every request also sets its own
        # timeout, so a caller's client without one is bounded too.
        self._client = (
            client if client is not None else httpx.Client(trust_env=False, timeout=timeout)
        )
        self._base_url = base_url.rstrip("/")
        self._pause = pause
        self._max_attempts = max_attempts
        self._timeout = float(timeout)
        self._max_elapsed = None if max_elapsed is None else float(max_elapsed)
        self._acquire = acquire
        self._throttled = throttled
        self._lock = threading.Lock()
        self._exhausted = False  # the last response said Remaining-Req sec=0

    def __repr__(self) -> str:
        return f"UpbitSource(base_url={self._base_url!r}, max_attempts={self._max_attempts})"

    def close(self) -> None:
        """Close the HTTP client if this source created it (a caller's client is left open)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> UpbitSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- MarketDataSource ---------------------------------------------------------------------

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """Upbit's KRW markets, sorted by ticker (``KRW-BTC`` …), all LISTED, currency KRW.

        Upbit publishes only the current listing, so ``as_of`` is validated but the answer is
        always today's. ``name`` is ``korean_name``, else ``english_name``, else the ticker.
        ``market`` other than ``None``/``Market.UPBIT`` gives ``[]`` without a request.

        Raises:
            quant.errors.ValidationError: ``as_of`` is not a plain date, or ``market`` is
                not a Market (nor a market name).
            UpbitBanned, UpbitProtocolError, quant.errors.RateLimited,
            quant.errors.ServiceUnavailable: see the module docstring.
        """
        check_date(as_of, "as_of")
        if not selects(market, Market.UPBIT):
            return []
        payload = self._get_json(_MARKET_ALL, {"isDetails": "false"})
        if not isinstance(payload, list):
            raise UpbitProtocolError(
                f"Upbit {_MARKET_ALL} answered in an unexpected format: expected a JSON list "
                f"of markets, got {type(payload).__name__}",
                endpoint=_MARKET_ALL,
            )
        found: dict[str, Instrument] = {}
        for i, item in enumerate(payload):
            code = item.get("market") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(code, str) or not code:
                raise UpbitProtocolError(
                    f"Upbit {_MARKET_ALL} answered in an unexpected format: entry #{i} has no "
                    f"market code ({item!r:.{_TEXT_LIMIT}})",
                    endpoint=_MARKET_ALL,
                )
            if not code.startswith(_KRW_PREFIX) or len(code) <= len(_KRW_PREFIX):
                continue
            names = (item.get("korean_name"), item.get("english_name"))
            name = next((n.strip() for n in names if isinstance(n, str) and n.strip()), code)
            found[code] = Instrument(
                market=Market.UPBIT,
                ticker=code,
                name=name,
                currency="KRW",
                listing_status=ListingStatus.LISTED,
            )
        return [found[code] for code in sorted(found)]

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """REAL daily bars of Upbit KRW markets for the KST dates in ``[start, end]``.

        Columns are :data:`~quant.market.types.DAILY_CANDLE_COLUMNS`: ``market`` ``"UPBIT"``,
        ``ticker`` (``KRW-BTC``), ``trade_date`` the KST date of the bar's 09:00 KST start,
        ``open/high/low/close`` float64 KRW (``opening_price``/``high_price``/``low_price``/
        ``trade_price``), ``volume`` float64 coins (``candle_acc_trade_volume``),
        ``traded_value`` float64 KRW (``candle_acc_trade_price``). Sorted by ticker then date.
        Days without trades (and days before a market's listing) have no row.

        ``tickers=None`` means every current KRW market (one listing request first). ``market``
        other than ``None``/``Market.UPBIT`` gives an empty frame without a request.

        Raises:
            quant.errors.ValidationError: ``start``/``end`` are not plain dates, ``start`` is
                after ``end``, ``market`` is not a Market, ``tickers`` is a single string or
                holds a non-KRW code, or Upbit rejected the request (HTTP 400 …, naming the
                market).
            quant.errors.NotFound: Upbit does not know a market (HTTP 404).
            UpbitBanned, UpbitProtocolError, quant.errors.RateLimited,
            quant.errors.ServiceUnavailable: see the module docstring.
        """
        check_range(start, end)
        if not selects(market, Market.UPBIT):
            return _empty_daily()
        wanted = self._tickers(tickers, end)
        # Bars start at 00:00 UTC; ``to`` is exclusive, so the first page ends with ``end``'s bar.
        first_to = (
            None
            if end >= datetime.now(UTC).date()
            else datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
        )
        names: list[str] = []
        rows: list[_Candle] = []
        for ticker in wanted:
            seen: set[date] = set()
            for candle in self._pages(_DAYS, ticker, first_to, lambda c: c.kst_date <= start):
                if start <= candle.kst_date <= end and candle.kst_date not in seen:
                    seen.add(candle.kst_date)
                    names.append(ticker)
                    rows.append(candle)
        return _daily_frame(names, rows)

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Not available: Upbit publishes no investor-group flows.

        Raises:
            quant.errors.PermanentError: always (asking again cannot succeed).
        """
        raise PermanentError(
            "Upbit publishes no investor flows (foreign/institution/individual net buying "
            "exists only for KRX equities)"
        )

    # -- IntradaySource -----------------------------------------------------------------------

    def intraday_candles(
        self,
        start: datetime,
        end: datetime,
        interval: str,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """REAL minute bars of Upbit KRW markets that start in ``[start, end)``.

        ``interval`` is one of :data:`~quant.market.types.INTRADAY_INTERVALS` (``"1m"`` …
        ``"240m"``, Upbit's minute units). Columns are
        :data:`~quant.market.types.INTRADAY_CANDLE_COLUMNS`; ``ts`` is the bar's start
        (``candle_date_time_utc``) as a timezone-aware UTC ``pandas.Timestamp``, prices float64
        KRW, ``volume`` float64 coins, ``traded_value`` float64 KRW. Sorted by ticker then
        ``ts``; minutes without trades have no bar. ``tickers``/``market`` as in
        :meth:`daily_candles`.

        Raises:
            quant.errors.ValidationError: naive datetimes, ``start >= end``, an unknown
                interval, a ``market`` that is not a Market, bad ``tickers``, or Upbit
                rejected the request (HTTP 400 …).
            quant.errors.NotFound: Upbit does not know a market (HTTP 404).
            UpbitBanned, UpbitProtocolError, quant.errors.RateLimited,
            quant.errors.ServiceUnavailable: see the module docstring.
        """
        start_utc = check_aware(start, "start")
        end_utc = check_aware(end, "end")
        if start_utc >= end_utc:
            raise ValidationError(
                f"start {start.isoformat()} is not before end {end.isoformat()}",
                field="start",
                value=start,
            )
        unit = _UNITS.get(interval) if isinstance(interval, str) else None
        if unit is None:
            raise ValidationError(
                f"unknown intraday interval {interval!r} (known: {', '.join(INTRADAY_INTERVALS)})",
                field="interval",
                value=interval,
            )
        if not selects(market, Market.UPBIT):
            return _intraday_frame(interval, [], [])
        wanted = self._tickers(tickers, end_utc.date())
        # ``to`` has whole seconds; round ``end`` up so a bar starting before it is not lost.
        now = datetime.now(UTC)
        first_to: datetime | None = None
        if end_utc < now:
            first_to = end_utc.replace(microsecond=0)
            if first_to < end_utc:
                first_to += timedelta(seconds=1)
        path = f"/v1/candles/minutes/{unit}"
        names: list[str] = []
        rows: list[_Candle] = []
        for ticker in wanted:
            seen: set[datetime] = set()
            for candle in self._pages(path, ticker, first_to, lambda c: c.start_utc <= start_utc):
                if start_utc <= candle.start_utc < end_utc and candle.start_utc not in seen:
                    seen.add(candle.start_utc)
                    names.append(ticker)
                    rows.append(candle)
        return _intraday_frame(interval, names, rows)

    # -- paging -------------------------------------------------------------------------------

    def _tickers(self, tickers: Sequence[str] | None, as_of: date) -> list[str]:
        if tickers is None:
            return [inst.ticker for inst in self.list_instruments(as_of, Market.UPBIT)]
        return _check_tickers(tickers)

    def _pages(
        self,
        path: str,
        ticker: str,
        first_to: datetime | None,
        covered: Callable[[_Candle], bool],
    ) -> list[_Candle]:
        """Every bar of ``ticker`` from ``first_to`` (exclusive; ``None`` = now) back to the
        first page whose oldest bar satisfies ``covered``, or to an empty page."""
        out: list[_Candle] = []
        to = first_to
        while True:
            params = {"market": ticker, "count": str(PAGE_SIZE)}
            if to is not None:
                params["to"] = _utc_iso(to)
            page = _parse_candles(self._get_json(path, params), path, ticker)
            if not page:
                return out
            oldest = min(page, key=lambda c: c.start_utc)
            # Progress check: a bar at or after ``to`` is tolerated (filtered and de-duplicated
            # by the caller), but the page must reach further back than ``to``, else paging
            # would never end.
            if to is not None and oldest.start_utc >= to:
                raise UpbitProtocolError(
                    f"Upbit {path} for market {ticker!r} did not page back in time: asked for "
                    f"bars before {_utc_iso(to)}, the oldest returned starts "
                    f"{_utc_iso(oldest.start_utc)}",
                    endpoint=path,
                )
            out.extend(page)
            if covered(oldest):
                return out
            to = oldest.start_utc

    # -- HTTP ---------------------------------------------------------------------------------

    def _get_json(self, path: str, params: dict[str, str]) -> object:
        """One logical GET with in-provider retries; returns the decoded JSON body."""
        retrying = Retrying(
            sleep=self._pause,
            stop=self._should_stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            reraise=False,
        )
        try:
            return retrying(self._request_once, path, params)
        except _AcquireFailed as failed:
            raise failed.error from None
        except RetryError as gave_up:
            last = gave_up.last_attempt.exception()
            if not isinstance(last, TransientError):  # pragma: no cover - only these retry
                raise
            attempts = gave_up.last_attempt.attempt_number
            if last.retry_after is not None and last.retry_after > MAX_IN_PROVIDER_WAIT:
                why = (
                    f"Retry-After {last.retry_after:g} s is longer than the "
                    f"{MAX_IN_PROVIDER_WAIT:g} s waited here; retry later"
                )
            else:
                why = f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
                elapsed = retrying.statistics.get("delay_since_first_attempt")
                if isinstance(elapsed, int | float):
                    why += f" in {elapsed:.1f} s"
            raise type(last)(f"{last}; {why}", retry_after=last.retry_after) from last

    def _should_stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self._max_attempts:
            return True
        if (
            self._max_elapsed is not None
            and (state.seconds_since_start or 0.0) + state.upcoming_sleep >= self._max_elapsed
        ):
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        return (
            isinstance(error, TransientError)
            and error.retry_after is not None
            and error.retry_after > MAX_IN_PROVIDER_WAIT
        )

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        delay = _BACKOFF(state)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay

    def _request_once(self, path: str, params: dict[str, str]) -> object:
        with self._lock:
            exhausted, self._exhausted = self._exhausted, False
        if exhausted:
            self._pause(EXHAUSTED_PAUSE)
        if self._acquire is not None:
            try:
                self._acquire()
            except Exception as error:
                raise _AcquireFailed(error) from error

        what = _describe(path, params)
        request = self._client.build_request(
            "GET",
            self._base_url + path,
            params=params,
            headers={"Accept": "application/json"},
            timeout=self._timeout,
        )
        if "origin" in request.headers:
            del request.headers["origin"]
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as error:
            raise ServiceUnavailable(
                f"Upbit {what} timed out after {self._timeout:g} s: {type(error).__name__}"
            ) from error
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                f"Upbit {what} failed: {type(error).__name__}: {error}"
            ) from error
        self._note_remaining(response)
        if response.status_code == 429 and self._throttled is not None:
            try:
                self._throttled(retry_after_of(response.headers))
            except Exception as error:
                raise _AcquireFailed(error) from error
        return self._decode(response, path, params, what)

    def _note_remaining(self, response: httpx.Response) -> None:
        header = response.headers.get("remaining-req")
        if header is None:
            return
        match = _REMAINING_SEC.search(header)
        if match is not None and int(match.group(1)) == 0:
            with self._lock:
                self._exhausted = True

    def _decode(
        self, response: httpx.Response, path: str, params: dict[str, str], what: str
    ) -> object:
        status = response.status_code
        if status == 200:
            try:
                return json.loads(response.content)
            except ValueError as error:
                raise UpbitProtocolError(
                    f"Upbit {what} answered 200 with a body that is not JSON ({error}): "
                    f"{_error_text(response)!r}",
                    endpoint=path,
                ) from error
        detail = _error_text(response)
        suffix = f": {detail}" if detail else ""
        market = params.get("market")
        if status == 429:
            retry_after = retry_after_of(response.headers)
            hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
            raise RateLimited(
                f"Upbit throttled {what} with HTTP 429{hint}{suffix}", retry_after=retry_after
            )
        if status == 418:
            banned_for = retry_after_of(response.headers)
            period = f" for {banned_for:g} s (Retry-After)" if banned_for is not None else ""
            raise UpbitBanned(
                f"Upbit banned this IP{period} (HTTP 418) on {what}{suffix}. Not retried: "
                "requests during a ban lengthen it; wait for the ban to end",
                detail=detail,
                banned_for=banned_for,
            )
        if status == 408 or 500 <= status <= 599:
            raise ServiceUnavailable(
                f"Upbit {what} failed with HTTP {status}{suffix}",
                retry_after=retry_after_of(response.headers),
            )
        if status == 404:
            subject = f"market {market!r}" if market is not None else f"endpoint {path}"
            raise NotFound(f"Upbit does not know {subject}: HTTP 404 on {what}{suffix}")
        if 400 <= status <= 499:
            subject = f"market {market!r}" if market is not None else "the request"
            raise ValidationError(
                f"Upbit rejected {subject}: HTTP {status} on {what}{suffix}",
                field="market" if market is not None else "request",
                value=market if market is not None else what,
            )
        raise UpbitProtocolError(
            f"Upbit {what} answered with unexpected HTTP {status}{suffix}", endpoint=path
        )

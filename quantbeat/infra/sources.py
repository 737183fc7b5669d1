"""Builds the configured market-data source and its trading calendar from settings.

The one place that turns ``QUANTBEAT_MARKET_SOURCE`` (and its credentials) into a
:class:`quant.market.base.MarketDataSource`. Sources keep state worth reusing (the simulated
market caches its last simulated session), so one instance per process and configuration.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import threading
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import exchange_calendars

from quant.calendar import (
    SessionCalendar,
    TradingCalendar,
    latest_closed_session,
    xkrx_sessions,
)
from quant.errors import ConfigError
from quant.market.base import MarketDataSource, ReferenceDataSource, SnapshotSource
from quant.market.faults import CorruptingSource
from quant.market.reference import ReferenceSources
from quant.market.simulated import SimulatedMarket
from quant.market.simulated_crypto import SimulatedCrypto
from quant.market.upbit import UpbitSource
from quant.market.yahoo import YahooFxSource
from quant.news import RssSource
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.ratelimit import RateLimiter, limiter_for
from quantbeat.infra.settings import Settings, get_settings

_lock = threading.Lock()
_sources: dict[tuple[str, int, int, float], MarketDataSource] = {}


def market_source(settings: Settings) -> MarketDataSource:
    """The process-wide source for ``settings``.

    Raises:
        quant.errors.ConfigError: the configured source is unknown or lacks credentials.
    """
    key = (
        settings.market_source,
        settings.sim_seed,
        settings.sim_universe_size,
        settings.sim_corrupt_rate,
    )
    with _lock:
        source = _sources.get(key)
        if source is None:
            if settings.market_source == "krx":
                _sources[key] = source = _krx_source(settings)
                return source
            if settings.market_source != "simulated":
                raise ConfigError(f"unknown QUANTBEAT_MARKET_SOURCE={settings.market_source!r}")
            source = SimulatedMarket(
                seed=settings.sim_seed,
                universe_size=settings.sim_universe_size,
                calendar=krx_calendar(),
            )
            if settings.sim_corrupt_rate > 0:
                source = CorruptingSource(source, settings.sim_corrupt_rate, seed=settings.sim_seed)
            _sources[key] = source
    return source


def reference_source(settings: Settings) -> ReferenceDataSource:
    """The source of index, ETF and USD/KRW daily bars for ``settings``: the market source
    itself when it provides them (the simulated market; fault injection applies to stock
    candles only).

    Raises:
        quant.errors.ConfigError: the configured market source provides no reference bars.
    """
    source: Any = market_source(settings)
    if isinstance(source, CorruptingSource):
        source = source.inner
    if settings.market_source == "krx" and isinstance(source, ReferenceDataSource):
        # KRX has the indices and ETFs; USD/KRW comes from Yahoo (KRW=X), paced like yfinance
        limiter = limiter_for(
            "yfinance",
            redis_url=settings.redis_url,
            rates=settings.provider_rates,
            max_wait=settings.rate_limit_max_wait,
            headroom=settings.rate_limit_headroom,
        )
        fx = YahooFxSource(
            timeout=settings.http_timeout,
            acquire=limiter.acquire if limiter is not None else None,
        )
        return ReferenceSources(source, fx)
    if isinstance(source, ReferenceDataSource):
        return source
    raise ConfigError(
        f"QUANTBEAT_MARKET_SOURCE={settings.market_source!r} provides no index, ETF or USD/KRW bars"
    )


def simulated_movers(settings: Settings, day: dt.date) -> list[str]:
    """``"MARKET:TICKER"`` of the simulated market's planted surges of ``day`` (the news-driven
    movers its simulated news names); empty for a real market source."""
    if settings.market_source != "simulated":
        return []
    source: Any = market_source(settings)
    if isinstance(source, CorruptingSource):
        source = source.inner
    if not isinstance(source, SimulatedMarket):
        return []
    return [f"{i.market.value}:{i.ticker}" for i in source.movers(day)]


def snapshot_source(settings: Settings) -> SnapshotSource:
    """The source of intraday snapshots (the day so far) for ``settings``: the market source
    itself when it provides them.

    Raises:
        quant.errors.ConfigError: the configured market source provides no snapshots.
    """
    source: Any = market_source(settings)
    if isinstance(source, CorruptingSource):
        source = source.inner
    if isinstance(source, SnapshotSource):
        return source
    raise ConfigError(
        f"QUANTBEAT_MARKET_SOURCE={settings.market_source!r} provides no intraday snapshots"
    )


#: The span of the KRX calendar quantbeat knows (exchange_calendars computes holidays by rule).
KRX_CALENDAR_SPAN = (dt.date(2000, 1, 3), dt.date(2040, 12, 31))


_calendar_lock = threading.Lock()


@functools.cache
def krx_calendar() -> TradingCalendar:
    """The KRX trading calendar: exchange_calendars' XKRX sessions for
    :data:`KRX_CALENDAR_SPAN`, cached as JSON under ``QUANTBEAT_CACHE_DIR`` (building it
    takes several seconds; reading the cache takes milliseconds). The cache is keyed by the
    exchange_calendars version, so an upgrade with new holidays rebuilds it."""
    # functools.cache does not stop concurrent first calls from each building (several
    # seconds each); the lock makes the others wait for the first.
    with _calendar_lock:
        return _load_krx_calendar()


def _load_krx_calendar() -> TradingCalendar:

    first, last = KRX_CALENDAR_SPAN
    version = getattr(exchange_calendars, "__version__", "unknown")
    cache = get_settings().cache_path / f"xkrx-{version}-{first}-{last}.json"
    sessions: list[dt.date] | None = None
    try:
        sessions = [dt.date.fromisoformat(d) for d in json.loads(cache.read_text())]
    except (OSError, ValueError):
        sessions = None
    if not sessions:
        sessions = xkrx_sessions(first, last)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps([d.isoformat() for d in sessions]))
            tmp.replace(cache)  # atomic: concurrent workers never read half a file
        except OSError:
            pass  # a read-only data dir only costs the rebuild next time
    return SessionCalendar("XKRX", sessions, first, last)


def latest_krx_session(
    settings: Settings, now: dt.datetime | None = None, published: dt.time | None = None
) -> dt.date:
    """The latest KRX session that has closed at ``now`` (default: the current time in
    ``QUANTBEAT_TIMEZONE``) — or, with ``published``, whose data is out by then (investor
    flows appear in the evening): what "today's data" means for collection."""
    moment = now or dt.datetime.now(ZoneInfo(settings.timezone))
    if published is None:
        return latest_closed_session(krx_calendar(), moment)
    return latest_closed_session(krx_calendar(), moment, close=published)


_crypto: dict[tuple[str, str, int, tuple[str, ...], float, float], Any] = {}


def crypto_source(settings: Settings) -> Any:
    """The process-wide crypto source (a :class:`~quant.market.base.MarketDataSource` that is
    also an :class:`~quant.market.base.IntradaySource`): Upbit behind the global rate limiter
    (each 429 it answers starts the limiter's shared cooldown), or the simulated crypto market.

    Raises:
        quant.errors.ConfigError: the configured source is unknown.
    """
    key = (
        settings.crypto_source,
        settings.upbit_base_url,
        settings.sim_seed,
        tuple(settings.crypto_tickers),
        settings.http_timeout,
        settings.provider_retry_max,
    )
    with _lock:
        source = _crypto.get(key)
        if source is None:
            if settings.crypto_source == "upbit":
                limiter = upbit_limiter(settings)
                source = UpbitSource(
                    base_url=settings.upbit_base_url,
                    timeout=settings.http_timeout,
                    max_elapsed=settings.provider_retry_max,
                    acquire=limiter.acquire if limiter is not None else None,
                    throttled=_shared_cooldown(limiter) if limiter is not None else None,
                )
            elif settings.crypto_source == "simulated":
                source = SimulatedCrypto(
                    seed=settings.sim_seed, tickers=settings.crypto_tickers or None
                )
            else:
                raise ConfigError(f"unknown QUANTBEAT_CRYPTO_SOURCE={settings.crypto_source!r}")
            _crypto[key] = source
    return source


@after_fork
def forget_sources() -> None:
    """Drop the process-wide market and crypto sources (their HTTP clients and limiters)."""
    with _lock:
        _sources.clear()
        _crypto.clear()


def _krx_source(settings: Settings) -> MarketDataSource:
    """KRX through pykrx, paced by the global ``krx`` rate (on top of pykrx's own >= 1 s).

    Raises:
        quant.errors.ConfigError: QUANTBEAT_KRX_ID / QUANTBEAT_KRX_PW are not set.
    """

    if not settings.krx_id or settings.krx_pw is None:
        raise ConfigError(
            "QUANTBEAT_MARKET_SOURCE=krx needs QUANTBEAT_KRX_ID and QUANTBEAT_KRX_PW "
            "(data.krx.co.kr requires a login since 2025-12-27)"
        )
    limiter = limiter_for(
        "krx",
        redis_url=settings.redis_url,
        rates=settings.provider_rates,
        max_wait=settings.rate_limit_max_wait,
        headroom=settings.rate_limit_headroom,
    )
    # pykrx (and its dependencies) load only when the KRX source is configured.
    from quant.market.krx import KrxSource  # noqa: PLC0415 (pykrx: optional)

    source: MarketDataSource = KrxSource(
        settings.krx_id,
        settings.krx_pw.get_secret_value(),
        calendar=krx_calendar(),
        acquire=limiter.acquire if limiter is not None else None,
        request_timeout=settings.http_timeout,
        max_elapsed=settings.provider_retry_max,
    )
    return source


#: Shared cooldown (seconds) after a provider's 429 that did not say how long to wait.
THROTTLE_COOLDOWN_S = 5.0


def feed_sources(settings: Settings) -> list[RssSource]:
    """One :class:`~quant.news.RssSource` per ``QUANTBEAT_NEWS_FEEDS`` URL (named ``feed1``,
    ``feed2`` …), each request bounded by ``QUANTBEAT_HTTP_TIMEOUT`` per phase and the whole
    fetch by ``QUANTBEAT_PROVIDER_RETRY_MAX``. The caller closes them.

    Raises:
        quant.errors.ValidationError: a URL is not an absolute http(s) URL.
    """
    return [
        RssSource(
            url,
            name=f"feed{i + 1}",
            timeout=settings.http_timeout,
            max_elapsed=settings.provider_retry_max,
        )
        for i, url in enumerate(settings.news_feeds)
    ]


def _shared_cooldown(limiter: RateLimiter) -> Callable[[float | None], None]:
    """A source's ``throttled`` hook: a 429 stops every worker calling that provider for its
    ``Retry-After`` (else :data:`THROTTLE_COOLDOWN_S`), at once — not only when the refused
    request has used up its own retries."""

    def throttled(retry_after: float | None) -> None:
        limiter.cooldown(retry_after if retry_after else THROTTLE_COOLDOWN_S)

    return throttled


def upbit_limiter(settings: Settings) -> RateLimiter | None:
    """The global limiter for Upbit requests (``None`` if no rate is configured)."""
    return limiter_for(
        "upbit",
        redis_url=settings.redis_url,
        rates=settings.provider_rates,
        max_wait=settings.rate_limit_max_wait,
        headroom=settings.rate_limit_headroom,
    )

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
from zoneinfo import ZoneInfo

from quant.calendar import (
    SessionCalendar,
    TradingCalendar,
    latest_closed_session,
    xkrx_sessions,
)
from quant.errors import ConfigError
from quant.market.base import MarketDataSource
from quant.market.faults import CorruptingSource
from quant.market.simulated import SimulatedMarket
from quantbeat.settings import Settings, get_settings

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


#: The span of the KRX calendar quantbeat knows (exchange_calendars computes holidays by rule).
KRX_CALENDAR_SPAN = (dt.date(2000, 1, 3), dt.date(2040, 12, 31))


@functools.cache
def krx_calendar() -> TradingCalendar:
    """The KRX trading calendar: exchange_calendars' XKRX sessions for
    :data:`KRX_CALENDAR_SPAN`, cached as JSON under ``QUANTBEAT_DATA_DIR/cache`` (building it
    takes several seconds; reading the cache takes milliseconds). The cache is keyed by the
    exchange_calendars version, so an upgrade with new holidays rebuilds it."""
    import exchange_calendars

    first, last = KRX_CALENDAR_SPAN
    version = getattr(exchange_calendars, "__version__", "unknown")
    cache = get_settings().data_dir / "cache" / f"xkrx-{version}-{first}-{last}.json"
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


def latest_krx_session(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """The latest KRX session that has closed at ``now`` (default: the current time in
    ``QUANTBEAT_TIMEZONE``): what "today's data" means for collection and the main job."""
    moment = now or dt.datetime.now(ZoneInfo(settings.timezone))
    return latest_closed_session(krx_calendar(), moment)

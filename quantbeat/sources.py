"""Builds the configured market-data source and its trading calendar from settings.

The one place that turns ``QUANTBEAT_MARKET_SOURCE`` (and its credentials) into a
:class:`quant.market.base.MarketDataSource`. Sources keep state worth reusing (the simulated
market caches its last simulated session), so one instance per process and configuration.
"""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

from quant.calendar import TradingCalendar, krx_approximate_calendar, latest_closed_session
from quant.errors import ConfigError
from quant.market.base import MarketDataSource
from quant.market.faults import CorruptingSource
from quant.market.simulated import SimulatedMarket
from quantbeat.settings import Settings

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


def krx_calendar() -> TradingCalendar:
    """The KRX trading calendar in use."""
    return _KRX


def latest_krx_session(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """The latest KRX session that has closed at ``now`` (default: the current time in
    ``QUANTBEAT_TIMEZONE``): what "today's data" means for collection and the main job."""
    moment = now or dt.datetime.now(ZoneInfo(settings.timezone))
    return latest_closed_session(_KRX, moment)


_KRX = krx_approximate_calendar()

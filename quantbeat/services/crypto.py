"""The crypto jobs of the seed backend (issue 23); so far the volatility check.

Every 5 minutes (beat ``crypto-volatility-5m``) :func:`check_volatility` collects the last
hour's 5-minute bars and any missing hourly bars of the trailing 30 days for
``QUANTBEAT_CRYPTO_SIGNAL_MARKETS`` (the same collector as the hourly crypto candles: upserts,
rejections recorded, the provider's global rate limit), reads them back and assesses each
market (:func:`quant.crypto.volatility.assess`). An unusual hour becomes a
``crypto.volatility`` event — delivered to the subscriptions like every event — at most once
per market and clock hour: the event's business key is the market and the hour, so later
checks within that hour, a retry or a second beat, record nothing new.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import structlog

from db.candles import load_candles
from db.engine import session_scope
from db.store import instrument_ids
from quant.crypto.volatility import WINDOW, VolatilityReading, assess
from quant.errors import ValidationError
from quant.market.types import Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import crypto_source
from quantbeat.services import notify
from quantbeat.services.collect import collect_crypto, floor_to_interval

log = structlog.get_logger("quantbeat.services.crypto")

#: The check's step (minutes): the beat's period and the grid of ``at``.
CHECK_MINUTES = 5


def check_volatility(
    at: dt.datetime | None = None,
    markets: list[str] | None = None,
    sigma: float | None = None,
) -> dict[str, Any]:
    """Assess the hour ending at ``at`` (default: now floored to 5 minutes, UTC) for each of
    ``markets`` (default ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``) against ``sigma`` (default
    ``QUANTBEAT_VOLATILITY_SIGMA``); record a ``crypto.volatility`` event for each unusual
    one not yet announced this hour.

    Returns ``{"at", "threshold", "source", "simulated", "markets": {market: reading and
    "announced"}, "alerts"}`` (``alerts``: events recorded by this call).

    Raises:
        quant.errors.ValidationError: ``at`` naive, ``sigma`` not a positive number, or a
            stored bar is not a positive price.
        quant.errors.RateLimited, quant.errors.ServiceUnavailable: the provider pushed back
            or did not answer (transient: the task retries after 1 s, 2 s, 4 s).
    """
    settings = get_settings()
    if at is not None and at.tzinfo is None:
        raise ValidationError(f"at must be timezone-aware, got {at!r}", field="at")
    when = floor_to_interval(at or dt.datetime.now(dt.UTC), CHECK_MINUTES)
    wanted = list(markets or settings.crypto_signal_markets)
    threshold = settings.volatility_sigma if sigma is None else sigma
    source = crypto_source(settings)

    collected = collect_hour(wanted, when)

    readings: dict[str, dict[str, Any]] = {}
    alerts = 0
    with session_scope() as session:
        ids = instrument_ids(session, ((Market.UPBIT.value, m) for m in wanted))
        for market in wanted:
            ident = ids.get((Market.UPBIT.value, market))
            reading = read_hour(session, ident, market, when, threshold)
            announced = False
            if reading.unusual:
                bucket = floor_to_interval(when - dt.timedelta(seconds=1), 60)
                event = notify.record(
                    session,
                    "crypto.volatility",
                    key=f"crypto.volatility:{market}:{bucket.isoformat()}",
                    payload={
                        "market": market,
                        "at": when.isoformat(),
                        "threshold": threshold,
                        "move": reading.move,
                        "move_sigma": reading.move_sigma,
                        "realized_sigma": reading.realized_sigma,
                        "price": reading.price,
                        "price_hour_ago": reading.price_hour_ago,
                    },
                    at=when,
                    simulated=source.simulated,
                )
                announced = event is not None
                alerts += announced
                log.warning(
                    "crypto.volatility",
                    market=market,
                    at=when.isoformat(),
                    move_sigma=round(reading.move_sigma or 0.0, 2),
                    realized_sigma=round(reading.realized_sigma or 0.0, 2),
                    announced=announced,
                )
            readings[market] = {**reading.as_dict(), "announced": announced}
    return {
        "at": when.isoformat(),
        "threshold": threshold,
        "source": source.name,
        "simulated": source.simulated,
        "collected": collected,
        "markets": readings,
        "alerts": alerts,
    }


def read_hour(
    session: Any, ident: int | None, market: str, when: dt.datetime, threshold: float
) -> VolatilityReading:
    """The volatility check of ``market`` (instrument ``ident``) for the hour ending at
    ``when`` from its stored bars (:func:`quant.crypto.volatility.assess`)."""
    hour = dt.timedelta(hours=1)
    h = _bars(session, ident, "60m", when - WINDOW - 3 * hour, when, 3600)
    f = _bars(session, ident, "5m", when - 2 * hour, when, 300)
    return assess(
        market,
        when,
        hourly_ends=h[0],
        hourly_closes=h[1],
        five_minute_ends=f[0],
        five_minute_closes=f[1],
        threshold=threshold,
    )


def collect_hour(markets: list[str], when: dt.datetime) -> dict[str, Any]:
    """Collect what :func:`read_hour` reads for the hour ending at ``when``: the hour's
    5-minute bars, and the trailing window's hourly bars that are missing. Returns the
    counts by interval."""
    hour = dt.timedelta(hours=1)
    first_hourly = when - WINDOW - 3 * hour
    start = _hourly_start(markets, first_hourly, when)
    # closed hourly bars only: the one forming at ``when`` is left out
    hourly = collect_crypto("60m", start=start, end=floor_to_interval(when, 60), tickers=markets)
    five_start = when - hour - dt.timedelta(minutes=CHECK_MINUTES)
    five = collect_crypto("5m", start=five_start, end=when, tickers=markets)
    return {"60m": hourly["candles"], "5m": five["candles"]}


def _hourly_start(markets: list[str], first: dt.datetime, when: dt.datetime) -> dt.datetime | None:
    """Where the hourly collection starts: ``first`` (the whole window again) when a market
    has no stored hourly bar within two hours after it — nothing collected yet, or less than
    the window; otherwise ``None``: the collector's incremental start (after the oldest
    latest stored bar)."""
    with session_scope() as session:
        ids = instrument_ids(session, ((Market.UPBIT.value, m) for m in markets))
        for market in markets:
            ident = ids.get((Market.UPBIT.value, market))
            if ident is None:
                return first
            early = load_candles(
                session, ident, "60m", start=first, end=first + dt.timedelta(hours=2), limit=1
            )
            if not len(early.time):
                return first
    return None


def _bars(
    session: Any,
    ident: int | None,
    interval: str,
    start: dt.datetime,
    end: dt.datetime,
    seconds: int,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(end times as UTC ``datetime64[s]``, closes) of one instrument's stored bars of
    ``interval`` starting in ``[start, end)``."""
    if ident is None:
        return np.array([], dtype="datetime64[s]"), np.array([], dtype=np.float64)
    limit = int((end - start).total_seconds() // seconds) + 2
    candles = load_candles(session, ident, interval, start=start, end=end, limit=limit)
    starts = candles.time.astype("datetime64[s]")
    keep = starts < np.datetime64(end.astimezone(dt.UTC).replace(tzinfo=None), "s")
    return starts[keep] + np.timedelta64(seconds, "s"), np.asarray(candles.close)[keep]

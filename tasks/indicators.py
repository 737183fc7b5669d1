"""Indicator tasks (``cpu`` queue): thin adapters over :mod:`quantbeat.services.indicators`.

Results are JSON (``null`` for NaN). A bad request fails at once with a ValidationError that
names the field; in a batch it is that item's error and the other items are still answered.
"""

from __future__ import annotations

from typing import Any

from quant.indicators import IndicatorRequest
from quantbeat.services.args import parse_krx_markets, parse_trade_date
from quantbeat.services.indicators import invalidate_instruments, service
from quantbeat.services.precompute import precompute_universe
from workers.app import app

#: Request tasks answer in milliseconds; these limits only catch a stuck one.
REQUEST_SOFT_LIMIT_S = 30
REQUEST_HARD_LIMIT_S = 60


@app.task(
    name="quantbeat.indicators.compute",
    soft_time_limit=REQUEST_SOFT_LIMIT_S,
    time_limit=REQUEST_HARD_LIMIT_S,
)
def compute(request: dict[str, Any], counted: bool = False) -> dict[str, Any]:
    """One indicator request (the JSON form of :class:`quant.indicators.IndicatorRequest`)
    → ``{"ok": true, "request", "source": "cache"|"computed", "time": [...], "values": {...}}``.

    ``counted``: the sender already looked the request up in the cache (the Python API does),
    so this lookup does not count as a second miss.

    Raises ValidationError (bad request, ambiguous ticker) or NotFound (unknown instrument, no
    bars in the range): permanent, not retried. A database outage is retried.
    """
    parsed = IndicatorRequest.parse(request)
    return service().compute(parsed, counted=bool(counted)).to_json()


@app.task(
    name="quantbeat.indicators.compute_batch",
    soft_time_limit=REQUEST_SOFT_LIMIT_S,
    time_limit=REQUEST_HARD_LIMIT_S,
)
def compute_batch(requests: list[Any], counted: bool = False) -> list[dict[str, Any]]:
    """1–10 requests → one item per request, in order: its values (as :func:`compute`) or
    ``{"ok": false, "error": {"type", "message", "field"}}``. Duplicates are computed once,
    the rest concurrently, within ``QUANTBEAT_INDICATOR_BATCH_TIMEOUT`` (items still running
    then get a ``TimeoutError`` item).

    Raises ValidationError only when ``requests`` is not a list of 1–10 items.
    """
    return service().compute_batch(requests, counted=bool(counted))


@app.task(
    name="quantbeat.indicators.prefetch",
    soft_time_limit=REQUEST_SOFT_LIMIT_S,
    time_limit=REQUEST_HARD_LIMIT_S,
    ignore_result=True,
)
def prefetch(request: dict[str, Any]) -> dict[str, Any]:
    """After a miss: cache the ``QUANTBEAT_INDICATOR_PREFETCH`` indicators (default
    parameters) over the same candles as ``request``, so the chart's next indicators are hits.
    Sent by the compute tasks, off their critical path. Returns ``{"stored": n}``."""
    return {"stored": service().prefetch(IndicatorRequest.parse(request))}


@app.task(name="quantbeat.indicators.invalidate")
def invalidate(instruments: list[str]) -> dict[str, Any]:
    """Drop the cached entries of ``instruments`` (``MARKET:TICKER``): queued by collection
    when the cache could not be reached right after new candles were stored. A cache that is
    still unreachable raises ServiceUnavailable, so the task is retried with backoff.
    Returns ``{"instruments", "removed"}``."""
    return invalidate_instruments(instruments)


@app.task(name="quantbeat.indicators.precompute")
def precompute(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """Compute the scan indicators (:data:`quant.indicators.SCAN_SET`) over the last
    :data:`quant.indicators.SCAN_BARS` daily bars up to ``trade_date`` (default: the latest
    closed KRX session) for every listed instrument of the KRX market (both when ``None``),
    and store them in the cache where the scans look. Runs after each daily collection (see
    ``quantbeat.pipeline.krx_close``). Returns ``{"trade_date", "markets", "instruments",
    "with_bars", "indicators", "series", "stored", "cache", "seconds", "rs_ratings"}``.
    Raises ValidationError for a bad date or market.
    """
    markets = [m.value for m in parse_krx_markets(market)]
    return precompute_universe(parse_trade_date(trade_date), markets)

"""Collection tasks (``io`` queue): fetch from the configured market source, upsert into the
database (see :mod:`quantbeat.services.collect`). Re-running a task for the same day changes
no row (see :mod:`db.store`)."""

from __future__ import annotations

from typing import Any

from quant.errors import ValidationError
from quantbeat.services.args import (
    parse_date,
    parse_interval,
    parse_krx_markets,
    parse_moment,
    parse_tickers,
)
from quantbeat.services.collect import (
    DATASETS,
    collect_crypto,
    collect_daily,
    collect_sessions,
    parse_dataset,
    refresh_universe,
)
from workers.app import app


@app.task(name="quantbeat.collect.daily_candles")
def daily_candles(
    trade_date: str | None = None, market: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Collect daily candles for a KRX market (both when ``market`` is ``None``).

    ``trade_date`` (ISO date) collects that day. ``None`` collects incrementally: every
    session after the oldest latest stored date among the market's instruments, up to
    ``until`` (default: the latest KRX session that has closed, Asia/Seoul), at most
    :data:`~quantbeat.services.collect.MAX_CATCH_UP_SESSIONS`. Instruments met in the data are
    upserted first. Returns ``{"trade_date" (the last day), "start", "end", "sessions",
    "session", "markets", "source", "simulated", "instruments", "candles": {"inserted",
    "updated", "unchanged"} | None, "rejected"}`` (``None`` when the range has no session;
    ``rejected`` counts rows recorded in ``data_rejections`` instead of stored).

    Raises ValidationError for a malformed date or market (not retried); source and database
    outages are transient and retried by the base task.
    """
    return collect_daily(
        DATASETS["candles"],
        parse_krx_markets(market),
        trade_date=None if trade_date is None else parse_date(trade_date, field="trade_date"),
        until=None if until is None else parse_date(until, field="until"),
    )


@app.task(name="quantbeat.collect.investor_flows")
def investor_flows(
    trade_date: str | None = None, market: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Collect one day's investor flows (foreign / institution / individual net buying, in
    shares and KRW), like :func:`daily_candles`; the summary has ``"flows"`` instead of
    ``"candles"``."""
    return collect_daily(
        DATASETS["flows"],
        parse_krx_markets(market),
        trade_date=None if trade_date is None else parse_date(trade_date, field="trade_date"),
        until=None if until is None else parse_date(until, field="until"),
    )


@app.task(name="quantbeat.collect.daily_range")
def daily_range(
    start: str, end: str, market: str | None = None, dataset: str = "candles"
) -> dict[str, Any]:
    """Collect ``dataset`` (``candles`` or ``flows``) for every KRX session in
    ``[start, end]`` (ISO dates, at most
    :data:`~quantbeat.services.collect.MAX_RANGE_SESSIONS` sessions): the unit of
    ``quantbeat collect backfill``. Idempotent like the daily tasks."""
    first = parse_date(start, field="start")
    last = parse_date(end, field="end")
    if first > last:
        raise ValidationError(f"start {first} is after end {last}", field="start", value=start)
    return collect_sessions(parse_dataset(dataset), first, last, parse_krx_markets(market))


@app.task(name="quantbeat.collect.crypto_candles")
def crypto_candles(
    interval: str = "60m",
    start: str | None = None,
    end: str | None = None,
    tickers: list[str] | None = None,
) -> dict[str, Any]:
    """Collect crypto intraday candles of ``interval`` (``1m`` … ``240m``) for KRW markets.

    ``start``/``end`` are ISO date-times with a zone; ``end`` defaults to now floored to the
    interval (the bar still forming is left out), ``start`` to just after the latest stored
    bar of the tickers, or ``QUANTBEAT_CRYPTO_LOOKBACK_HOURS`` before ``end`` when none is
    stored (incremental). ``tickers`` defaults to ``QUANTBEAT_CRYPTO_TICKERS``, or every KRW
    market the source lists. Returns ``{"interval", "start", "end", "source", "simulated",
    "instruments", "candles": {"inserted", "updated", "unchanged"}, "rejected"}``.

    Requests go through the provider's global rate limit; a provider's own 429 with a
    Retry-After also starts a cooldown shared by every worker.
    """
    return collect_crypto(
        parse_interval(interval),
        start=None if start is None else parse_moment(start, field="start"),
        end=None if end is None else parse_moment(end, field="end"),
        tickers=parse_tickers(tickers),
    )


@app.task(name="quantbeat.collect.universe")
def universe(market: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """Refresh the KRX instrument list (both markets when ``market`` is ``None``) as of a
    day (default: the latest closed session): listed instruments are upserted with their
    current names; instruments of that market missing from a non-empty listing are marked
    ``delisted``. Returns ``{"as_of", "markets", "source", "simulated", "listed", "delisted"}``.
    """
    return refresh_universe(
        parse_krx_markets(market),
        as_of=None if as_of is None else parse_date(as_of, field="as_of"),
    )

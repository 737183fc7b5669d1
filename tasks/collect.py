"""Collection tasks (``io`` queue): fetch from the configured market source, upsert into the
database. Re-running a task for the same day changes no row (see :mod:`db.store`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Any

import pandas as pd
import structlog
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import DailyCandle, InvestorFlow
from db.store import (
    UpsertCounts,
    ensure_instruments,
    latest_intraday_ts,
    mark_delisted,
    oldest_latest_date,
    record_rejections,
    upsert_daily_candles,
    upsert_instruments,
    upsert_intraday_candles,
    upsert_investor_flows,
)
from quant.errors import RateLimited, ValidationError
from quant.market.base import MarketDataSource
from quant.market.quality import (
    Rejection,
    check_daily_candles,
    check_intraday_candles,
    check_investor_flows,
)
from quant.market.types import INTRADAY_INTERVALS, Market
from quant.market.upbit import UpbitBanned
from quantbeat.infra.ratelimit import WaitTooLong
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import (
    THROTTLE_COOLDOWN_S,
    crypto_source,
    krx_calendar,
    latest_krx_session,
    market_source,
    upbit_limiter,
)
from quantbeat.services.args import parse_date, parse_krx_markets
from quantbeat.services.indicators import invalidate_stored
from workers.app import app

log = structlog.get_logger(__name__)

Fetch = Callable[[MarketDataSource, dt.date, dt.date, Market], pd.DataFrame]
Check = Callable[[pd.DataFrame, Collection[tuple[str, str]]], tuple[pd.DataFrame, list[Rejection]]]
Upsert = Callable[..., UpsertCounts]


def _collect_range(
    first: dt.date,
    last: dt.date,
    markets: tuple[Market, ...],
    *,
    dataset: str,
    fetch: Fetch,
    check: Check,
    upsert: Upsert,
) -> dict[str, Any]:
    """Collect one dataset for the sessions in ``[first, last]`` and the KRX market(s);
    return the summary.

    Rows that cannot be facts are rejected and recorded in ``data_rejections``; the rest of
    the batch is stored. Each market is one transaction: its rows, instruments and
    rejections commit together or not at all.
    """
    settings = get_settings()
    source = market_source(settings)
    sessions = krx_calendar().sessions(first, last)
    summary: dict[str, Any] = {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "sessions": len(sessions),
        "markets": [m.value for m in markets],
        "source": source.name,
        "simulated": source.simulated,
        "instruments": 0,
        dataset: None,
        "rejected": 0,
    }
    if not sessions:
        return summary
    total = UpsertCounts()
    for m in markets:
        listed = source.list_instruments(sessions[-1], m)
        frame = fetch(source, sessions[0], sessions[-1], m)
        session: Session
        with session_scope() as session:
            # Insert-only: names and listing status belong to the universe refresh, and a
            # range of old sessions must not bring back old names or a delisted status.
            ids: dict[tuple[str, str], int] = upsert_instruments(
                session, listed, source=source.name, refresh=False
            )
            # Tickers in the data but not in today's listing (delisted within the range) are
            # registered, not rejected: history without them would be survivorship-biased.
            unlisted = {
                t
                for mk, t in zip(frame["market"], frame["ticker"], strict=True)
                if mk == m.value and isinstance(t, str) and t and (mk, t) not in ids
            }
            if unlisted:
                ids.update(ensure_instruments(session, m.value, unlisted, source=source.name))
            good, rejected = check(frame, ids.keys())
            counts = upsert(session, good, ids, source=source.name)
            total = total + counts
            summary["rejected"] += record_rejections(
                session, rejected, source=source.name, seen_at=dt.datetime.now(dt.UTC)
            )
        if dataset == "candles":
            invalidate_stored(good)
        for r in rejected[:20]:
            log.warning("collect.row_rejected", dataset=dataset, reason=r.reason, detail=r.detail)
        summary["instruments"] += len(listed)
    summary[dataset] = total.as_dict()
    return summary


#: KRX publishes investor-by-stock figures in the evening; before this, today has none.
KRX_FLOWS_PUBLISHED = dt.time(18, 0)

#: An incremental run catches up at most this many sessions; older gaps are backfills.
MAX_CATCH_UP_SESSIONS = 30


def _collect_day(
    trade_date: object,
    market: object,
    until: object = None,
    *,
    dataset: str,
    table: Any,
    fetch: Fetch,
    check: Check,
    upsert: Upsert,
) -> dict[str, Any]:
    """One day (``trade_date``), or — when it is ``None`` — incrementally: from the session
    after the oldest "latest stored date" among the market's instruments up to ``until``
    (default: the latest closed session), at most :data:`MAX_CATCH_UP_SESSIONS` of them."""
    settings = get_settings()
    markets = parse_krx_markets(market)
    calendar = krx_calendar()
    if trade_date is not None:
        day = parse_date(trade_date, field="trade_date")
        first = last = day
    else:
        if until is not None:
            last = calendar.previous_session(parse_date(until, field="until"))
        elif dataset == "flows":
            last = latest_krx_session(settings, published=KRX_FLOWS_PUBLISHED)
        else:
            last = latest_krx_session(settings)
        with session_scope() as session:
            stored = oldest_latest_date(session, table, [m.value for m in markets])
        # Resume AT the last stored session, not after it: KRX revises figures after the
        # close (and closes late on exam day), and re-fetching one session is cheap.
        first = last if stored is None or stored >= last else stored
        recent = calendar.sessions(last - dt.timedelta(days=MAX_CATCH_UP_SESSIONS * 2), last)
        first = max(first, recent[-MAX_CATCH_UP_SESSIONS])
    summary = _collect_range(
        first, last, markets, dataset=dataset, fetch=fetch, check=check, upsert=upsert
    )
    summary["trade_date"] = last.isoformat()
    summary["session"] = summary["sessions"] > 0
    return summary


_DATASETS: dict[str, tuple[Any, Fetch, Check, Upsert]] = {
    "candles": (
        DailyCandle,
        lambda source, a, b, m: source.daily_candles(a, b, market=m),
        check_daily_candles,
        upsert_daily_candles,
    ),
    "flows": (
        InvestorFlow,
        lambda source, a, b, m: source.investor_flows(a, b, market=m),
        check_investor_flows,
        upsert_investor_flows,
    ),
}


@app.task(name="quantbeat.collect.daily_candles")
def daily_candles(
    trade_date: str | None = None, market: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Collect daily candles for a KRX market (both when ``market`` is ``None``).

    ``trade_date`` (ISO date) collects that day. ``None`` collects incrementally: every
    session after the oldest latest stored date among the market's instruments, up to
    ``until`` (default: the latest KRX session that has closed, Asia/Seoul), at most
    :data:`MAX_CATCH_UP_SESSIONS`. Instruments met in the data are upserted first. Returns
    ``{"trade_date" (the last day), "start", "end", "sessions", "session", "markets",
    "source", "simulated", "instruments", "candles": {"inserted", "updated", "unchanged"} |
    None, "rejected"}`` (``None`` when the range has no session; ``rejected`` counts rows
    recorded in ``data_rejections`` instead of stored).

    Raises ValidationError for a malformed date or market (not retried); source and database
    outages are transient and retried by the base task.
    """
    table, fetch, check, upsert = _DATASETS["candles"]
    return _collect_day(
        trade_date,
        market,
        until,
        dataset="candles",
        table=table,
        fetch=fetch,
        check=check,
        upsert=upsert,
    )


@app.task(name="quantbeat.collect.investor_flows")
def investor_flows(
    trade_date: str | None = None, market: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Collect one day's investor flows (foreign / institution / individual net buying, in
    shares and KRW), like :func:`daily_candles`; the summary has ``"flows"`` instead of
    ``"candles"``."""
    table, fetch, check, upsert = _DATASETS["flows"]
    return _collect_day(
        trade_date,
        market,
        until,
        dataset="flows",
        table=table,
        fetch=fetch,
        check=check,
        upsert=upsert,
    )


#: Sessions one backfill task may cover. With real KRX (>= 1 s per call, several calls per
#: session for flows) keep chunks near 20 sessions to stay inside the io time limit;
#: quantbeat collect backfill and the first run do.
MAX_RANGE_SESSIONS = 260


@app.task(name="quantbeat.collect.daily_range")
def daily_range(
    start: str, end: str, market: str | None = None, dataset: str = "candles"
) -> dict[str, Any]:
    """Collect ``dataset`` (``candles`` or ``flows``) for every KRX session in
    ``[start, end]`` (ISO dates, at most :data:`MAX_RANGE_SESSIONS` sessions): the unit of
    ``quantbeat collect backfill``. Idempotent like the daily tasks."""
    first = parse_date(start, field="start")
    last = parse_date(end, field="end")
    if first > last:
        raise ValidationError(f"start {first} is after end {last}", field="start", value=start)
    if dataset not in _DATASETS:
        raise ValidationError(
            f"dataset must be one of {sorted(_DATASETS)}, got {dataset!r}",
            field="dataset",
            value=dataset,
        )
    sessions = krx_calendar().sessions(first, last)
    if len(sessions) > MAX_RANGE_SESSIONS:
        raise ValidationError(
            f"{len(sessions)} sessions in {first}..{last}; one task takes at most "
            f"{MAX_RANGE_SESSIONS} (quantbeat collect backfill splits ranges)",
            field="end",
            value=end,
        )
    _table, fetch, check, upsert = _DATASETS[dataset]
    return _collect_range(
        first,
        last,
        parse_krx_markets(market),
        dataset=dataset,
        fetch=fetch,
        check=check,
        upsert=upsert,
    )


#: Shared cooldown after a provider bans us without saying for how long (seconds); a 429's
#: is quantbeat.infra.sources.THROTTLE_COOLDOWN_S.
BAN_COOLDOWN_S = 600.0
#: Bars per ticker one crypto task fetches at most; a longer catch-up continues next run.
MAX_CRYPTO_BARS = 2_000


def _floor_to_interval(moment: dt.datetime, minutes: int) -> dt.datetime:
    step = minutes * 60
    return dt.datetime.fromtimestamp(int(moment.timestamp()) // step * step, tz=dt.UTC)


def _parse_moment(value: object, *, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be an ISO date-time string, got {value!r}", field=field, value=value
        )
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO date-time, got {value!r}", field=field, value=value
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(
            f"{field} needs a time zone (e.g. 2026-11-20T00:00:00+00:00), got {value!r}",
            field=field,
            value=value,
        )
    return moment.astimezone(dt.UTC)


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
    if interval not in INTRADAY_INTERVALS:
        raise ValidationError(
            f"interval must be one of {', '.join(INTRADAY_INTERVALS)}, got {interval!r}",
            field="interval",
            value=interval,
        )
    if tickers is not None and (
        not isinstance(tickers, list) or not all(isinstance(t, str) and t for t in tickers)
    ):
        raise ValidationError(
            f"tickers must be a list of market codes, got {tickers!r}", field="tickers"
        )
    settings = get_settings()
    source = crypto_source(settings)
    minutes = int(interval.removesuffix("m"))
    end_at = (
        _parse_moment(end, field="end")
        if end is not None
        else _floor_to_interval(dt.datetime.now(dt.UTC), minutes)
    )
    listing = None
    wanted = tickers or settings.crypto_tickers
    try:
        if not wanted:
            listing = source.list_instruments(end_at.date(), Market.UPBIT)
            wanted = [i.ticker for i in listing]
        with session_scope() as session:
            if listing is not None:
                ids = upsert_instruments(session, listing, source=source.name)
            else:
                ids = ensure_instruments(session, Market.UPBIT.value, wanted, source=source.name)
            if start is not None:
                start_at = _parse_moment(start, field="start")
            else:
                # Resume after the oldest latest stored bar (never skipping an outage); the
                # lookback only applies to tickers with nothing stored yet.
                latest = latest_intraday_ts(session, list(ids.values()), interval)
                fallback = end_at - dt.timedelta(hours=settings.crypto_lookback_hours)
                starts = [
                    latest[i] + dt.timedelta(minutes=minutes) if i in latest else fallback
                    for i in ids.values()
                ]
                start_at = min(starts) if starts else fallback
        summary: dict[str, Any] = {
            "interval": interval,
            "start": start_at.isoformat(),
            "end": end_at.isoformat(),
            "source": source.name,
            "simulated": source.simulated,
            "instruments": len(wanted),
            "candles": {"inserted": 0, "updated": 0, "unchanged": 0},
            "rejected": 0,
        }
        if start_at >= end_at:
            return summary  # nothing new has closed yet
        cap = start_at + dt.timedelta(minutes=minutes * MAX_CRYPTO_BARS)
        if cap < end_at:
            # A long catch-up goes in steps: this run stops at the cap, the next resumes.
            log.warning(
                "collect.crypto_truncated",
                start=start_at.isoformat(),
                end=end_at.isoformat(),
                until=cap.isoformat(),
            )
            end_at = cap
            summary["end"] = end_at.isoformat()
            summary["truncated"] = True
        frame = source.intraday_candles(start_at, end_at, interval, tickers=wanted)
    except (RateLimited, UpbitBanned) as exc:
        # The provider pushed back: stop every worker, not just this one. A ban (418) gets
        # its stated period or a long default; a 429 its Retry-After or a short default.
        limiter = upbit_limiter(settings) if settings.crypto_source == "upbit" else None
        if limiter is not None and not isinstance(exc, WaitTooLong):
            if isinstance(exc, UpbitBanned):
                limiter.cooldown(exc.banned_for or BAN_COOLDOWN_S)
            else:
                limiter.cooldown(exc.retry_after or THROTTLE_COOLDOWN_S)
        raise
    with session_scope() as session:
        good, rejected = check_intraday_candles(frame, ids.keys())
        counts = upsert_intraday_candles(session, good, ids, source=source.name)
        summary["rejected"] = record_rejections(
            session, rejected, source=source.name, seen_at=dt.datetime.now(dt.UTC)
        )
    invalidate_stored(good)
    summary["candles"] = counts.as_dict()
    return summary


@app.task(name="quantbeat.collect.universe")
def universe(market: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """Refresh the KRX instrument list (both markets when ``market`` is ``None``) as of a
    day (default: the latest closed session): listed instruments are upserted with their
    current names; instruments of that market missing from a non-empty listing are marked
    ``delisted``. Returns ``{"as_of", "markets", "source", "simulated", "listed", "delisted"}``.
    """
    settings = get_settings()
    day = parse_date(as_of, field="as_of") if as_of is not None else latest_krx_session(settings)
    markets = parse_krx_markets(market)
    source = market_source(settings)
    listed = delisted = 0
    for m in markets:
        instruments = source.list_instruments(day, m)
        if not instruments:
            # An empty listing is a provider problem, never "everything was delisted".
            raise RateLimited(f"{source.name} returned an empty {m.value} listing for {day}")
        with session_scope() as session:
            upsert_instruments(session, instruments, source=source.name)
            delisted += mark_delisted(session, m.value, keep={i.ticker for i in instruments})
        listed += len(instruments)
    return {
        "as_of": day.isoformat(),
        "markets": [m.value for m in markets],
        "source": source.name,
        "simulated": source.simulated,
        "listed": listed,
        "delisted": delisted,
    }

"""Market-data collection: fetch from the configured source, check, store.

Every collection follows the same path: the source's listing and rows for a range, the quality
checks of :mod:`quant.market.quality` (rows that cannot be facts are recorded in
``data_rejections``, the rest of the batch is stored), idempotent upserts (:mod:`db.store`:
re-running a day changes no row), then the cached indicators of the instruments that got new
bars are invalidated. The ``quantbeat.collect.*`` tasks parse their arguments and call one
function here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import pandas as pd
import structlog
from celery.result import AsyncResult
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
from quant.market.types import Market
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
from quantbeat.services import candle_months
from quantbeat.services.dispatch import TaskCall, send
from quantbeat.services.indicators import invalidate_stored

log = structlog.get_logger(__name__)

Fetch = Callable[[MarketDataSource, dt.date, dt.date, Market], pd.DataFrame]
Check = Callable[[pd.DataFrame, Collection[tuple[str, str]]], tuple[pd.DataFrame, list[Rejection]]]
Upsert = Callable[..., UpsertCounts]


@dataclass(frozen=True)
class Dataset:
    """A daily KRX dataset: the table it lands in, how it is fetched, checked and stored,
    and the task that collects it for a day."""

    name: str
    table: Any
    fetch: Fetch
    check: Check
    upsert: Upsert
    daily_task: str


#: The daily KRX datasets by name; a summary counts a dataset's rows under its name.
DATASETS: dict[str, Dataset] = {
    "candles": Dataset(
        "candles",
        DailyCandle,
        lambda source, a, b, m: source.daily_candles(a, b, market=m),
        check_daily_candles,
        upsert_daily_candles,
        "quantbeat.collect.daily_candles",
    ),
    "flows": Dataset(
        "flows",
        InvestorFlow,
        lambda source, a, b, m: source.investor_flows(a, b, market=m),
        check_investor_flows,
        upsert_investor_flows,
        "quantbeat.collect.investor_flows",
    ),
}

#: KRX publishes investor-by-stock figures in the evening; before this, today has none.
KRX_FLOWS_PUBLISHED = dt.time(18, 0)

#: An incremental run catches up at most this many sessions; older gaps are backfills.
MAX_CATCH_UP_SESSIONS = 30

#: Sessions one ``quantbeat.collect.daily_range`` task may cover. With real KRX (>= 1 s per
#: call, several calls per session for flows) keep chunks near 20 sessions to stay inside the
#: io time limit; the backfill planner (:mod:`quantbeat.services.backfill`) does.
MAX_RANGE_SESSIONS = 260

#: Shared cooldown after a provider bans us without saying for how long (seconds); a 429's
#: is quantbeat.infra.sources.THROTTLE_COOLDOWN_S.
BAN_COOLDOWN_S = 600.0
#: Bars per ticker one crypto task fetches at most; a longer catch-up continues next run.
MAX_CRYPTO_BARS = 2_000


def parse_dataset(value: object, *, field: str = "dataset") -> Dataset:
    """The daily dataset called ``value`` (``candles`` or ``flows``).

    Raises:
        quant.errors.ValidationError: another value.
    """
    found = DATASETS.get(value) if isinstance(value, str) else None
    if found is None:
        raise ValidationError(
            f"{field} must be one of {sorted(DATASETS)}, got {value!r}", field=field, value=value
        )
    return found


def last_sessions(end: dt.date, count: int) -> list[dt.date]:
    """The ``count`` latest KRX sessions up to ``end`` (inclusive), oldest first (fewer when
    the calendar has fewer: it looks back ``2 * count`` days)."""
    return krx_calendar().sessions(end - dt.timedelta(days=count * 2), end)[-count:]


def collect_range(
    dataset: Dataset, first: dt.date, last: dt.date, markets: tuple[Market, ...]
) -> dict[str, Any]:
    """Collect ``dataset`` for the KRX sessions in ``[first, last]`` and the market(s).

    Rows that cannot be facts are rejected and recorded in ``data_rejections``; the rest of
    the batch is stored. Each market is one transaction: its rows, instruments and
    rejections commit together or not at all.

    Returns ``{"start", "end", "sessions", "markets", "source", "simulated", "instruments",
    <dataset>: {"inserted", "updated", "unchanged"} | None, "rejected"}`` (``None`` when the
    range has no session).
    """
    source = market_source(get_settings())
    sessions = krx_calendar().sessions(first, last)
    summary: dict[str, Any] = {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "sessions": len(sessions),
        "markets": [m.value for m in markets],
        "source": source.name,
        "simulated": source.simulated,
        "instruments": 0,
        dataset.name: None,
        "rejected": 0,
    }
    if not sessions:
        return summary
    total = UpsertCounts()
    for m in markets:
        listed = source.list_instruments(sessions[-1], m)
        frame = dataset.fetch(source, sessions[0], sessions[-1], m)
        session: Session
        with session_scope() as session:
            # Insert-only: names and listing status belong to the universe refresh, and a
            # range of old sessions must not bring back old names or a delisted status.
            ids: dict[tuple[str, str], int] = upsert_instruments(
                session, listed, source=source.name, refresh=False
            )
            # Tickers in the data but not in today's listing (delisted within the range) are
            # registered, not rejected: history without them would be survivorship-biased.
            pairs = frame[["market", "ticker"]].drop_duplicates()
            unlisted = {
                t
                for mk, t in pairs.itertuples(index=False, name=None)
                if mk == m.value and isinstance(t, str) and t and (mk, t) not in ids
            }
            if unlisted:
                ids.update(ensure_instruments(session, m.value, unlisted, source=source.name))
            good, rejected = dataset.check(frame, ids.keys())
            total = total + dataset.upsert(session, good, ids, source=source.name)
            summary["rejected"] += record_rejections(
                session, rejected, source=source.name, seen_at=dt.datetime.now(dt.UTC)
            )
        if dataset.name == "candles":
            invalidate_stored(good)
        for r in rejected[:20]:
            log.warning(
                "collect.row_rejected", dataset=dataset.name, reason=r.reason, detail=r.detail
            )
        summary["instruments"] += len(listed)
    summary[dataset.name] = total.as_dict()
    if dataset.name == "candles":
        candle_months.pack_after_write()
    return summary


def collect_daily(
    dataset: Dataset,
    markets: tuple[Market, ...],
    *,
    trade_date: dt.date | None = None,
    until: dt.date | None = None,
) -> dict[str, Any]:
    """One day (``trade_date``), or — when it is ``None`` — incrementally: from the oldest
    "latest stored date" among the markets' instruments up to ``until`` (default: the latest
    closed session; for flows, the latest whose figures are published), at most
    :data:`MAX_CATCH_UP_SESSIONS` sessions.

    Returns :func:`collect_range`'s summary with ``"trade_date"`` (the last day) and
    ``"session"`` (whether the range had a session).
    """
    calendar = krx_calendar()
    if trade_date is not None:
        first = last = trade_date
    else:
        settings = get_settings()
        if until is not None:
            last = calendar.previous_session(until)
        elif dataset.name == "flows":
            last = latest_krx_session(settings, published=KRX_FLOWS_PUBLISHED)
        else:
            last = latest_krx_session(settings)
        with session_scope() as session:
            stored = oldest_latest_date(session, dataset.table, [m.value for m in markets])
        # Resume AT the last stored session, not after it: KRX revises figures after the
        # close (and closes late on exam day), and re-fetching one session is cheap.
        first = last if stored is None or stored >= last else stored
        first = max(first, last_sessions(last, MAX_CATCH_UP_SESSIONS)[0])
    summary = collect_range(dataset, first, last, markets)
    summary["trade_date"] = last.isoformat()
    summary["session"] = summary["sessions"] > 0
    return summary


def collect_sessions(
    dataset: Dataset, first: dt.date, last: dt.date, markets: tuple[Market, ...]
) -> dict[str, Any]:
    """:func:`collect_range` for at most :data:`MAX_RANGE_SESSIONS` sessions (the unit of a
    backfill).

    Raises:
        quant.errors.ValidationError: more sessions than that in ``[first, last]``.
    """
    sessions = krx_calendar().sessions(first, last)
    if len(sessions) > MAX_RANGE_SESSIONS:
        raise ValidationError(
            f"{len(sessions)} sessions in {first}..{last}; one task takes at most "
            f"{MAX_RANGE_SESSIONS} (quantbeat collect backfill splits ranges)",
            field="end",
            value=last.isoformat(),
        )
    return collect_range(dataset, first, last, markets)


def interval_minutes(interval: str) -> int:
    """The length of an intraday interval (``60m``) in minutes."""
    return int(interval.removesuffix("m"))


def floor_to_interval(moment: dt.datetime, minutes: int) -> dt.datetime:
    """The start (UTC) of the ``minutes``-long bar that ``moment`` falls in."""
    step = minutes * 60
    return dt.datetime.fromtimestamp(int(moment.timestamp()) // step * step, tz=dt.UTC)


def collect_crypto(
    interval: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    tickers: list[str] | None = None,
) -> dict[str, Any]:
    """Collect crypto intraday candles of ``interval`` for KRW markets.

    ``end`` defaults to now floored to the interval (the bar still forming is left out),
    ``start`` to just after the oldest latest stored bar of the tickers, or
    ``QUANTBEAT_CRYPTO_LOOKBACK_HOURS`` before ``end`` when none is stored (incremental); at
    most :data:`MAX_CRYPTO_BARS` bars are fetched (``"truncated"`` says so). ``tickers``
    defaults to ``QUANTBEAT_CRYPTO_TICKERS``, or every KRW market the source lists. Returns
    ``{"interval", "start", "end", "source", "simulated", "instruments", "candles":
    {"inserted", "updated", "unchanged"}, "rejected"}``.

    Requests go through the provider's global rate limit; a provider's own 429 (or ban)
    also starts a cooldown shared by every worker before the error is re-raised.
    """
    settings = get_settings()
    source = crypto_source(settings)
    minutes = interval_minutes(interval)
    end_at = end if end is not None else floor_to_interval(dt.datetime.now(dt.UTC), minutes)
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
                start_at = start
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
        _upbit_pushed_back(settings, exc)
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


def _upbit_pushed_back(settings: Any, exc: Exception) -> None:
    """The crypto provider pushed back: stop every worker, not just this one — a ban (418)
    for its stated period or a long default, a 429 for its Retry-After or a short default.
    Our own limiter's refusal (``WaitTooLong``) starts nothing."""
    limiter = upbit_limiter(settings) if settings.crypto_source == "upbit" else None
    if limiter is None or isinstance(exc, WaitTooLong):
        return
    if isinstance(exc, UpbitBanned):
        limiter.cooldown(exc.banned_for or BAN_COOLDOWN_S)
    elif isinstance(exc, RateLimited):
        limiter.cooldown(exc.retry_after or THROTTLE_COOLDOWN_S)


def collect_crypto_daily(
    start: dt.date, end: dt.date, *, tickers: list[str] | None = None
) -> dict[str, Any]:
    """Collect crypto daily bars (UTC days, Upbit's ``candles/days``: a bar starts 00:00 UTC)
    dated ``start`` … ``end`` for ``tickers`` (default ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``)
    into ``daily_candles``, checked and flagged like KRX bars (crypto has no price limit, so
    only ``zero_volume`` can flag). Returns ``{"interval": "1d", "start", "end", "source",
    "simulated", "instruments", "candles": {…counts}, "rejected"}``.

    Raises:
        quant.errors.ValidationError: ``start`` after ``end``.
        quant.errors.RateLimited, quant.errors.ServiceUnavailable: the provider pushed back
            or did not answer (a 429 or ban also starts the shared cooldown).
    """
    if start > end:
        raise ValidationError(
            f"start {start.isoformat()} is after end {end.isoformat()}",
            field="start",
            value=start.isoformat(),
        )
    settings = get_settings()
    source = crypto_source(settings)
    wanted = list(tickers or settings.crypto_signal_markets)
    try:
        frame = source.daily_candles(start, end, market=Market.UPBIT, tickers=wanted)
    except (RateLimited, UpbitBanned) as exc:
        _upbit_pushed_back(settings, exc)
        raise
    with session_scope() as session:
        ids = ensure_instruments(session, Market.UPBIT.value, wanted, source=source.name)
        good, rejected = check_daily_candles(frame, ids.keys())
        counts = upsert_daily_candles(session, good, ids, source=source.name)
        recorded = record_rejections(
            session, rejected, source=source.name, seen_at=dt.datetime.now(dt.UTC)
        )
    invalidate_stored(good)
    candle_months.pack_after_write()
    return {
        "interval": "1d",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "source": source.name,
        "simulated": source.simulated,
        "instruments": len(wanted),
        "candles": counts.as_dict(),
        "rejected": recorded,
    }


def refresh_universe(markets: tuple[Market, ...], as_of: dt.date | None = None) -> dict[str, Any]:
    """Refresh the KRX instrument list of ``markets`` as of a day (default: the latest closed
    session): listed instruments are upserted with their current names; instruments of that
    market missing from a non-empty listing are marked ``delisted``. Returns ``{"as_of",
    "markets", "source", "simulated", "listed", "delisted"}``.

    Raises:
        quant.errors.RateLimited: the source returned an empty listing (a provider problem,
            never "everything was delisted"; retried).
    """
    settings = get_settings()
    day = as_of if as_of is not None else latest_krx_session(settings)
    source = market_source(settings)
    listed = delisted = 0
    for m in markets:
        instruments = source.list_instruments(day, m)
        if not instruments:
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


def send_daily(dataset: Dataset, trade_date: dt.date | None, market: Market | None) -> AsyncResult:
    """Queue the collection of one day (``None``: incrementally up to the latest closed
    session) of ``dataset`` for one KRX market (``None``: both); returns its result handle."""
    return send(
        TaskCall(
            dataset.daily_task,
            {
                "trade_date": trade_date.isoformat() if trade_date else None,
                "market": market.value if market else None,
            },
        )
    )

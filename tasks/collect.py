"""Collection tasks (``io`` queue): fetch from the configured market source, upsert into the
database. Re-running a task for the same day changes no row (see :mod:`db.store`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pandas as pd
import structlog
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.store import (
    UpsertCounts,
    record_rejections,
    upsert_daily_candles,
    upsert_instruments,
    upsert_investor_flows,
)
from quant.market.base import MarketDataSource
from quant.market.quality import Rejection, check_daily_candles, check_investor_flows
from quant.market.types import Market
from quantbeat.settings import get_settings
from quantbeat.sources import krx_calendar, latest_krx_session, market_source
from tasks._args import parse_date, parse_krx_markets
from workers.app import app

log = structlog.get_logger(__name__)

Fetch = Callable[[MarketDataSource, dt.date, Market], pd.DataFrame]
Check = Callable[[pd.DataFrame, Collection[tuple[str, str]]], tuple[pd.DataFrame, list[Rejection]]]
Upsert = Callable[..., UpsertCounts]


def _collect_day(
    trade_date: object,
    market: object,
    *,
    dataset: str,
    fetch: Fetch,
    check: Check,
    upsert: Upsert,
) -> dict[str, Any]:
    """Collect one dataset for one day and the KRX market(s) named; return the summary.

    Rows that cannot be facts are rejected and recorded in ``data_rejections``; the rest of
    the batch is stored. Each market is one transaction: its rows, instruments and
    rejections commit together or not at all.
    """
    settings = get_settings()
    if trade_date is None:
        day = latest_krx_session(settings)
    else:
        day = parse_date(trade_date, field="trade_date")
    markets = parse_krx_markets(market)
    source = market_source(settings)
    summary: dict[str, Any] = {
        "trade_date": day.isoformat(),
        "markets": [m.value for m in markets],
        "source": source.name,
        "simulated": source.simulated,
        "session": krx_calendar().is_session(day),
        "instruments": 0,
        dataset: None,
        "rejected": 0,
    }
    if not summary["session"]:
        return summary
    total = UpsertCounts()
    for m in markets:
        listed = source.list_instruments(day, m)
        frame = fetch(source, day, m)
        session: Session
        with session_scope() as session:
            ids: Mapping[tuple[str, str], int] = upsert_instruments(
                session, listed, source=source.name
            )
            good, rejected = check(frame, ids.keys())
            total = total + upsert(session, good, ids, source=source.name)
            summary["rejected"] += record_rejections(
                session, rejected, source=source.name, seen_at=dt.datetime.now(dt.UTC)
            )
        for r in rejected[:20]:
            log.warning("collect.row_rejected", dataset=dataset, reason=r.reason, detail=r.detail)
        summary["instruments"] += len(listed)
    summary[dataset] = total.as_dict()
    return summary


@app.task(name="quantbeat.collect.daily_candles")
def daily_candles(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """Collect one day's daily candles for a KRX market (both when ``market`` is ``None``).

    ``trade_date`` is an ISO date; ``None`` means the latest KRX session that has closed
    (Asia/Seoul). Instruments met in the data are upserted first. Returns a summary:
    ``{"trade_date", "markets", "source", "simulated", "session", "instruments", "candles":
    {"inserted", "updated", "unchanged"} | None, "rejected"}`` (``None`` on a day without a
    session; ``rejected`` counts rows recorded in ``data_rejections`` instead of stored).

    Raises ValidationError for a malformed date or market (not retried); source and database
    outages are transient and retried by the base task.
    """
    return _collect_day(
        trade_date,
        market,
        dataset="candles",
        fetch=lambda source, day, m: source.daily_candles(day, day, market=m),
        check=check_daily_candles,
        upsert=upsert_daily_candles,
    )


@app.task(name="quantbeat.collect.investor_flows")
def investor_flows(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """Collect one day's investor flows (foreign / institution / individual net buying, in
    shares and KRW), like :func:`daily_candles`; the summary has ``"flows"`` instead of
    ``"candles"``."""
    return _collect_day(
        trade_date,
        market,
        dataset="flows",
        fetch=lambda source, day, m: source.investor_flows(day, day, market=m),
        check=check_investor_flows,
        upsert=upsert_investor_flows,
    )

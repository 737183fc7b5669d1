"""Read models of what is stored that the dashboard shows beside the API's own reads (any
other reader may use them): the days that have a strategy's final signals, the news titles
of a day's candidates, the latest reference series values, today's counts and a backtest's
equity curve. The decisions, the track record and the data status themselves come from the
services the JSON API answers with (:mod:`quantbeat.services.signal_reads`,
:mod:`quantbeat.services.closing_window`, :mod:`quantbeat.services.track_record`,
:mod:`quantbeat.services.data_status`), so the pages and the API never disagree.

Every function opens its own session, reads only, and returns JSON-safe data (dates and times
ISO 8601).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db.ai import news_for
from db.backtests import get_run, load_equity
from db.engine import session_scope
from db.models import (
    JobRun,
    PortfolioPosition,
    ReferenceBar,
    ReferenceSeriesRow,
    Signal,
)
from db.scans import run_days
from quantbeat.infra.settings import get_settings
from quantbeat.services.ai import news_window
from quantbeat.services.jobs import FAILED_STATES
from quantbeat.services.strategies import scan_strategy

#: News titles shown per candidate.
NEWS_TITLES = 3


def signal_dates(strategy: str, *, limit: int = 60) -> list[str]:
    """The trading days (ISO, newest first, at most ``limit``) holding final signals or a
    completed final scan run of ``strategy``.

    Raises:
        quant.errors.ValidationError: unknown strategy.
    """
    name = scan_strategy(strategy).name
    with session_scope() as session:
        days = set(
            session.execute(
                select(Signal.trade_date)
                .where(Signal.strategy == name, Signal.phase == "final")
                .distinct()
                .order_by(Signal.trade_date.desc())
                .limit(limit)
            ).scalars()
        )
        days |= {day for day, phases in run_days(session, name, limit=limit) if "final" in phases}
    return [d.isoformat() for d in sorted(days, reverse=True)[:limit]]


def news_titles(
    trade_date: dt.date, signal_ids: Collection[int]
) -> dict[int, list[dict[str, Any]]]:
    """Per signal id: up to :data:`NEWS_TITLES` titles (``{"title", "source", "simulated"}``,
    newest first) of the stored news mentioning its instrument in the window an AI analysis
    of ``trade_date`` reads (:func:`quantbeat.services.ai.news_window`); signals without
    such news are left out."""
    if not signal_ids:
        return {}
    since, until = news_window(trade_date)
    out: dict[int, list[dict[str, Any]]] = {}
    with session_scope() as session:
        owners = session.execute(
            select(Signal.id, Signal.instrument_id).where(Signal.id.in_(list(signal_ids)))
        ).all()
        for signal_id, instrument_id in owners:
            found = news_for(session, int(instrument_id), since=since, until=until)
            if found:
                out[int(signal_id)] = [
                    {"title": n.title, "source": n.source, "simulated": bool(n.simulated)}
                    for n in found[:NEWS_TITLES]
                ]
    return out


def reference_latest(kinds: tuple[str, ...] = ("index", "fx")) -> list[dict[str, Any]]:
    """The latest stored close of every reference series of ``kinds`` (``index``, ``etf``,
    ``fx``) with its change from the previous stored session: ``[{"code", "name", "kind",
    "trade_date", "close", "change_pct" (percent, None without a previous bar),
    "simulated"}]`` ordered by kind then code; empty when nothing is stored."""
    with session_scope() as session:
        latest = (
            select(ReferenceBar.series_id, func.max(ReferenceBar.trade_date).label("last"))
            .group_by(ReferenceBar.series_id)
            .subquery()
        )
        heads = session.execute(
            select(ReferenceSeriesRow, latest.c.last)
            .join(latest, latest.c.series_id == ReferenceSeriesRow.id)
            .where(ReferenceSeriesRow.kind.in_(list(kinds)))
            .order_by(ReferenceSeriesRow.kind, ReferenceSeriesRow.code)
        ).all()
        out = []
        for series, last in heads:
            bars = session.execute(
                select(ReferenceBar.trade_date, ReferenceBar.close)
                .where(ReferenceBar.series_id == series.id, ReferenceBar.trade_date <= last)
                .order_by(ReferenceBar.trade_date.desc())
                .limit(2)
            ).all()
            close = float(bars[0][1])
            previous = float(bars[1][1]) if len(bars) > 1 else None
            out.append(
                {
                    "code": series.code,
                    "name": series.name,
                    "kind": series.kind,
                    "trade_date": bars[0][0].isoformat(),
                    "close": close,
                    "change_pct": (close / previous - 1.0) * 100.0 if previous else None,
                    "simulated": bool(series.simulated),
                }
            )
    return out


def today_counts(now: dt.datetime | None = None) -> dict[str, Any]:
    """What happened lately: the signals per strategy (and phase) of the latest day that has
    any (``signals_date``), the open paper positions over every portfolio, and the jobs that
    failed (``failed``, ``timed_out``, ``lost``) since local midnight of ``now`` (default:
    the current time; ``QUANTBEAT_TIMEZONE``). Returns ``{"signals_date", "signals":
    {label: n}, "open_positions", "jobs_failed", "since"}``."""
    zone = ZoneInfo(get_settings().timezone)
    moment = (now or dt.datetime.now(zone)).astimezone(zone)
    midnight = dt.datetime.combine(moment.date(), dt.time(0), tzinfo=zone)
    with session_scope() as session:
        day = session.execute(select(func.max(Signal.trade_date))).scalar()
        per: dict[str, int] = {}
        if day is not None:
            for strategy, phase, n in session.execute(
                select(Signal.strategy, Signal.phase, func.count())
                .where(Signal.trade_date == day)
                .group_by(Signal.strategy, Signal.phase)
                .order_by(Signal.strategy, Signal.phase)
            ).all():
                label = strategy if phase == "final" else f"{strategy} ({phase})"
                per[label] = int(n)
        open_positions = session.execute(
            select(func.count()).where(PortfolioPosition.state == "open")
        ).scalar_one()
        failed = session.execute(
            select(func.count()).where(
                JobRun.state.in_(list(FAILED_STATES)), JobRun.started_at >= midnight
            )
        ).scalar_one()
    return {
        "signals_date": None if day is None else day.isoformat(),
        "signals": per,
        "open_positions": int(open_positions),
        "jobs_failed": int(failed),
        "since": midnight.isoformat(),
    }


def backtest_equity(run_id: str) -> list[tuple[str, float]]:
    """A backtest run's stored equity curve ``[(ISO day, equity)]``, oldest first (empty
    until the run completed).

    Raises:
        quant.errors.NotFound: no such run.
    """
    with session_scope() as session:
        get_run(session, run_id)
        return [(day.isoformat(), equity) for day, equity, _ in load_equity(session, run_id)]

"""What the trading day announces: the domain events other services record in their own
transactions (:func:`quantbeat.services.notify.record`), built here from stored data.

* ``signals.published`` — a scan's last decision of a phase: the buy-window (preliminary)
  decision once its news scores count, the evening (final) one likewise; one event per
  (strategy, trade date, phase), so a re-run sends nothing new.
* ``position.opened`` / ``position.closed`` — a paper portfolio's trades on the day it is
  brought up to date (a catch-up over past days announces only its last day).
* ``daily.summary`` — after the evening's track record and portfolios (beat, 21:10 KST).
* ``data.stale`` — a dataset behind the session it should hold (beat, after each pipeline).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.models import DailyCandle, InvestorFlow
from db.notify import (
    analysis_catalysts,
    instrument_labels,
    latest_candle_day,
    new_signal_counts,
    outcome_day,
    signal_strategies,
)
from db.portfolios import all_portfolios, days
from db.reference import latest_gate
from quant.market.types import KRX_MARKETS
from quant.outcomes import DEFAULT_RULES, ClosingBetRules, GenericRules, Rules, VcpRules
from quant.portfolio import Day
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar
from quantbeat.services import notify, track_record

log = structlog.get_logger(__name__)

#: Signals a ``signals.published`` event carries (the best ones; ``count`` has them all).
SIGNALS_IN_EVENT = 30
#: Reasons per signal in an event.
REASONS_IN_EVENT = 4


def is_simulated(sources: Sequence[str] = ()) -> bool:
    """Whether an event is about simulated data: this deployment's market source is the
    simulated one, or any of the instrument ``sources`` involved is."""
    return get_settings().market_source == "simulated" or "simulated" in sources


def levels(
    strategy: str, entry: float | None, rules: Rules = DEFAULT_RULES
) -> tuple[float | None, float | None]:
    """(stop, target) in KRW of a signal entered at ``entry`` under ``strategy``'s exit plan
    (the track record's rules): the closing bet's −3 %/+5 %, a VCP's widest stop (its
    target is the trend, none), another strategy's fixed stop."""
    if entry is None:
        return None, None
    plan = rules.plan(strategy)
    if isinstance(plan, ClosingBetRules):
        return entry * (1.0 - plan.stop_loss), entry * (1.0 + plan.take_profit)
    if isinstance(plan, VcpRules):
        return entry * (1.0 - plan.max_stop), None
    assert isinstance(plan, GenericRules)
    return entry * (1.0 - plan.stop_loss), None


def signals(
    session: Session,
    *,
    strategy: str,
    trade_date: dt.date,
    phase: str,
    ranked: Sequence[tuple[int, Any]],
    run_id: int | None = None,
    gate: str | None = None,
    tradeable: bool | None = None,
) -> str | None:
    """Record ``signals.published`` for ``strategy``'s ``phase`` decision of ``trade_date``
    (``ranked``: its stored candidates, best first, with instrument ids, as
    :func:`quantbeat.services.scans.ranked_candidates` returns them) in ``session``'s
    transaction. Returns the event id, or ``None`` when this decision was announced already.
    """
    top = list(ranked[:SIGNALS_IN_EVENT])
    ids = [ident for ident, _ in top]
    labels = instrument_labels(session, ids)
    news = analysis_catalysts(session, trade_date, strategy, ids)
    items = []
    for ident, c in top:
        ticker, market, name, _source = labels.get(ident, (c.instrument, "", c.name, ""))
        stop, target = levels(strategy, c.entry_price)
        items.append(
            {
                "code": ticker,
                "name": name,
                "market": market or None,
                "grade": c.grade,
                "score": c.score,
                "entry": c.entry_price,
                "stop": stop,
                "target": target,
                "reasons": [str(r) for r in c.reasons[:REASONS_IN_EVENT]],
                "news": news.get(ident),
            }
        )
    payload = {
        "strategy": strategy,
        "trade_date": trade_date.isoformat(),
        "phase": phase,
        "run_id": run_id,
        "gate": gate if gate is not None else next((c.gate for _, c in top if c.gate), None),
        "count": len(ranked),
        "tradeable": tradeable,
        "signals": items,
    }
    return notify.record(
        session,
        "signals.published",
        key=f"signals.published:{strategy}:{trade_date.isoformat()}:{phase}",
        payload=payload,
        trade_date=trade_date,
        simulated=is_simulated([v[3] for v in labels.values()]),
    )


def positions(session: Session, portfolio: str, day: Day) -> int:
    """Record ``position.opened``/``position.closed`` for the trades of ``day`` of paper
    portfolio ``portfolio`` in ``session``'s transaction. Returns how many were new."""
    held = [p for p in day.opened] + [c.position for c in day.closed]
    labels = instrument_labels(session, {p.instrument_id for p in held})
    strategies = signal_strategies(session, {p.signal_id for p in held})
    simulated = is_simulated([v[3] for v in labels.values()])
    new = 0
    for p in day.opened:
        ticker, _market, name, _source = labels.get(p.instrument_id, ("?", "", None, ""))
        new += (
            notify.record(
                session,
                "position.opened",
                key=f"position.opened:{portfolio}:{p.signal_id}",
                payload={
                    "portfolio": portfolio,
                    "code": ticker,
                    "name": name,
                    "strategy": strategies.get(p.signal_id),
                    "quantity": p.quantity,
                    "price": p.entry_fill,
                    "trade_date": day.trade_date.isoformat(),
                },
                trade_date=day.trade_date,
                simulated=simulated,
            )
            is not None
        )
    for c in day.closed:
        p = c.position
        ticker, _market, name, _source = labels.get(p.instrument_id, ("?", "", None, ""))
        new += (
            notify.record(
                session,
                "position.closed",
                key=f"position.closed:{portfolio}:{p.signal_id}",
                payload={
                    "portfolio": portfolio,
                    "code": ticker,
                    "name": name,
                    "strategy": strategies.get(p.signal_id),
                    "quantity": p.quantity,
                    "price": c.exit_fill,
                    "trade_date": day.trade_date.isoformat(),
                    "pnl": c.realized,
                    "return_pct": c.realized / p.cost if p.cost else None,
                    "reason": c.reason,
                },
                trade_date=day.trade_date,
                simulated=simulated,
            )
            is not None
        )
    return new


def kpi_lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The daily summary's KPI lines from a track-record report grouped by strategy
    (:func:`quantbeat.services.track_record.report`, whose groups are
    :meth:`quant.kpi.Kpis.as_dict`): closed signals, win rate, mean net return, profit
    factor."""
    out = []
    for name, k in sorted(report.get("groups", {}).items()):
        out.append(
            {
                "strategy": name,
                "closed": int(k.get("count") or 0),
                "win_rate": k.get("win_rate"),
                "avg_return": k.get("mean"),
                "profit_factor": k.get("profit_factor"),
            }
        )
    return out


def daily_summary(trade_date: dt.date | None = None) -> dict[str, Any]:
    """Record the ``daily.summary`` of ``trade_date`` (default: today in
    ``QUANTBEAT_TIMEZONE`` if it is a KRX session, else the last session): the day's new
    final signals by strategy, signals still open, those closed on the day and their mean
    net return, the track record's KPIs by strategy, each paper portfolio's equity and
    returns, and the day's last gate. Returns ``{"trade_date", "event_id"}`` (``event_id``
    ``None`` when the day was summarised already)."""
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    day = trade_date or krx_calendar().previous_session(dt.datetime.now(zone).date())
    report = track_record.report(by="strategy")
    with session_scope() as session:
        still_open, closed = outcome_day(session, day)
        returns = [r for r in closed if r is not None]
        gate = latest_gate(session, day)
        books = []
        for row in all_portfolios(session):
            history = days(session, row.id, since=day - dt.timedelta(days=10))
            today = next((d for d in history if d.trade_date == day), None)
            if today is None:
                continue
            before = [d for d in history if d.trade_date < day]
            previous = before[-1].equity if before else row.capital
            books.append(
                {
                    "name": row.name,
                    "equity": today.equity,
                    "day_return": today.equity / previous - 1.0 if previous else None,
                    "total_return": today.equity / row.capital - 1.0 if row.capital else None,
                    "open_positions": today.positions,
                }
            )
        event_id = notify.record(
            session,
            "daily.summary",
            key=f"daily.summary:{day.isoformat()}",
            payload={
                "trade_date": day.isoformat(),
                "gate": None if gate is None else gate.color,
                "new_signals": new_signal_counts(session, day),
                "open_signals": still_open,
                "closed_today": len(closed),
                "closed_today_avg_return": sum(returns) / len(returns) if returns else None,
                "kpis": kpi_lines(report),
                "portfolios": books,
            },
            trade_date=day,
            simulated=is_simulated() or bool(report.get("simulated")),
        )
    log.info("notify.daily_summary", trade_date=day.isoformat(), event_id=event_id)
    return {"trade_date": day.isoformat(), "event_id": event_id}


def check_freshness(trade_date: dt.date | None = None) -> dict[str, Any]:
    """Compare the newest stored daily candles and investor flows with the session they
    should hold by now (``trade_date``, default: the last KRX session that has closed) and
    record ``data.stale`` for each dataset behind it, once per (dataset, expected day).
    Returns ``{"expected", "datasets": {name: {"latest", "lag_sessions", "event_id"}}}``."""
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    calendar = krx_calendar()
    now = dt.datetime.now(zone)
    expected = trade_date or calendar.previous_session(
        now.date() if now.time() >= dt.time(15, 40) else now.date() - dt.timedelta(days=1)
    )
    markets = [m.value for m in KRX_MARKETS]
    out: dict[str, Any] = {}
    with session_scope() as session:
        for name, model in (("daily_candles", DailyCandle), ("investor_flows", InvestorFlow)):
            latest = latest_candle_day(session, model, markets)
            lag = (
                len(calendar.sessions(latest + dt.timedelta(days=1), expected))
                if latest is not None and latest < expected
                else (0 if latest is not None else 1)
            )
            event_id = None
            if lag > 0:
                event_id = notify.record(
                    session,
                    "data.stale",
                    key=f"data.stale:{name}:{expected.isoformat()}",
                    payload={
                        "dataset": name,
                        "latest": None if latest is None else latest.isoformat(),
                        "expected": expected.isoformat(),
                        "lag_sessions": lag,
                    },
                    trade_date=expected,
                    simulated=is_simulated(),
                )
            out[name] = {
                "latest": None if latest is None else latest.isoformat(),
                "lag_sessions": lag,
                "event_id": event_id,
            }
    return {"expected": expected.isoformat(), "datasets": out}

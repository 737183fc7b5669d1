"""Issue 18's done-when on PostgreSQL through a real worker: a year of the SIMULATED market
(collected by the simulated source) gives a signal history (``quantbeat.track.backfill``), a
track record whose closed signals all have net returns that pay commission, slippage and the
dated sell tax of their exit dates (on both sides of the 2026-01-01 rise, recomputed here from
:data:`quant.costs.SELL_TAX`, not from the code's own totals), and a paper portfolio whose
equity equals cash + its positions marked at each day's close, every day.

The backfill reads no later bar: backfilling up to a middle day and then the whole year finds
exactly the same signals up to that day."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import (
    DailyCandle,
    Instrument,
    PortfolioDay,
    PortfolioPosition,
    Signal,
    SignalOutcome,
)
from quant.costs import SELL_TAX
from quantbeat.services import portfolio
from tests.integration.helpers import small_kospi_history

pytestmark = pytest.mark.integration

#: Collected from COLLECT (warm-up for the 60-session averages), backfilled FIRST … LAST.
COLLECT, FIRST, MIDDLE, LAST = (
    dt.date(2025, 4, 1),
    dt.date(2025, 7, 1),
    dt.date(2025, 12, 15),
    dt.date(2026, 6, 30),
)
#: Per-side costs of :class:`quant.costs.Costs` (commission, slippage), written out here.
COMMISSION, SLIPPAGE = 0.00015, 0.0005


def _tax(market: str, day: dt.date) -> float:
    """The sell tax of ``market`` on ``day``, read from the table by hand."""
    rows = [r for r in SELL_TAX if r.market == market and r.start <= day]
    return max(rows, key=lambda r: r.start).rate


def _history() -> set[tuple[dt.date, str, int]]:
    with session_scope() as session:
        return {
            (d, s, int(i))
            for d, s, i in session.execute(
                select(Signal.trade_date, Signal.strategy, Signal.instrument_id).where(
                    Signal.source == "backfill"
                )
            )
        }


def _marks(portfolio_id: int, day: dt.date) -> float:
    """Open positions at the end of ``day`` at the latest close on or before it."""
    with session_scope() as session:
        held = session.execute(
            select(PortfolioPosition).where(
                PortfolioPosition.portfolio_id == portfolio_id,
                PortfolioPosition.opened_on <= day,
                (PortfolioPosition.closed_on.is_(None)) | (PortfolioPosition.closed_on > day),
            )
        ).scalars()
        total = 0.0
        for p in held:
            close = session.execute(
                select(DailyCandle.close)
                .where(
                    DailyCandle.instrument_id == p.instrument_id,
                    DailyCandle.trade_date <= day,
                    DailyCandle.trade_date >= p.opened_on,
                )
                .order_by(DailyCandle.trade_date.desc())
                .limit(1)
            ).scalar_one_or_none()
            total += p.quantity * (close if close is not None else p.entry_price)
        return total


def test_a_simulated_year_gives_a_costed_track_record_and_a_reconciled_portfolio(
    database: str, celery_app: Any
) -> None:
    small_kospi_history(database, COLLECT.isoformat(), LAST.isoformat(), universe_size=400)

    # 1. the history up to MIDDLE, then the whole year: the same signals up to MIDDLE
    half = celery_app.send_task(
        "quantbeat.track.backfill",
        kwargs={"since": FIRST.isoformat(), "until": MIDDLE.isoformat()},
    ).get(timeout=120)
    early = _history()
    assert half["strategies"]["closing_bet"]["inserted"] == len(
        {k for k in early if k[1] == "closing_bet"}
    )
    full = celery_app.send_task(
        "quantbeat.track.backfill",
        kwargs={"since": FIRST.isoformat(), "until": LAST.isoformat()},
    ).get(timeout=120)
    history = _history()
    assert {k for k in history if k[0] <= MIDDLE} == early  # nothing new before MIDDLE
    skipped = sum(s["skipped_stored"] for s in full["strategies"].values())
    assert skipped == len(early)  # … and nothing missing
    assert len(history) > 100
    again = celery_app.send_task(
        "quantbeat.track.backfill",
        kwargs={"since": FIRST.isoformat(), "until": LAST.isoformat()},
    ).get(timeout=120)
    assert sum(s["inserted"] for s in again["strategies"].values()) == 0
    assert _history() == history

    with session_scope() as session:
        bad_entries = session.execute(
            select(func.count())
            .select_from(Signal)
            .join(
                DailyCandle,
                (DailyCandle.instrument_id == Signal.instrument_id)
                & (DailyCandle.trade_date == Signal.trade_date),
            )
            .where(Signal.entry_price != DailyCandle.close)
        ).scalar_one()
        grades = set(session.execute(select(Signal.strategy, Signal.grade).distinct()).all())
    assert bad_entries == 0  # entered at the signal bar's close
    assert {g for s, g in grades if s == "closing_bet"} <= {"S", "A", "B"}

    # 2. the track record through the worker
    followed = celery_app.send_task(
        "quantbeat.track.update", kwargs={"as_of": LAST.isoformat()}
    ).get(timeout=300)
    assert followed["followed"] == len(history)
    with session_scope() as session:
        closed = session.execute(
            select(SignalOutcome, Instrument.market)
            .join(Signal, Signal.id == SignalOutcome.signal_id)
            .join(Instrument, Instrument.id == Signal.instrument_id)
            .where(SignalOutcome.state == "closed")
        ).all()
    assert len(closed) > 100
    exit_years = set()
    for outcome, market in closed:
        assert outcome.net_return is not None, outcome.signal_id
        assert outcome.exit_date is not None
        tax = _tax(market, outcome.exit_date)
        entry, exit_ = outcome.entry_price, outcome.exit_price
        assert entry is not None
        assert exit_ is not None
        assert outcome.gross_return is not None
        expected = (exit_ * (1 - SLIPPAGE) * (1 - COMMISSION - tax)) / (
            entry * (1 + SLIPPAGE) * (1 + COMMISSION)
        ) - 1.0
        assert outcome.gross_return == pytest.approx(exit_ / entry - 1.0, rel=1e-9, abs=1e-12)
        assert outcome.net_return == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert outcome.gross_return - outcome.net_return >= tax
        exit_years.add(outcome.exit_date.year)
    assert exit_years == {2025, 2026}  # the 0.15 % and the 0.20 % tax both paid

    # 3. a paper portfolio trading them, through the worker
    portfolio.create("year-paper", capital=100_000_000, start_date=FIRST)
    stepped = celery_app.send_task("quantbeat.portfolio.update").get(timeout=300)
    counts = stepped["portfolios"]["year-paper"]
    assert counts["entries"] >= 5
    assert counts["exits"] >= 5
    with session_scope() as session:
        pid = session.execute(select(PortfolioDay.portfolio_id).limit(1)).scalar_one()
        days = (
            session.execute(
                select(PortfolioDay)
                .where(PortfolioDay.portfolio_id == pid)
                .order_by(PortfolioDay.trade_date)
            )
            .scalars()
            .all()
        )
    assert days[0].trade_date >= FIRST
    assert days[-1].trade_date == LAST
    previous = 100_000_000.0
    for d in days:
        assert d.equity == pytest.approx(d.cash + d.market_value, rel=1e-12)
        assert d.market_value == pytest.approx(_marks(pid, d.trade_date), rel=1e-9), d.trade_date
        assert d.pnl == pytest.approx(d.equity - previous, rel=1e-9, abs=1e-6)
        assert d.cash >= 0
        previous = d.equity

"""Paper portfolios on PostgreSQL through a real worker (issue 18 item 5): every day of a
SIMULATED span — random-walk bars and random signals whose outcomes enter and exit — the
portfolio's equity equals its cash plus its positions marked at the day's close (recomputed
here from the stored rows and bars, not from the code's own totals); no position lacks its
signal; re-running the update changes nothing; a crash mid-day leaves the earlier days intact
and the next update ends where an uninterrupted one does."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from db.engine import session_scope
from db.models import (
    DailyCandle,
    Instrument,
    PortfolioDay,
    PortfolioFill,
    PortfolioOrder,
    PortfolioPosition,
    Signal,
    SignalOutcome,
)
from quant.errors import NotFound, ValidationError
from quantbeat.infra.sources import krx_calendar
from quantbeat.services import portfolio

pytestmark = pytest.mark.integration

START, END = dt.date(2026, 1, 2), dt.date(2026, 6, 30)
INSTRUMENTS = 25


def _seed(seed: int = 3, end: dt.date = END) -> list[dt.date]:
    """SIMULATED bars of 25 instruments and ~4 signals a session, each with an outcome that
    enters on its signal day at the close and exits 1–6 sessions later at that close (or is
    still open at the end)."""
    rng = random.Random(seed)
    sessions = krx_calendar().sessions(START, end)
    with session_scope() as session:
        ids = [
            session.execute(
                insert(Instrument)
                .values(market=rng.choice(["KOSPI", "KOSDAQ"]), ticker=f"{900000 + i}",
                        name=f"SIMULATED {i}", currency="KRW", listing_status="listed",
                        source="simulated")
                .returning(Instrument.id)
            ).scalar_one()
            for i in range(INSTRUMENTS)
        ]  # fmt: skip
        closes: dict[int, list[float]] = {}
        halted: set[tuple[int, dt.date]] = set()
        rows = []
        for ident in ids:
            price, series = 10_000.0, []
            for day in sessions:
                price *= math.exp(rng.gauss(0.0, 0.02))
                series.append(price)
                if rng.random() < 0.01:
                    halted.add((ident, day))
                    continue  # a halted session: no bar, the last mark stays
                rows.append({"instrument_id": ident, "trade_date": day, "open": price,
                             "high": price * 1.01, "low": price * 0.99, "close": price,
                             "volume": 1000, "traded_value": price * 1000,
                             "source": "simulated"})  # fmt: skip
            closes[ident] = series
        session.execute(insert(DailyCandle), rows)
        for n, day in enumerate(sessions):
            traded = [i for i in ids if (i, day) not in halted]  # a signal needs its bar
            for ident in rng.sample(traded, 4):
                strategy = rng.choice(["closing_bet", "vcp"])
                phase = "preliminary" if strategy == "closing_bet" else "final"
                grade = rng.choice(["S", "A", "B", "C"] if strategy == "closing_bet"
                                   else ["Textbook", "Strong", "Good"])  # fmt: skip
                entry = closes[ident][n]
                signal_id = session.execute(
                    insert(Signal)
                    .values(trade_date=day, strategy=strategy, phase=phase, instrument_id=ident,
                            score=rng.uniform(0, 100), grade=grade, entry_price=entry,
                            status="test", reasons=["SIMULATED"], source="simulated",
                            gate=rng.choice(["GREEN", "YELLOW", "RED", None]),
                            inputs={"stop": entry * 0.93} if strategy == "vcp" else {})
                    .returning(Signal.id)
                ).scalar_one()  # fmt: skip
                out = n + rng.randint(1, 6)
                closed = out < len(sessions)
                session.merge(  # over the row the signal was born with
                    SignalOutcome(
                        signal_id=signal_id, rules="test-v1",
                        state="closed" if closed else "open",
                        reason=rng.choice(["take_profit", "stop_loss", "time_exit"])
                        if closed else None,
                        entry_date=day, entry_price=entry,
                        exit_date=sessions[out] if closed else None,
                        exit_price=closes[ident][out] if closed else None,
                        evaluated_through=sessions[-1],
                    )
                )  # fmt: skip
    return sessions


def _marks(portfolio_id: int, day: dt.date) -> float:
    """The open positions of the end of ``day`` marked at the latest close on or before it,
    recomputed from the stored positions and bars."""
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
                .where(DailyCandle.instrument_id == p.instrument_id, DailyCandle.trade_date <= day,
                       DailyCandle.trade_date >= p.opened_on)
                .order_by(DailyCandle.trade_date.desc())
                .limit(1)
            ).scalar_one_or_none()  # fmt: skip
            total += p.quantity * (close if close is not None else p.entry_price)
        return total


def _counts() -> tuple[int, ...]:
    with session_scope() as session:
        return tuple(
            session.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (PortfolioOrder, PortfolioFill, PortfolioPosition, PortfolioDay)
        )


def test_a_portfolio_trades_its_signals_and_reconciles_every_day(
    clean_db: str, celery_app: Any
) -> None:
    sessions = _seed()
    made = portfolio.create("paper-1", capital=100_000_000, start_date=START)
    assert made["simulated"] is True
    done = celery_app.send_task("quantbeat.portfolio.update").get(timeout=120)
    counts = done["portfolios"]["paper-1"]
    assert done["through"] == sessions[-1].isoformat()
    assert counts["days"] == len(sessions)
    assert counts["entries"] > 20
    assert counts["exits"] > 10
    assert counts["refused"] > 0  # RED gates, grade C, full slots

    with session_scope() as session:
        pid = session.execute(select(PortfolioDay.portfolio_id).limit(1)).scalar_one()
        days = session.execute(
            select(PortfolioDay).where(PortfolioDay.portfolio_id == pid)
            .order_by(PortfolioDay.trade_date)
        ).scalars().all()  # fmt: skip
        orphans = session.execute(
            select(func.count())
            .select_from(PortfolioPosition)
            .outerjoin(Signal, Signal.id == PortfolioPosition.signal_id)
            .where(Signal.id.is_(None))
        ).scalar_one()
        reds = session.execute(
            select(func.count())
            .select_from(PortfolioPosition)
            .join(Signal, Signal.id == PortfolioPosition.signal_id)
            .where(Signal.gate == "RED")
        ).scalar_one()
        taxes = session.execute(
            select(func.sum(PortfolioFill.tax))
            .join(PortfolioOrder, PortfolioOrder.id == PortfolioFill.order_id)
            .where(PortfolioOrder.side == "sell")
        ).scalar_one()
    assert [d.trade_date for d in days] == sessions
    assert orphans == 0
    assert reds == 0  # RED: no new entries
    assert taxes > 0  # every sale paid the dated sell tax
    previous = 100_000_000.0
    for d in days:
        assert d.equity == pytest.approx(d.cash + d.market_value, rel=1e-12)
        assert d.market_value == pytest.approx(_marks(pid, d.trade_date), rel=1e-9), d.trade_date
        assert d.pnl == pytest.approx(d.equity - previous, rel=1e-9, abs=1e-6)
        assert d.cash >= 0
        previous = d.equity

    # a re-run (the task again, and the service) changes nothing
    before = _counts()
    again = celery_app.send_task("quantbeat.portfolio.update").get(timeout=60)
    assert again["portfolios"]["paper-1"]["days"] == 0
    assert _counts() == before
    shown = portfolio.describe("paper-1")
    assert shown["days"] == len(sessions)
    assert shown["equity"] == pytest.approx(days[-1].equity)


def test_a_crash_mid_day_leaves_the_earlier_days_and_the_rerun_matches(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = _seed(seed=11, end=dt.date(2026, 3, 31))
    portfolio.create("steady", capital=50_000_000, start_date=START)
    portfolio.create("crashy", capital=50_000_000, start_date=START)
    portfolio.update(None, name="steady")

    from db import portfolios as store

    real_write = store.write_day
    crash_on = sessions[30]

    def write_then_crash(session: Any, portfolio_id: int, day: Any) -> None:
        real_write(session, portfolio_id, day)  # the day's rows are written ...
        if day.trade_date == crash_on:
            raise RuntimeError("simulated crash mid-update")  # ... and never committed

    monkeypatch.setattr(store, "write_day", write_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        portfolio.update(None, name="crashy")
    stored = portfolio.history("crashy")
    assert [d["trade_date"] for d in stored] == [d.isoformat() for d in sessions[:30]]
    assert len(portfolio.positions("crashy")) > 0
    monkeypatch.setattr(store, "write_day", real_write)
    portfolio.update(None, name="crashy")
    assert portfolio.history("crashy") == portfolio.history("steady")
    assert portfolio.positions("crashy") == portfolio.positions("steady")

    # rebuilding replays to the same book
    portfolio.rebuild("crashy", through=None)
    assert portfolio.history("crashy") == portfolio.history("steady")


def test_bad_names_rules_and_unknown_portfolios_are_refused_clearly(clean_db: str) -> None:
    with pytest.raises(ValidationError, match="portfolio name 'a b'"):
        portfolio.create("a b", capital=1e6, start_date=START)
    with pytest.raises(ValidationError, match=r"portfolio p: unknown rule\(s\) sizing"):
        portfolio.create("p", capital=1e6, start_date=START, rules={"sizing": 1})
    with pytest.raises(ValidationError, match=r"max_positions=0 "):
        portfolio.create("p", capital=1e6, start_date=START, rules={"max_positions": 0})
    portfolio.create("p", capital=1e6, start_date=START)
    with pytest.raises(ValidationError, match="exists already"):
        portfolio.create("p", capital=1e6, start_date=START)
    with pytest.raises(NotFound, match="no portfolio named 'q'"):
        portfolio.describe("q")


def test_a_day_waits_until_all_its_signals_are_followed(clean_db: str) -> None:
    from db import portfolios as store

    sessions = _seed(seed=5, end=dt.date(2026, 1, 30))
    with session_scope() as session:
        assert store.latest_ready_day(session) == sessions[-1]
        # a signal of the 20th the track record has not followed yet holds the 20th back
        ident = session.execute(select(Instrument.id).limit(1)).scalar_one()
        session.add(Signal(trade_date=sessions[12], strategy="vcp", phase="final",
                           instrument_id=ident, source="simulated", grade="Strong"))  # fmt: skip
    with session_scope() as session:
        assert store.latest_ready_day(session) == sessions[12] - dt.timedelta(days=1)
    portfolio.create("waits", capital=1e8, start_date=START)
    done = portfolio.update(None, name="waits")
    assert done["through"] == (sessions[12] - dt.timedelta(days=1)).isoformat()
    assert done["portfolios"]["waits"]["days"] == 12

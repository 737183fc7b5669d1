"""Paper portfolios: the portfolio rows, their orders, fills, positions and days, and the
signal outcomes a portfolio day reads. Each call runs in the caller's session; callers commit
(the portfolio service commits one portfolio-day per transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from db.models import (
    UNFOLLOWED_RULES,
    DailyCandle,
    Instrument,
    Portfolio,
    PortfolioDay,
    PortfolioFill,
    PortfolioOrder,
    PortfolioPosition,
    Signal,
    SignalOutcome,
)
from quant.portfolio import Candidate, Day, Exit, Position


def create(
    session: Session, *, name: str, capital: float, start_date: dt.date, rules: dict[str, Any]
) -> Portfolio:
    """Insert a portfolio (the caller checked the name is free)."""
    row = Portfolio(name=name, capital=capital, start_date=start_date, rules=rules, state="active")
    session.add(row)
    session.flush()
    return row


def by_name(session: Session, name: str) -> Portfolio | None:
    """The portfolio called ``name``, if any."""
    return session.execute(select(Portfolio).where(Portfolio.name == name)).scalar_one_or_none()


def all_portfolios(session: Session) -> list[Portfolio]:
    """Every portfolio, by name."""
    return list(session.execute(select(Portfolio).order_by(Portfolio.name)).scalars())


def last_day(session: Session, portfolio_id: int) -> PortfolioDay | None:
    """The portfolio's latest stored day."""
    return session.execute(
        select(PortfolioDay)
        .where(PortfolioDay.portfolio_id == portfolio_id)
        .order_by(PortfolioDay.trade_date.desc())
        .limit(1)
    ).scalar_one_or_none()


def days(session: Session, portfolio_id: int, since: dt.date | None = None) -> list[PortfolioDay]:
    """The portfolio's days, oldest first (from ``since`` when given)."""
    query = select(PortfolioDay).where(PortfolioDay.portfolio_id == portfolio_id)
    if since is not None:
        query = query.where(PortfolioDay.trade_date >= since)
    return list(session.execute(query.order_by(PortfolioDay.trade_date)).scalars())


def week_realized(session: Session, portfolio_id: int, day: dt.date) -> float:
    """The realized P&L of the portfolio's stored days in ``day``'s ISO week before it."""
    monday = day - dt.timedelta(days=day.weekday())
    total = session.execute(
        select(func.coalesce(func.sum(PortfolioDay.realized), 0.0)).where(
            PortfolioDay.portfolio_id == portfolio_id,
            PortfolioDay.trade_date >= monday,
            PortfolioDay.trade_date < day,
        )
    ).scalar_one()
    return float(total)


def open_positions(session: Session, portfolio_id: int) -> list[Position]:
    """The portfolio's open positions as the rules see them."""
    rows = session.execute(
        select(PortfolioPosition, Instrument.market, PortfolioFill.fees)
        .join(Instrument, Instrument.id == PortfolioPosition.instrument_id)
        .join(
            PortfolioOrder,
            (PortfolioOrder.portfolio_id == PortfolioPosition.portfolio_id)
            & (PortfolioOrder.signal_id == PortfolioPosition.signal_id)
            & (PortfolioOrder.side == "buy"),
        )
        .join(PortfolioFill, PortfolioFill.order_id == PortfolioOrder.id)
        .where(PortfolioPosition.portfolio_id == portfolio_id, PortfolioPosition.state == "open")
        .order_by(PortfolioPosition.signal_id)
    ).all()
    return [
        Position(
            signal_id=p.signal_id,
            instrument_id=p.instrument_id,
            market=market,
            quantity=p.quantity,
            opened_on=p.opened_on,
            entry_fill=p.entry_price,
            cost=p.entry_price * p.quantity + fees,
            stop=p.stop,
            last_price=p.last_price if p.last_price is not None else p.entry_price,
        )
        for p, market, fees in rows
    ]


def position_rows(
    session: Session, portfolio_id: int, *, state: str | None = None
) -> list[tuple[PortfolioPosition, Instrument, Signal]]:
    """The portfolio's positions with their instrument and signal, newest first."""
    query = (
        select(PortfolioPosition, Instrument, Signal)
        .join(Instrument, Instrument.id == PortfolioPosition.instrument_id)
        .join(Signal, Signal.id == PortfolioPosition.signal_id)
        .where(PortfolioPosition.portfolio_id == portfolio_id)
    )
    if state is not None:
        query = query.where(PortfolioPosition.state == state)
    query = query.order_by(PortfolioPosition.opened_on.desc(), PortfolioPosition.signal_id)
    return [(p, i, s) for p, i, s in session.execute(query).all()]


def entries_on(
    session: Session, day: dt.date, phases: Sequence[tuple[str, str]]
) -> list[Candidate]:
    """Signals of the ``(strategy, phase)`` pairs whose outcome entered on ``day``, with the
    outcome's entry price (and its exit, when it also left on ``day``)."""
    if not phases:
        return []
    pairs = [(Signal.strategy == s) & (Signal.phase == p) for s, p in phases]
    condition = pairs[0]
    for pair in pairs[1:]:
        condition = condition | pair
    rows = session.execute(
        select(Signal, SignalOutcome, Instrument.market)
        .join(SignalOutcome, SignalOutcome.signal_id == Signal.id)
        .join(Instrument, Instrument.id == Signal.instrument_id)
        .where(SignalOutcome.entry_date == day, SignalOutcome.entry_price.is_not(None), condition)
        .order_by(Signal.id)
    ).all()
    out = []
    for signal, outcome, market in rows:
        stop = None
        if isinstance(signal.inputs, dict):
            raw = signal.inputs.get("stop")
            stop = float(raw) if isinstance(raw, int | float) else None
        same_day = None
        if outcome.exit_date == day and outcome.exit_price is not None:
            same_day = Exit(signal.id, outcome.exit_price, outcome.reason or outcome.state)
        out.append(
            Candidate(
                signal_id=signal.id,
                instrument_id=signal.instrument_id,
                market=market,
                strategy=signal.strategy,
                grade=signal.grade,
                score=signal.score,
                gate=signal.gate,
                entry_price=float(outcome.entry_price or 0.0),
                stop=stop,
                exit=same_day,
            )
        )
    return out


def exits_on(session: Session, day: dt.date, signal_ids: Sequence[int]) -> dict[int, Exit]:
    """The outcome exits on ``day`` of the held ``signal_ids`` (closed, or void with an exit
    price: a delisting's last price)."""
    if not signal_ids:
        return {}
    rows = session.execute(
        select(SignalOutcome).where(
            SignalOutcome.signal_id.in_(list(signal_ids)),
            SignalOutcome.exit_date == day,
            SignalOutcome.exit_price.is_not(None),
        )
    ).scalars()
    return {r.signal_id: Exit(r.signal_id, r.exit_price, r.reason or r.state) for r in rows}  # type: ignore[arg-type]


def closes_on(session: Session, day: dt.date, instrument_ids: Sequence[int]) -> dict[int, float]:
    """``{instrument_id: close}`` of ``day``'s bars of the instruments (none: a halt)."""
    if not instrument_ids:
        return {}
    rows = session.execute(
        select(DailyCandle.instrument_id, DailyCandle.close).where(
            DailyCandle.trade_date == day, DailyCandle.instrument_id.in_(list(instrument_ids))
        )
    ).all()
    return {i: float(c) for i, c in rows if c is not None}


def write_day(session: Session, portfolio_id: int, day: Day) -> None:
    """Store one stepped day: its orders and fills, the positions it opened and closed, the
    marks of the open ones and the day row."""
    if day.orders:
        ids = (
            session.execute(
                insert(PortfolioOrder).returning(PortfolioOrder.id, sort_by_parameter_order=True),
                [
                    {
                        "portfolio_id": portfolio_id,
                        "signal_id": order.signal_id,
                        "trade_date": day.trade_date,
                        "side": order.side,
                        "quantity": order.quantity,
                        "state": order.state,
                        "reason": order.reason,
                    }
                    for order in day.orders
                ],
            )
            .scalars()
            .all()
        )
        fills = [
            {
                "order_id": order_id,
                "trade_date": day.trade_date,
                "quantity": order.quantity,
                "price": order.price,
                "fees": order.fees,
                "tax": order.tax,
            }
            for order_id, order in zip(ids, day.orders, strict=True)
            if order.state == "filled" and order.price is not None
        ]
        if fills:
            session.execute(insert(PortfolioFill), fills)
    stops = {p.signal_id: p.stop for p in day.opened}
    for position in day.opened:
        session.add(
            PortfolioPosition(
                portfolio_id=portfolio_id,
                signal_id=position.signal_id,
                instrument_id=position.instrument_id,
                state="open",
                quantity=position.quantity,
                opened_on=position.opened_on,
                entry_price=position.entry_fill,
                stop=stops[position.signal_id],
                last_price=position.last_price,
            )
        )
    session.flush()
    for closed in day.closed:
        session.execute(
            update(PortfolioPosition)
            .where(
                PortfolioPosition.portfolio_id == portfolio_id,
                PortfolioPosition.signal_id == closed.position.signal_id,
            )
            .values(
                state="closed",
                closed_on=day.trade_date,
                exit_price=closed.exit_fill,
                exit_reason=closed.reason,
                realized_pnl=closed.realized,
                last_price=closed.exit_fill,
            )
        )
    if day.positions:
        table: Table = PortfolioPosition.__table__  # type: ignore[assignment]
        session.connection().execute(
            update(table)
            .where(
                table.c.portfolio_id == portfolio_id,
                table.c.signal_id == bindparam("held_signal"),
            )
            .values(last_price=bindparam("mark")),
            [{"held_signal": p.signal_id, "mark": p.last_price} for p in day.positions],
        )
    session.add(
        PortfolioDay(
            portfolio_id=portfolio_id,
            trade_date=day.trade_date,
            cash=day.cash,
            market_value=day.market_value,
            equity=day.equity,
            pnl=day.pnl,
            realized=day.realized,
            positions=len(day.positions),
            blocked=day.blocked,
        )
    )
    session.flush()


def has_day(session: Session, portfolio_id: int, day: dt.date) -> bool:
    """Whether the portfolio's ``day`` is stored already."""
    return (
        session.execute(
            select(PortfolioDay.trade_date).where(
                PortfolioDay.portfolio_id == portfolio_id, PortfolioDay.trade_date == day
            )
        ).first()
        is not None
    )


def orders_of(
    session: Session, portfolio_id: int, day: dt.date | None = None
) -> list[tuple[PortfolioOrder, PortfolioFill | None]]:
    """The portfolio's orders (of ``day``), with their fills."""
    query = (
        select(PortfolioOrder, PortfolioFill)
        .outerjoin(PortfolioFill, PortfolioFill.order_id == PortfolioOrder.id)
        .where(PortfolioOrder.portfolio_id == portfolio_id)
    )
    if day is not None:
        query = query.where(PortfolioOrder.trade_date == day)
    return [(o, f) for o, f in session.execute(query.order_by(PortfolioOrder.id)).all()]


def reset(session: Session, portfolio_id: int) -> None:
    """Delete everything the portfolio traded (orders, fills, positions, days); the portfolio
    row and its rules stay."""
    for table in (PortfolioOrder, PortfolioPosition, PortfolioDay):
        session.execute(delete(table).where(table.portfolio_id == portfolio_id))


def simulated(session: Session, portfolio_id: int) -> bool:
    """Whether any position of the portfolio is in an instrument of the simulated market."""
    found = session.execute(
        select(PortfolioPosition.id)
        .join(Instrument, Instrument.id == PortfolioPosition.instrument_id)
        .where(PortfolioPosition.portfolio_id == portfolio_id, Instrument.source == "simulated")
        .limit(1)
    ).first()
    return found is not None


def latest_ready_day(session: Session) -> dt.date | None:
    """The latest day a portfolio can be stepped through: the newest stored daily bar, no
    later than the day before the oldest signal the track record has not followed yet, and no
    later than the oldest ``evaluated_through`` of a signal still pending or open — a day
    whose entries or exits are not all known yet must wait (a stepped day is never redone)."""
    candles = session.execute(select(func.max(DailyCandle.trade_date))).scalar_one()
    if candles is None:
        return None
    ready: dt.date = candles
    unfollowed = session.execute(
        select(func.min(Signal.trade_date))
        .join(SignalOutcome, SignalOutcome.signal_id == Signal.id)
        .where(SignalOutcome.rules == UNFOLLOWED_RULES)
    ).scalar_one()
    if unfollowed is not None:
        ready = min(ready, unfollowed - dt.timedelta(days=1))
    following = session.execute(
        select(func.min(SignalOutcome.evaluated_through)).where(
            SignalOutcome.state.in_(("pending", "open")),
            SignalOutcome.rules != UNFOLLOWED_RULES,
        )
    ).scalar_one()
    if following is not None:
        ready = min(ready, following)
    return ready

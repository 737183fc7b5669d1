"""Reads and writes of the crypto signals, paper orders and books (issue 23)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, exists, select
from sqlalchemy.orm import Session

from db.models import CryptoBook, CryptoOrder, CryptoSignal, Instrument, IntradayCandle
from db.store import insert_for


def insert_signal(session: Session, row: Mapping[str, Any]) -> int | None:
    """Store a signal once per (instrument, strategy, hour); the new row's id, or ``None``
    when that hour's signal was stored before (a retry, a second beat: nothing changes)."""
    table = cast(Table, CryptoSignal.__table__)
    stmt = (
        insert_for(session, table)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["instrument_id", "strategy", "at"])
        .returning(table.c.id)
    )
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else int(found)


def signal_at(
    session: Session, instrument_id: int, strategy: str, at: dt.datetime
) -> CryptoSignal | None:
    """The stored signal of ``instrument_id`` and ``strategy`` at ``at``, if any."""
    return session.execute(
        select(CryptoSignal).where(
            CryptoSignal.instrument_id == instrument_id,
            CryptoSignal.strategy == strategy,
            CryptoSignal.at == at,
        )
    ).scalar_one_or_none()


def unfollowed_signals(session: Session, before: dt.datetime) -> list[CryptoSignal]:
    """Signals still followed (``followed_at`` NULL) decided before ``before``, oldest
    first."""
    return list(
        session.execute(
            select(CryptoSignal)
            .where(CryptoSignal.followed_at.is_(None), CryptoSignal.at < before)
            .order_by(CryptoSignal.at, CryptoSignal.id)
        ).scalars()
    )


def hourly_closes(
    session: Session, instrument_id: int, after: dt.datetime, until: dt.datetime
) -> tuple[list[dt.datetime], list[float]]:
    """(end times, closes) of the stored 60m bars of ``instrument_id`` starting in
    ``[after, until)`` — those ending in ``(after, until]`` when both are on the hour —,
    oldest first (a bar's end is its start + 1 hour; UTC)."""
    hour = dt.timedelta(hours=1)
    rows = session.execute(
        select(IntradayCandle.ts, IntradayCandle.close)
        .where(
            IntradayCandle.instrument_id == instrument_id,
            IntradayCandle.interval == "60m",
            IntradayCandle.ts >= after,
            IntradayCandle.ts < until,
        )
        .order_by(IntradayCandle.ts)
    ).all()
    return [_utc(ts) + hour for ts, _ in rows], [float(c) for _, c in rows]


def first_bar_from(
    session: Session, instrument_id: int, start: dt.datetime, within: dt.timedelta
) -> tuple[dt.datetime, float] | None:
    """(start, open) of the first stored 60m bar of ``instrument_id`` starting at or after
    ``start`` and before ``start + within``, or ``None``."""
    row = session.execute(
        select(IntradayCandle.ts, IntradayCandle.open)
        .where(
            IntradayCandle.instrument_id == instrument_id,
            IntradayCandle.interval == "60m",
            IntradayCandle.ts >= start,
            IntradayCandle.ts < start + within,
        )
        .order_by(IntradayCandle.ts)
        .limit(1)
    ).first()
    return None if row is None else (_utc(row[0]), float(row[1]))


def last_close(session: Session, instrument_id: int, until: dt.datetime) -> float | None:
    """The close of the last stored 60m bar of ``instrument_id`` ending at or before
    ``until``."""
    found = session.execute(
        select(IntradayCandle.close)
        .where(
            IntradayCandle.instrument_id == instrument_id,
            IntradayCandle.interval == "60m",
            IntradayCandle.ts <= until - dt.timedelta(hours=1),
        )
        .order_by(IntradayCandle.ts.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else float(found)


def signals_without_order(
    session: Session, portfolio: str, until: dt.datetime, actions: Sequence[str]
) -> list[tuple[CryptoSignal, str]]:
    """(signal, market) of the signals with an ``actions`` action decided at or before
    ``until`` that ``portfolio`` has no order for, oldest first."""
    has_order = exists().where(
        and_(CryptoOrder.signal_id == CryptoSignal.id, CryptoOrder.portfolio == portfolio)
    )
    rows = session.execute(
        select(CryptoSignal, Instrument.ticker)
        .join(Instrument, Instrument.id == CryptoSignal.instrument_id)
        .where(CryptoSignal.action.in_(list(actions)), CryptoSignal.at <= until, ~has_order)
        .order_by(CryptoSignal.at, CryptoSignal.id)
    ).all()
    return [(s, str(t)) for s, t in rows]


def orders(session: Session, portfolio: str, state: str | None = None) -> list[CryptoOrder]:
    """``portfolio``'s orders (of ``state`` when given), in the order they were placed."""
    stmt = select(CryptoOrder).where(CryptoOrder.portfolio == portfolio)
    if state is not None:
        stmt = stmt.where(CryptoOrder.state == state)
    return list(session.execute(stmt.order_by(CryptoOrder.requested_at, CryptoOrder.id)).scalars())


def filled_orders(session: Session, portfolio: str) -> list[tuple[CryptoOrder, str]]:
    """(order, market) of ``portfolio``'s filled orders in fill order (the ledger)."""
    rows = session.execute(
        select(CryptoOrder, Instrument.ticker)
        .join(Instrument, Instrument.id == CryptoOrder.instrument_id)
        .where(CryptoOrder.portfolio == portfolio, CryptoOrder.state == "filled")
        .order_by(CryptoOrder.filled_at, CryptoOrder.id)
    ).all()
    return [(o, str(t)) for o, t in rows]


def book(session: Session, portfolio: str, *, lock: bool = False) -> CryptoBook | None:
    """``portfolio``'s stored book (``lock``: row-locked until the transaction ends, so two
    syncs of one portfolio run one after the other)."""
    stmt = select(CryptoBook).where(CryptoBook.portfolio == portfolio)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def ensure_book(session: Session, portfolio: str, capital: float) -> None:
    """Create ``portfolio``'s book with ``capital`` KRW in cash if it has none."""
    table = cast(Table, CryptoBook.__table__)
    session.execute(
        insert_for(session, table)
        .values(
            portfolio=portfolio,
            capital=capital,
            cash=capital,
            fees=0.0,
            realized=0.0,
            equity=capital,
            positions={},
            drift=[],
        )
        .on_conflict_do_nothing(index_elements=["portfolio"])
    )


def _utc(value: dt.datetime) -> dt.datetime:
    """``value`` as aware UTC (SQLite returns naive UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

"""Reads and writes of the signal-history backfill (:mod:`quantbeat.services.signal_history`):
which days and instruments already hold a signal, the gate colour of each day, and a bulk
insert that never touches an existing row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import DailyCandle, Instrument, MarketGateRow, Signal
from db.store import insert_for

#: Rows per INSERT statement (13 columns: well inside SQLite's bound-parameter limit).
INSERT_CHUNK = 500


def candle_range(session: Session, markets: Sequence[str]) -> tuple[dt.date, dt.date] | None:
    """The first and last stored daily-bar dates of ``markets`` (``None``: no bar)."""
    low, high = session.execute(
        select(func.min(DailyCandle.trade_date), func.max(DailyCandle.trade_date))
        .join(Instrument, Instrument.id == DailyCandle.instrument_id)
        .where(Instrument.market.in_(list(markets)))
    ).one()
    return None if low is None else (low, high)


def existing_signals(
    session: Session, strategy: str, phase: str, start: dt.date, end: dt.date
) -> tuple[set[dt.date], set[tuple[dt.date, int]]]:
    """``(days, keys)`` of ``strategy``'s ``phase`` signals from ``start`` to ``end``:
    ``days`` holding a signal of a source other than ``backfill`` (a scanned day), and every
    stored ``(trade_date, instrument_id)``."""
    rows = session.execute(
        select(Signal.trade_date, Signal.instrument_id, Signal.source).where(
            Signal.strategy == strategy,
            Signal.phase == phase,
            Signal.trade_date >= start,
            Signal.trade_date <= end,
        )
    ).all()
    scanned = {d for d, _, source in rows if source != "backfill"}
    return scanned, {(d, int(i)) for d, i, _ in rows}


def gate_colors(session: Session, start: dt.date, end: dt.date) -> dict[dt.date, str]:
    """The colour of each session's latest stored Market Gate from ``start`` to ``end``."""
    rows = session.execute(
        select(MarketGateRow.trade_date, MarketGateRow.color)
        .where(MarketGateRow.trade_date >= start, MarketGateRow.trade_date <= end)
        .order_by(MarketGateRow.trade_date, MarketGateRow.as_of)
    ).all()
    return {d: str(c) for d, c in rows}  # the latest as_of of a day comes last


def insert_new_signals(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (full ``signals`` rows) in chunks; a row whose ``(trade_date,
    strategy, phase, instrument_id)`` is stored already is left as it is. Returns the rows
    inserted."""
    table = Signal.__table__
    inserted = 0
    for at in range(0, len(rows), INSERT_CHUNK):
        part = list(rows[at : at + INSERT_CHUNK])
        stmt = (
            insert_for(session, table)  # type: ignore[arg-type]
            .on_conflict_do_nothing(
                index_elements=["trade_date", "strategy", "phase", "instrument_id"]
            )
            .returning(Signal.id)
        )
        inserted += len(session.execute(stmt, part).all())
    return inserted

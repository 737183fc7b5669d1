"""The checks of the outcome birth rows (migration 0021) on a migrated database at a URL,
shared by the SQLite unit test and the PostgreSQL integration test: every way a signal is
inserted gives it one unfollowed outcome row, an upsert that updates a signal leaves its
outcome alone, and the migration backfills signals stored before it."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update

from db import migrate
from db.engine import session_scope
from db.models import UNFOLLOWED_RULES, Instrument, Signal, SignalOutcome
from db.store import upsert_rows

DAY = dt.date(2026, 12, 4)
_COMPARE = ("score", "grade", "entry_price", "status", "reasons", "inputs", "source")


def _signal(instrument_id: int, score: float, strategy: str = "vcp") -> dict[str, Any]:
    return {
        "trade_date": DAY,
        "strategy": strategy,
        "phase": "final",
        "instrument_id": instrument_id,
        "score": score,
        "grade": "Good",
        "entry_price": 1000.0,
        "status": "breakout",
        "reasons": ["SIMULATED"],
        "inputs": {},
        "source": "simulated",
    }


def outcomes() -> dict[int, tuple[str, str, Any]]:
    """Every outcome row: ``{signal_id: (rules, state, evaluated_through)}``."""
    with session_scope() as session:
        rows = session.execute(
            select(
                SignalOutcome.signal_id,
                SignalOutcome.rules,
                SignalOutcome.state,
                SignalOutcome.evaluated_through,
            )
        )
        return {int(i): (r, s, e) for i, r, s, e in rows}


def signal_ids() -> set[int]:
    with session_scope() as session:
        return {int(i) for i in session.execute(select(Signal.id)).scalars()}


def add_instruments(n: int) -> list[int]:
    with session_scope() as session:
        for k in range(n):
            session.add(
                Instrument(
                    market="KOSPI",
                    ticker=f"{900000 + k}",
                    name=f"SIMULATED {k}",
                    currency="KRW",
                    listing_status="listed",
                    source="simulated",
                )
            )
        session.flush()
        return [int(i) for i in session.execute(select(Instrument.id)).scalars()]


def check_upsert_and_orm_inserts(instruments: list[int]) -> None:
    """Upserted and ORM-inserted signals are born with one unfollowed row each; an upsert
    that changes a signal keeps its (followed) outcome as it is."""
    table = cast(Table, Signal.__table__)
    key = ("trade_date", "strategy", "phase", "instrument_id")
    with session_scope() as session:
        counts = upsert_rows(
            session, table, [_signal(i, 50.0) for i in instruments[:3]], key=key, compare=_COMPARE
        )
    assert counts.inserted == 3
    with session_scope() as session:
        session.add(Signal(**_signal(instruments[3], 40.0, strategy="closing_bet")))
    born = outcomes()
    assert set(born) == signal_ids()
    assert set(born.values()) == {(UNFOLLOWED_RULES, "pending", None)}
    # followed, then the signal is upserted again with a new score: its outcome stays
    first = min(born)
    with session_scope() as session:
        session.execute(
            update(SignalOutcome)
            .where(SignalOutcome.signal_id == first)
            .values(rules="vcp-v1.test", state="open", evaluated_through=DAY)
        )
        counts = upsert_rows(
            session, table, [_signal(i, 60.0) for i in instruments[:3]], key=key, compare=_COMPARE
        )
    assert counts.updated == 3
    assert outcomes()[first] == ("vcp-v1.test", "open", DAY)
    assert len(outcomes()) == len(signal_ids())


def check_backfill(url: str, instruments: list[int]) -> None:
    """Signals stored before migration 0021 get their row from it; a downgrade removes only
    the unfollowed rows."""
    migrate.downgrade(url, "0020")
    with session_scope() as session:
        before = session.execute(select(func.count()).select_from(SignalOutcome)).scalar_one()
        session.execute(insert(Signal), [_signal(i, 10.0, strategy="legacy") for i in instruments])
    with session_scope() as session:
        unchanged = session.execute(select(func.count()).select_from(SignalOutcome)).scalar_one()
    assert unchanged == before  # no trigger before 0021
    migrate.upgrade(url)
    assert set(outcomes()) == signal_ids()
    with session_scope() as session:
        session.execute(text("DELETE FROM signals WHERE strategy = 'legacy'"))
    assert set(outcomes()) == signal_ids()  # cascade

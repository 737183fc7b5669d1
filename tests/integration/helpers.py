"""Queries the integration tests use to look at what workers stored."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select, text

from db.engine import session_scope
from db.models import BacktestEquity, BacktestRun, BacktestTrade, DeadLetter, JobRun

T = TypeVar("T")


def job_run(task_id: str) -> JobRun:
    with session_scope() as session:
        row = session.execute(select(JobRun).where(JobRun.task_id == task_id)).scalar_one()
        session.expunge(row)
        return row


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll ``read()`` until ``done(value)`` or ``timeout`` seconds; return the last value."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def dead_letter(task_id: str) -> DeadLetter | None:
    with session_scope() as session:
        row = session.execute(
            select(DeadLetter).where(DeadLetter.task_id == task_id)
        ).scalar_one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def candle_snapshot(trade_date: str) -> list[tuple[Any, ...]]:
    """(id, xmin, updated_at, close) of every candle of a day: xmin changes iff PostgreSQL
    rewrote the row, so an unchanged snapshot proves a re-run wrote nothing."""
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT id, xmin::text, updated_at, close FROM daily_candles "
                "WHERE trade_date = :d ORDER BY id"
            ),
            {"d": trade_date},
        )
        return [tuple(r) for r in rows]


def small_kospi_history(
    database: str, start: str, end: str, *, universe_size: int = 40
) -> list[str]:
    """Empty every table, then collect simulated KOSPI candles for ``[start, end]`` from a
    ``universe_size``-instrument simulated universe (its KOSPI part); returns their names."""
    import datetime as dt
    import os

    from db.candles import universe
    from db.engine import get_engine
    from db.models import Base
    from quantbeat.infra.settings import reset_settings
    from tasks.collect import daily_range

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    saved = os.environ.get("QUANTBEAT_SIM_UNIVERSE_SIZE")
    os.environ["QUANTBEAT_SIM_UNIVERSE_SIZE"] = str(universe_size)
    reset_settings()
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        while first <= last:  # daily_range takes at most a few months at a time
            stop = min(first + dt.timedelta(days=60), last)
            daily_range(first.isoformat(), stop.isoformat(), market="KOSPI")
            first = stop + dt.timedelta(days=1)
    finally:
        if saved is None:
            os.environ.pop("QUANTBEAT_SIM_UNIVERSE_SIZE", None)
        else:
            os.environ["QUANTBEAT_SIM_UNIVERSE_SIZE"] = saved
        reset_settings()
    with session_scope() as session:
        return [name for _, name in universe(session, ["KOSPI"])]


def backtest_row(run_id: str) -> BacktestRun:
    """The backtest run's row, detached from its session."""
    with session_scope() as session:
        run = session.get(BacktestRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def backtest_rows_stored(run_id: str) -> tuple[int, int]:
    """(trade rows, equity rows) stored for the backtest run."""
    with session_scope() as session:
        trades = session.execute(
            select(func.count()).where(BacktestTrade.run_id == run_id)
        ).scalar_one()
        days = session.execute(
            select(func.count()).where(BacktestEquity.run_id == run_id)
        ).scalar_one()
        return int(trades), int(days)


def sessions_since(start: str) -> int:
    """Distinct trade dates stored from ``start`` (ISO date) on."""
    with session_scope() as session:
        return int(
            session.execute(
                text("SELECT count(DISTINCT trade_date) FROM daily_candles WHERE trade_date >= :d"),
                {"d": dt.date.fromisoformat(start)},
            ).scalar_one()
        )

"""Backtest runs in PostgreSQL: create, claim, finish, cancel, and store a result once.

The run row is the authority on a run's outcome; Redis only mirrors live progress. Claiming
bumps ``attempts`` and only the latest attempt may store a result, inside one transaction
that also flips the state to ``completed``: a redelivered run (its first worker was killed)
therefore stores exactly one result, and a finished run is never run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from db.models import BacktestEquity, BacktestRun, BacktestTrade
from db.store import as_utc, insert_for
from quant.errors import NotFound

#: States after which a run never changes again.
FINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})
STATES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled", "timed_out")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_run(
    session: Session,
    run_id: str,
    *,
    strategy: str,
    spec: Mapping[str, Any],
    total: int,
    origin: str = "api",
) -> bool:
    """Record a new run as ``queued``; returns ``False`` (and changes nothing) when a run
    ``run_id`` exists already — a business key such as the nightly run of a strategy and day
    is recorded once however often it is submitted."""
    stmt = insert_for(session, BacktestRun.__table__).values(  # type: ignore[arg-type]
        id=run_id,
        strategy=strategy,
        spec=dict(spec),
        origin=origin,
        state="queued",
        attempts=0,
        cancel_requested=False,
        done=0,
        total=total,
        submitted_at=_now(),
    )
    table = BacktestRun.__table__
    inserted = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
    ).scalar_one_or_none()
    return inserted is not None


def get_run(session: Session, run_id: str) -> BacktestRun:
    """The run ``run_id``.

    Raises:
        quant.errors.NotFound: no such run.
    """
    run = session.get(BacktestRun, run_id)
    if run is None:
        raise NotFound(f"no backtest run {run_id!r}")
    return run


def list_runs(
    session: Session,
    *,
    limit: int = 20,
    state: str | None = None,
    strategy: str | None = None,
) -> list[BacktestRun]:
    """The newest runs first, optionally of one state or strategy."""
    query = select(BacktestRun).order_by(BacktestRun.submitted_at.desc()).limit(limit)
    if state is not None:
        query = query.where(BacktestRun.state == state)
    if strategy is not None:
        query = query.where(BacktestRun.strategy == strategy)
    return list(session.execute(query).scalars())


def claim(session: Session, run_id: str) -> tuple[int, bool] | None:
    """Start (or take over, after a lost worker) a run: ``(attempt, cancel_requested)``, or
    ``None`` when the run is already finished (nothing to do) or does not exist."""
    row = session.execute(
        select(BacktestRun).where(BacktestRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.state in FINAL_STATES:
        return None
    row.attempts += 1
    row.state = "running"
    row.started_at = _now()
    row.error = None
    session.flush()
    return int(row.attempts), bool(row.cancel_requested)


def finish(
    session: Session,
    run_id: str,
    *,
    state: str,
    attempt: int | None = None,
    error: str | None = None,
    done: int | None = None,
) -> bool:
    """Move an unfinished run to a final ``state`` (not ``completed``: see
    :func:`store_result`). With ``attempt``, only if that attempt still owns the run.
    Returns whether the row changed."""
    if state not in FINAL_STATES or state == "completed":
        raise ValueError(f"finish() takes failed/cancelled/timed_out, got {state!r}")
    now = _now()
    values: dict[str, Any] = {"state": state, "finished_at": now, "error": error}
    if done is not None:
        values["done"] = done
    query = (
        update(BacktestRun)
        .where(BacktestRun.id == run_id, BacktestRun.state.not_in(list(FINAL_STATES)))
        .values(**values)
    )
    if attempt is not None:
        query = query.where(BacktestRun.attempts == attempt)
    changed = session.execute(query).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def requeue(session: Session, run_id: str, *, note: str) -> bool:
    """Put a ``running`` run back to ``queued`` (its worker died and its message was sent
    again; the next attempt claims it), with ``note`` in ``error`` until then. A run in any
    other state is left alone. Returns whether the row changed."""
    changed = session.execute(
        update(BacktestRun)
        .where(BacktestRun.id == run_id, BacktestRun.state == "running")
        .values(state="queued", error=note)
    ).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def request_cancel(session: Session, run_id: str) -> str:
    """Ask a run to stop: a queued run is cancelled at once; a running one is flagged (its
    worker checks between instruments). Returns the run's state after the call.

    Raises:
        quant.errors.NotFound: no such run.
    """
    run = session.execute(
        select(BacktestRun).where(BacktestRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if run is None:
        raise NotFound(f"no backtest run {run_id!r}")
    if run.state in FINAL_STATES:
        return run.state
    run.cancel_requested = True
    if run.state == "queued":
        run.state = "cancelled"
        run.finished_at = _now()
        run.error = "cancelled before it started"
    session.flush()
    return run.state


def set_progress(session: Session, run_id: str, done: int, total: int) -> None:
    """Record the last known progress (instruments) on the row."""
    session.execute(
        update(BacktestRun).where(BacktestRun.id == run_id).values(done=done, total=total)
    )


def store_result(
    session: Session,
    run_id: str,
    *,
    attempt: int,
    metrics: Mapping[str, Any],
    summary: Mapping[str, Any],
    trades: Sequence[Mapping[str, Any]],
    equity: Sequence[tuple[dt.date, float, int]],
    data_version: str | None,
    total: int,
) -> bool:
    """Store a run's result and mark it ``completed``, in the caller's transaction, if
    ``attempt`` still owns the unfinished run (row locked). Returns False (nothing written)
    when the run was finished, cancelled or taken over meanwhile."""
    run = session.execute(
        select(BacktestRun).where(BacktestRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if run is None or run.state in FINAL_STATES or run.attempts != attempt:
        return False
    if run.cancel_requested:
        return False
    session.execute(delete(BacktestTrade).where(BacktestTrade.run_id == run_id))
    session.execute(delete(BacktestEquity).where(BacktestEquity.run_id == run_id))
    if trades:
        session.execute(
            insert(BacktestTrade),
            [
                {
                    "run_id": run_id,
                    "seq": i,
                    "symbol": t["symbol"],
                    "entry_date": dt.date.fromisoformat(t["entry_time"]),
                    "exit_date": (
                        dt.date.fromisoformat(t["exit_time"]) if t["exit_time"] else None
                    ),
                    "entry_price": t["entry_price"],
                    "exit_price": t["exit_price"],
                    "quantity": t["quantity"],
                    "fees": t["fees"],
                    "pnl": t["pnl"],
                    "return_pct": t["return_pct"] if t["return_pct"] == t["return_pct"] else None,
                    "exit_reason": t["exit_reason"],
                }
                for i, t in enumerate(trades)
            ],
        )
    if equity:
        session.execute(
            insert(BacktestEquity),
            [
                {"run_id": run_id, "day": day, "equity": value, "positions": positions}
                for day, value, positions in equity
            ],
        )
    now = _now()
    run.state = "completed"
    run.metrics = dict(metrics)
    run.summary = dict(summary)
    run.data_version = data_version
    run.finished_at = now
    run.done = total
    run.total = total
    if run.started_at is not None:
        run.duration_ms = (now - as_utc(run.started_at)).total_seconds() * 1000.0
    session.flush()
    return True


def load_trades(session: Session, run_id: str) -> list[dict[str, Any]]:
    """A run's trade rows in order, JSON-friendly (dates ISO)."""
    rows = session.execute(
        select(BacktestTrade).where(BacktestTrade.run_id == run_id).order_by(BacktestTrade.seq)
    ).scalars()
    return [
        {
            "symbol": r.symbol,
            "entry_time": r.entry_date.isoformat(),
            "exit_time": r.exit_date.isoformat() if r.exit_date else None,
            "entry_price": r.entry_price,
            "exit_price": r.exit_price,
            "quantity": r.quantity,
            "fees": r.fees,
            "pnl": r.pnl,
            "return_pct": r.return_pct,
            "exit_reason": r.exit_reason,
        }
        for r in rows
    ]


def load_equity(session: Session, run_id: str) -> list[tuple[dt.date, float, int]]:
    """A run's equity curve ``(day, equity, positions)``, oldest first."""
    rows = session.execute(
        select(BacktestEquity.day, BacktestEquity.equity, BacktestEquity.positions)
        .where(BacktestEquity.run_id == run_id)
        .order_by(BacktestEquity.day)
    ).all()
    return [(_as_date(d), float(e), int(p)) for d, e, p in rows]


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def latest_completed(session: Session, strategy: str, *, origin: str) -> BacktestRun | None:
    """The newest completed run of backtest ``strategy`` started by ``origin`` (``beat``:
    the nightly walk-forward)."""
    return session.execute(
        select(BacktestRun)
        .where(
            BacktestRun.strategy == strategy,
            BacktestRun.origin == origin,
            BacktestRun.state == "completed",
        )
        .order_by(BacktestRun.submitted_at.desc())
        .limit(1)
    ).scalar_one_or_none()

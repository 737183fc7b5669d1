"""Worker heartbeats: the writes of :mod:`workers.heartbeat` and the reads of the reaper.

Each call runs in the caller's session; callers commit. ``seen_at`` is the database's clock
(one clock for every host, so a skewed worker clock cannot make a live worker look dead);
``started_at`` is the worker's own clock, the one its job runs' ``started_at`` use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from db.models import JobRun, WorkerHeartbeat
from db.store import as_utc, insert_for, storable


def database_now(session: Session) -> dt.datetime:
    """The database's current time (aware, UTC). SQLite answers a naive UTC string."""
    value = session.execute(select(func.current_timestamp())).scalar_one()
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the database's clock answered {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def beat(
    session: Session,
    *,
    worker: str,
    host: str,
    pid: int,
    incarnation: str,
    pool: str | None,
    queues: Sequence[str],
    started_at: dt.datetime,
) -> None:
    """Record that ``worker`` (this incarnation: ``incarnation``, ``pid``, ``started_at``) is
    alive now (``seen_at`` = the database's clock); clears ``stopped_at``. The row's
    ``started_at`` is replaced only by another incarnation."""
    table = WorkerHeartbeat.__table__
    values = {
        "worker": storable(worker),
        "host": storable(host),
        "pid": pid,
        "incarnation": incarnation,
        "pool": pool,
        "queues": storable(list(queues)),
        "started_at": started_at,
        "seen_at": database_now(session),
        "stopped_at": None,
    }
    stmt = insert_for(session, table).values(**values)  # type: ignore[arg-type]
    same = table.c.incarnation == stmt.excluded.incarnation
    updates: dict[str, Any] = {k: stmt.excluded[k] for k in values if k != "worker"}
    updates["started_at"] = case((same, table.c.started_at), else_=stmt.excluded.started_at)
    stmt = stmt.on_conflict_do_update(index_elements=["worker"], set_=updates)
    session.execute(stmt)


def mark_stopped(session: Session, *, worker: str, incarnation: str) -> bool:
    """Record that ``worker`` (the incarnation ``incarnation``) stopped cleanly; returns whether
    its row was changed (``False``: another incarnation took the name over)."""
    now = database_now(session)
    result = session.execute(
        update(WorkerHeartbeat)
        .where(
            WorkerHeartbeat.worker == storable(worker),
            WorkerHeartbeat.incarnation == incarnation,
        )
        .values(stopped_at=now, seen_at=now)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


@dataclass(frozen=True)
class DeadWorker:
    """A worker whose job runs cannot be running: why, and when it was seen last."""

    worker: str
    host: str
    pid: int
    seen_at: dt.datetime
    reason: str


def dead_reason(
    *,
    seen_at: dt.datetime,
    stopped_at: dt.datetime | None,
    worker_started_at: dt.datetime,
    run_started_at: dt.datetime,
    now: dt.datetime,
    dead_after: float,
) -> str | None:
    """Why a run started at ``run_started_at`` on a worker with this heartbeat cannot be
    running any more, or ``None`` when its worker may still be running it. All instants aware.

    * the worker stopped cleanly (a warm shutdown finishes its tasks first);
    * its last heartbeat is more than ``dead_after`` seconds old;
    * the worker restarted after the run started (a new incarnation under the same name).
    """
    if stopped_at is not None:
        return f"stopped at {stopped_at.isoformat(timespec='seconds')}"
    age = (now - seen_at).total_seconds()
    if age > dead_after:
        return f"no heartbeat for {age:.0f} s (dead after {dead_after:g} s)"
    if worker_started_at > run_started_at:
        return (
            f"restarted at {worker_started_at.isoformat(timespec='seconds')} after the run started"
        )
    return None


@dataclass(frozen=True)
class OrphanedRun:
    """A job run left ``started`` on a dead worker."""

    task_id: str
    task_name: str
    worker: str
    attempts: int
    args: object
    kwargs: object
    reason: str


def runs_on_dead_workers(
    session: Session, *, dead_after: float, now: dt.datetime | None = None
) -> list[OrphanedRun]:
    """The job runs ``started`` on a worker that has a heartbeat row and is dead by
    :func:`dead_reason` (``now``: default the database's clock). A run whose worker never
    wrote a heartbeat (heartbeats disabled, an older worker) is not listed: the reaper's
    inspect-and-grace pass decides about it."""
    now = now or database_now(session)
    rows = session.execute(
        select(
            JobRun.task_id,
            JobRun.task_name,
            JobRun.worker,
            JobRun.attempts,
            JobRun.args,
            JobRun.kwargs,
            JobRun.started_at,
            WorkerHeartbeat.seen_at,
            WorkerHeartbeat.stopped_at,
            WorkerHeartbeat.started_at,
        )
        .join(WorkerHeartbeat, WorkerHeartbeat.worker == JobRun.worker)
        .where(JobRun.state == "started")
        .order_by(JobRun.started_at)
    ).all()
    found: list[OrphanedRun] = []
    for row in rows:
        reason = dead_reason(
            seen_at=as_utc(row.seen_at),
            stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at),
            worker_started_at=as_utc(row[9]),
            run_started_at=as_utc(row[6]),
            now=now,
            dead_after=dead_after,
        )
        if reason is not None:
            found.append(
                OrphanedRun(
                    task_id=row.task_id,
                    task_name=row.task_name,
                    worker=row.worker,
                    attempts=int(row.attempts),
                    args=row.args,
                    kwargs=row.kwargs,
                    reason=f"worker {row.worker} is dead: {reason}",
                )
            )
    return found


def worker_dead_reason(
    session: Session,
    worker: str | None,
    run_started_at: dt.datetime,
    *,
    dead_after: float,
) -> str | None:
    """Why the run started at ``run_started_at`` on ``worker`` cannot be running (see
    :func:`dead_reason`), or ``None`` when it may be (or ``worker`` has no heartbeat row)."""
    if worker is None:
        return None
    row = session.get(WorkerHeartbeat, storable(worker))
    if row is None:
        return None
    reason = dead_reason(
        seen_at=as_utc(row.seen_at),
        stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at),
        worker_started_at=as_utc(row.started_at),
        run_started_at=as_utc(run_started_at),
        now=database_now(session),
        dead_after=dead_after,
    )
    return None if reason is None else f"worker {worker} is dead: {reason}"


def list_heartbeats(session: Session) -> list[WorkerHeartbeat]:
    """Every worker's heartbeat row, most recently seen first."""
    return list(
        session.execute(select(WorkerHeartbeat).order_by(WorkerHeartbeat.seen_at.desc())).scalars()
    )


def prune_heartbeats(session: Session, *, before: dt.datetime) -> int:
    """Delete the heartbeat rows of workers last seen before ``before`` (long gone: their
    runs were given up since); returns how many."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < before))
    return int(getattr(result, "rowcount", 0) or 0)

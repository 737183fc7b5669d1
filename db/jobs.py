"""Job history and dead letters: the writes the base task class makes around every execution.

Each call runs in the caller's session; callers commit. Arguments and payloads must already be
masked (see :mod:`quantbeat.masking`); these functions store what they are given.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import DeadLetter, JobRun
from db.store import insert_for


def record_job_start(
    session: Session,
    *,
    task_id: str,
    task_name: str,
    queue: str | None,
    args: Any,
    kwargs: Any,
    worker: str | None,
    retries: int,
    started_at: dt.datetime,
) -> int:
    """Record that an execution of ``task_id`` started; return its attempt number (1-based).

    The first execution inserts the row; every later one (a retry or a redelivery after a lost
    worker) increments ``attempts`` atomically in the database, so concurrent redeliveries on
    different hosts still count correctly.
    """
    table = JobRun.__table__
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        task_id=task_id,
        task_name=task_name,
        queue=queue,
        args=args,
        kwargs=kwargs,
        state="started",
        attempts=1,
        retries=retries,
        worker=worker,
        started_at=started_at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["task_id"],
        set_={
            "attempts": table.c.attempts + 1,
            "retries": stmt.excluded.retries,
            "state": "started",
            "worker": stmt.excluded.worker,
            "started_at": stmt.excluded.started_at,
            "finished_at": None,
            "duration_ms": None,
            "updated_at": func.now(),
        },
    ).returning(table.c.attempts)
    attempts: int = session.execute(stmt).scalar_one()
    return attempts


def record_job_end(
    session: Session,
    *,
    task_id: str,
    state: str,
    finished_at: dt.datetime,
    duration_ms: float | None,
    error: str | None = None,
    result: Any = None,
) -> None:
    """Record how the latest execution of ``task_id`` ended (``state`` from JOB_STATES).

    ``duration_ms`` ``None`` (the execution's own clock is gone, e.g. its process was killed)
    leaves the duration unknown."""
    session.execute(
        update(JobRun)
        .where(JobRun.task_id == task_id)
        .values(
            state=state,
            finished_at=finished_at,
            duration_ms=duration_ms,
            error=error,
            result=result,
            updated_at=func.now(),
        )
    )


def record_dead_letter(
    session: Session,
    *,
    fingerprint: str,
    task_id: str | None,
    task_name: str | None,
    payload: Any,
    reason: str,
    error: str | None,
    seen_at: dt.datetime,
) -> int:
    """Insert a dead letter, or count another occurrence of the same one; return its id."""
    table = DeadLetter.__table__
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        fingerprint=fingerprint,
        task_id=task_id,
        task_name=task_name,
        payload=payload,
        reason=reason,
        error=error,
        occurrences=1,
        first_seen=seen_at,
        last_seen=seen_at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={
            "occurrences": table.c.occurrences + 1,
            "last_seen": stmt.excluded.last_seen,
            "reason": stmt.excluded.reason,
            "error": stmt.excluded.error,
            "payload": stmt.excluded.payload,
            "updated_at": func.now(),
        },
    ).returning(table.c.id)
    ident: int = session.execute(stmt).scalar_one()
    return ident


def get_job_run(session: Session, task_id: str) -> JobRun | None:
    """The job-run row of ``task_id``, if any."""
    return session.execute(select(JobRun).where(JobRun.task_id == task_id)).scalar_one_or_none()

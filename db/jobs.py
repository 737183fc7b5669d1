"""Job history and dead letters: the writes the base task class makes around every execution,
and the reads and operator actions behind ``quantbeat jobs`` and ``quantbeat dlq``.

Each call runs in the caller's session; callers commit. Arguments and payloads must already be
masked (see :mod:`quantbeat.infra.masking`); these functions store what they are given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import DeadLetter, JobRun
from db.store import insert_for
from quant.errors import ValidationError


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


def job_state(session: Session, task_id: str) -> str | None:
    """The recorded state of ``task_id``, or ``None`` when it has no job run yet."""
    state: str | None = session.execute(
        select(JobRun.state).where(JobRun.task_id == task_id)
    ).scalar_one_or_none()
    return state


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


# --- reads and operator actions (``quantbeat jobs`` / ``quantbeat dlq``) ------------------------
def glob_to_like(pattern: str) -> str:
    """A shell-style glob (``*`` any run, ``?`` one character) as a SQL ``LIKE`` pattern with
    ``\\`` as the escape character; ``%`` and ``_`` in the glob match themselves."""
    out = []
    for char in pattern:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def _name_filter(column: Any, patterns: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(column.like(glob_to_like(p), escape="\\") for p in patterns))


def list_job_runs(
    session: Session,
    *,
    states: Sequence[str] | None = None,
    task_patterns: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[JobRun]:
    """Job runs, most recently started first.

    ``states``: only these states; ``task_patterns``: task names matching any of these globs
    (``quantbeat.collect.*``); ``since``: started at or after this instant (timezone-aware);
    ``limit``: at most this many rows.
    """
    stmt = select(JobRun)
    if states:
        stmt = stmt.where(JobRun.state.in_(list(states)))
    if task_patterns:
        stmt = stmt.where(_name_filter(JobRun.task_name, task_patterns))
    if since is not None:
        stmt = stmt.where(JobRun.started_at >= since)
    stmt = stmt.order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def find_job_run(session: Session, ident: str) -> JobRun | None:
    """The job run whose row id (all digits) or Celery task id is ``ident``, if any."""
    if ident.isdigit() and len(ident) < 19:  # fits a BIGINT
        row = session.get(JobRun, int(ident))
        if row is not None:
            return row
    return get_job_run(session, ident)


def list_dead_letters(
    session: Session,
    *,
    reasons: Sequence[str] | None = None,
    task_patterns: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = 50,
) -> list[DeadLetter]:
    """Dead letters, most recently seen first, filtered like :func:`list_job_runs`
    (``since`` applies to ``last_seen``; ``ids`` keeps only these row ids; ``limit`` ``None``:
    all)."""
    stmt = select(DeadLetter)
    if reasons:
        stmt = stmt.where(DeadLetter.reason.in_(list(reasons)))
    if task_patterns:
        stmt = stmt.where(_name_filter(DeadLetter.task_name, task_patterns))
    if since is not None:
        stmt = stmt.where(DeadLetter.last_seen >= since)
    if ids:
        stmt = stmt.where(DeadLetter.id.in_(list(ids)))
    stmt = stmt.order_by(DeadLetter.last_seen.desc(), DeadLetter.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.execute(stmt).scalars())


def get_dead_letter(
    session: Session, letter_id: int, *, for_update: bool = False
) -> DeadLetter | None:
    """The dead letter with row id ``letter_id``, if any (``for_update``: row-locked until the
    transaction ends, so two concurrent replays of it are serialized)."""
    stmt = select(DeadLetter).where(DeadLetter.id == letter_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def mark_replayed(
    session: Session, letter_id: int, *, task_id: str, replayed_at: dt.datetime
) -> None:
    """Record that dead letter ``letter_id`` was re-sent as ``task_id``: its latest replay
    task id and time, and one more in ``replays`` (incremented in the database)."""
    session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == letter_id)
        .values(
            replayed_task_id=task_id,
            replayed_at=replayed_at,
            replays=DeadLetter.replays + 1,
            updated_at=func.now(),
        )
    )


def purge_dead_letters(
    session: Session,
    *,
    older_than: dt.datetime | None = None,
    reasons: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
) -> int:
    """Delete the dead letters matching every given filter (``older_than``: last seen before
    this instant); return how many were deleted.

    Raises:
        quant.errors.ValidationError: no filter was given (deleting everything takes an
            explicit filter, never a default).
    """
    conditions: list[ColumnElement[bool]] = []
    if older_than is not None:
        conditions.append(DeadLetter.last_seen < older_than)
    if reasons:
        conditions.append(DeadLetter.reason.in_(list(reasons)))
    if ids:
        conditions.append(DeadLetter.id.in_(list(ids)))
    if not conditions:
        raise ValidationError("purging dead letters needs a filter (older than, reason or ids)")
    result = session.execute(delete(DeadLetter).where(*conditions))
    return int(getattr(result, "rowcount", 0) or 0)

"""Job history and dead letters: the writes the base task class makes around every execution,
and the reads and operator actions behind ``quantbeat jobs`` and ``quantbeat dlq``.

Each call runs in the caller's session; callers commit. Arguments and payloads must already be
masked (see :mod:`quantbeat.infra.masking`); these functions store what they are given, except
for the characters PostgreSQL cannot store in ``text`` or ``jsonb`` — NUL (``\\u0000``) and
lone UTF-16 surrogates — which every write escapes (:func:`storable`): a NUL in a task's
arguments is stored as the six characters ``\\u0000``, and the start, end and dead letter of that
task are recorded like any other.

Records a worker could not write (the database was down) are kept in the local spool
(:mod:`quantbeat.infra.spool`) and written later by :func:`apply_spooled`, idempotently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select as io_select
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.engine import current_timeouts
from db.events import add_event
from db.models import JOB_STATES, DeadLetter, JobAttempt, JobRun
from db.store import insert_for, storable
from quant.errors import ValidationError
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings


#: Characters PostgreSQL refuses in ``text`` and ``jsonb``: NUL, and UTF-16 surrogates (a lone
#: one cannot be encoded as UTF-8).
def contains_escape(value: Any) -> bool:
    """Whether a stored payload holds a string PostgreSQL could not store as sent (a NUL or a
    lone surrogate, escaped by :func:`db.store.storable`, keys included): resending it would
    send the escape, not the original."""
    if isinstance(value, str):
        return "\\u0000" in value or "\\ud" in value
    if isinstance(value, dict):
        return any(contains_escape(k) or contains_escape(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_escape(v) for v in value)
    return False


def end_if_still_started(
    session: Session,
    *,
    task_id: str,
    attempts: int,
    state: str,
    error: str,
    finished_at: dt.datetime,
) -> bool:
    """End the run of ``task_id`` with ``state`` only if it is still ``started`` on attempt
    ``attempts`` — one conditional UPDATE, so a run that finished (or started again) since it
    was read is left as it is. Returns whether this call ended it.

    The reaper reads orphan candidates, then asks the workers (seconds); a task finishing in
    between must not be requeued or marked lost over its real end.
    """
    result = session.execute(
        update(JobRun)
        .where(
            JobRun.task_id == storable(task_id),
            JobRun.state == "started",
            JobRun.attempts == attempts,
        )
        .values(
            state=state,
            finished_at=finished_at,
            error=storable(error),
            updated_at=func.now(),
        )
    )
    ended = bool(getattr(result, "rowcount", 0) == 1)
    if ended:
        _end_attempt(session, task_id, attempts, state=state, finished_at=finished_at, error=error)
    return ended


def _start_attempt(
    session: Session,
    *,
    task_id: str,
    attempt: int,
    worker: str | None,
    started_at: dt.datetime,
) -> None:
    """Insert the ``started`` row of execution ``attempt`` of ``task_id`` (an attempt already
    recorded — a replayed start — is left as it is)."""
    stmt = insert_for(session, JobAttempt.__table__).values(  # type: ignore[arg-type]
        task_id=storable(task_id),
        attempt=attempt,
        worker=storable(worker),
        state="started",
        started_at=started_at,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["task_id", "attempt"]))


def _end_attempt(
    session: Session,
    task_id: str,
    attempt: int | None,
    *,
    state: str,
    finished_at: dt.datetime,
    error: str | None,
    duration_ms: float | None = None,
    result: Any = None,
    started_at: dt.datetime | None = None,
) -> None:
    """Record how execution ``attempt`` of ``task_id`` ended. ``attempt`` ``None``: the
    execution that started at ``started_at`` if given, else the latest one (the run's
    ``attempts``)."""
    which: ColumnElement[bool]
    if attempt is not None:
        which = JobAttempt.attempt == attempt
    elif started_at is not None:
        which = JobAttempt.started_at == started_at
    else:
        latest = (
            select(JobRun.attempts).where(JobRun.task_id == storable(task_id)).scalar_subquery()
        )
        which = JobAttempt.attempt == latest
    session.execute(
        update(JobAttempt)
        .where(JobAttempt.task_id == storable(task_id), which)
        .values(
            state=state,
            finished_at=finished_at,
            duration_ms=duration_ms,
            error=storable(error),
            result=storable(result),
        )
    )


def list_attempts(session: Session, task_id: str) -> list[JobAttempt]:
    """Every recorded execution of ``task_id``, first attempt first."""
    return list(
        session.execute(
            select(JobAttempt)
            .where(JobAttempt.task_id == storable(task_id))
            .order_by(JobAttempt.attempt)
        ).scalars()
    )


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
    different hosts still count correctly. Strings are escaped with :func:`storable`.
    """
    table = JobRun.__table__
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        task_id=storable(task_id),
        task_name=storable(task_name),
        queue=storable(queue),
        args=storable(args),
        kwargs=storable(kwargs),
        state="started",
        attempts=1,
        retries=retries,
        worker=storable(worker),
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
    _start_attempt(session, task_id=task_id, attempt=attempts, worker=worker, started_at=started_at)
    return attempts


def job_state(session: Session, task_id: str) -> str | None:
    """The recorded state of ``task_id``, or ``None`` when it has no job run yet."""
    state: str | None = session.execute(
        select(JobRun.state).where(JobRun.task_id == storable(task_id))
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
    attempt: int | None = None,
) -> None:
    """Record how the latest execution of ``task_id`` ended (``state`` from JOB_STATES), in
    the run and in its attempts history (``attempt``: the execution's number, as
    :func:`record_job_start` returned it; ``None``: the latest).

    ``duration_ms`` ``None`` (the execution's own clock is gone, e.g. its process was killed)
    leaves the duration unknown. Strings are escaped with :func:`storable`."""
    _end_attempt(
        session,
        task_id,
        attempt,
        state=state,
        finished_at=finished_at,
        error=error,
        duration_ms=duration_ms,
        result=result,
    )
    session.execute(
        update(JobRun)
        .where(JobRun.task_id == storable(task_id))
        .values(
            state=state,
            finished_at=finished_at,
            duration_ms=duration_ms,
            error=storable(error),
            result=storable(result),
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
    """Insert a dead letter, or count another occurrence of the same one; return its id.
    Strings are escaped with :func:`storable`."""
    table = DeadLetter.__table__
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        fingerprint=storable(fingerprint),
        task_id=storable(task_id),
        task_name=storable(task_name),
        payload=storable(payload),
        reason=storable(reason),
        error=storable(error),
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
    # Subscribers hear of a dead letter once per letter and day (a poison message that keeps
    # coming back is counted in ``occurrences``, not announced each time). The payload is
    # validated before anything is written: a value it refuses costs the announcement, never
    # the dead letter.
    with contextlib.suppress(ValidationError):
        _announce_letter(session, ident, task_id, task_name, reason, error, seen_at)
    return ident


def _announce_letter(
    session: Session,
    ident: int,
    task_id: str | None,
    task_name: str | None,
    reason: str,
    error: str | None,
    seen_at: dt.datetime,
) -> None:
    add_event(
        session,
        type="job.dead_lettered",
        key=f"job.dead_lettered:{ident}:{seen_at.date().isoformat()}",
        payload={
            "task_name": (task_name or "?")[:200],
            "task_id": (task_id or "?")[:200],
            "error_type": reason[:100],
            "error": None if error is None else mask_text(error)[:500],
            "dead_letter_id": ident,
        },
        at=seen_at,
        trade_date=None,
    )


# --- records replayed from the local spool (quantbeat.infra.spool) -----------------------------
#: Spool record kinds :func:`apply_spooled` writes.
SPOOL_JOB_RUN = "job_run"
SPOOL_DEAD_LETTER = "dead_letter"


def _instant(value: Any) -> dt.datetime:
    """An aware datetime from a spooled ISO string; raises ValueError/TypeError otherwise."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO datetime, got {type(value).__name__}")
    if parsed.tzinfo is None:
        raise ValueError(f"datetime {value!r} has no timezone")
    return parsed


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def replay_job_start(session: Session, start: Mapping[str, Any]) -> bool:
    """Write a spooled execution start (the keyword arguments of :func:`record_job_start`,
    ``started_at`` as ISO); return ``False`` if it is already recorded (a row of that task
    whose latest start is this one, or an attempt of it that started then). A start older
    than the recorded one only counts its attempt (and joins the attempts history); a newer
    one is recorded as :func:`record_job_start` does.

    Raises:
        KeyError, TypeError, ValueError: the record is malformed.
    """
    task_id = storable(str(start["task_id"]))
    started_at = _instant(start["started_at"])
    fields = {
        "task_id": task_id,
        "task_name": str(start["task_name"]),
        "queue": start.get("queue"),
        "args": start.get("args"),
        "kwargs": start.get("kwargs"),
        "worker": start.get("worker"),
        "retries": int(start.get("retries") or 0),
        "started_at": started_at,
    }
    of_task = JobRun.task_id == task_id
    same = session.execute(
        select(JobRun.id).where(of_task, JobRun.started_at == started_at)
    ).first()
    if same is None:  # an earlier execution already in the attempts history (replayed before)
        same = session.execute(
            select(JobAttempt.id).where(
                JobAttempt.task_id == task_id, JobAttempt.started_at == started_at
            )
        ).first()
    if same is not None:
        return False
    later = session.execute(
        select(JobRun.id).where(of_task, JobRun.started_at > started_at).with_for_update()
    ).first()
    if later is not None:  # a later execution is recorded: count this attempt, keep the rest
        counted = session.execute(
            update(JobRun)
            .where(of_task)
            .values(attempts=JobRun.attempts + 1, updated_at=func.now())
            .returning(JobRun.attempts)
        ).scalar_one()
        _start_attempt(
            session,
            task_id=task_id,
            attempt=int(counted),
            worker=fields["worker"],
            started_at=started_at,
        )
        return True
    record_job_start(session, **fields)
    return True


def replay_job_end(session: Session, end: Mapping[str, Any]) -> bool:
    """Write a spooled execution end (``task_id``, ``state``, ``finished_at`` ISO,
    ``duration_ms``, ``error``, ``result`` and, when the execution's start is known,
    ``started_at``); return ``False`` if nothing changed. It applies only while the row still
    describes that execution (same ``started_at``; without one: started no later than it
    finished), so a late replay never overwrites a newer execution's outcome.

    Raises:
        KeyError, TypeError, ValueError: the record is malformed.
    """
    task_id = storable(str(end["task_id"]))
    state = end["state"]
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}")
    finished_at = _instant(end["finished_at"])
    started = end.get("started_at")
    duration = end.get("duration_ms")
    if duration is not None and not isinstance(duration, int | float):
        raise TypeError(f"duration_ms must be a number, got {type(duration).__name__}")
    same_execution = (
        JobRun.started_at == _instant(started)
        if started is not None
        else JobRun.started_at <= finished_at
    )
    not_yet = or_(
        JobRun.finished_at.is_(None), JobRun.finished_at != finished_at, JobRun.state != state
    )
    if started is not None:  # the attempt is known by its start, whatever the run shows now
        _end_attempt(
            session,
            task_id,
            None,
            state=state,
            finished_at=finished_at,
            error=end.get("error"),
            duration_ms=None if duration is None else float(duration),
            result=end.get("result"),
            started_at=_instant(started),
        )
    result = session.execute(
        update(JobRun)
        .where(JobRun.task_id == task_id, same_execution, not_yet)
        .values(
            state=state,
            finished_at=finished_at,
            duration_ms=None if duration is None else float(duration),
            error=storable(end.get("error")),
            result=storable(end.get("result")),
            updated_at=func.now(),
        )
    )
    changed = bool(getattr(result, "rowcount", 0))
    if changed and started is None:  # the run still described this execution: its latest
        _end_attempt(
            session,
            task_id,
            None,
            state=state,
            finished_at=finished_at,
            error=end.get("error"),
            duration_ms=None if duration is None else float(duration),
            result=end.get("result"),
        )
    return changed


def replay_dead_letter(session: Session, letter: Mapping[str, Any]) -> bool:
    """Write a spooled dead letter (the keyword arguments of :func:`record_dead_letter`,
    ``seen_at`` as ISO); return ``False`` if this occurrence is already recorded (the letter's
    first or last sighting is its ``seen_at``). Another occurrence of an existing letter counts
    one more and replaces the payload and error only if it is the most recent.

    Raises:
        KeyError, TypeError, ValueError: the record is malformed.
    """
    fingerprint = storable(str(letter["fingerprint"]))
    seen_at = _instant(letter["seen_at"])
    reason = str(letter["reason"])
    task_id, task_name = letter.get("task_id"), letter.get("task_name")
    payload, error = letter.get("payload"), letter.get("error")
    found = session.execute(
        select(DeadLetter.id).where(DeadLetter.fingerprint == fingerprint).with_for_update()
    ).first()
    if found is None:
        record_dead_letter(
            session,
            fingerprint=fingerprint,
            task_id=task_id,
            task_name=task_name,
            payload=payload,
            reason=reason,
            error=error,
            seen_at=seen_at,
        )
        return True
    this = DeadLetter.id == found.id
    known = session.execute(
        select(DeadLetter.id).where(
            this, or_(DeadLetter.first_seen == seen_at, DeadLetter.last_seen == seen_at)
        )
    ).first()
    if known is not None:
        return False
    newest = bool(session.execute(select(DeadLetter.last_seen < seen_at).where(this)).scalar())
    values: dict[str, Any] = {
        "occurrences": DeadLetter.occurrences + 1,
        "first_seen": case((DeadLetter.first_seen > seen_at, seen_at), else_=DeadLetter.first_seen),
        "updated_at": func.now(),
    }
    if newest:
        values |= {
            "last_seen": seen_at,
            "reason": storable(reason),
            "error": storable(error),
            "payload": storable(payload),
        }
    session.execute(update(DeadLetter).where(this).values(**values))
    return True


def apply_spooled(session: Session, kind: str, record: Mapping[str, Any]) -> bool:
    """Write one spooled record in ``session`` (the caller commits); return ``False`` if it was
    already written. Kinds: :data:`SPOOL_JOB_RUN` (``{"start": … | None, "end": … | None}``,
    see :func:`replay_job_start` and :func:`replay_job_end`) and :data:`SPOOL_DEAD_LETTER`
    (``{"letter": …, "job_end": … | None}``, see :func:`replay_dead_letter`). Replaying a record
    twice writes it once.

    Raises:
        KeyError, TypeError, ValueError: an unknown kind or a malformed record (the spool keeps
            such a file aside).
    """
    wrote = False
    if kind == SPOOL_JOB_RUN:
        start, end = record.get("start"), record.get("end")
        if start is None and end is None:
            raise ValueError("a job_run record needs a start or an end")
        if start is not None:
            wrote = replay_job_start(session, _mapping(start, "start"))
        if end is not None:
            wrote = replay_job_end(session, _mapping(end, "end")) or wrote
        return wrote
    if kind == SPOOL_DEAD_LETTER:
        job_end = record.get("job_end")
        if job_end is not None:
            wrote = replay_job_end(session, _mapping(job_end, "job_end"))
        return replay_dead_letter(session, _mapping(record["letter"], "letter")) or wrote
    raise ValueError(f"unknown spool record kind {kind!r}")


def get_job_run(session: Session, task_id: str) -> JobRun | None:
    """The job-run row of ``task_id``, if any."""
    return session.execute(
        select(JobRun).where(JobRun.task_id == storable(task_id))
    ).scalar_one_or_none()


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
    before: tuple[dt.datetime, int] | None = None,
) -> list[JobRun]:
    """Job runs, most recently started first (ties: highest row id first).

    ``states``: only these states; ``task_patterns``: task names matching any of these globs
    (``quantbeat.collect.*``); ``since``: started at or after this instant (timezone-aware);
    ``before``: only runs after the key ``(started_at, id)`` in this order (keyset
    pagination: the key of the last row of the previous page); ``limit``: at most this many
    rows.
    """
    stmt = select(JobRun)
    if states:
        stmt = stmt.where(JobRun.state.in_(list(states)))
    if task_patterns:
        stmt = stmt.where(_name_filter(JobRun.task_name, task_patterns))
    if since is not None:
        stmt = stmt.where(JobRun.started_at >= since)
    if before is not None:
        started, ident = before
        stmt = stmt.where(
            or_(
                JobRun.started_at < started,
                and_(JobRun.started_at == started, JobRun.id < ident),
            )
        )
    stmt = stmt.order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def job_state_counts(session: Session, *, since: dt.datetime | None = None) -> dict[str, int]:
    """How many job runs are in each state (only states with runs), of runs started at or
    after ``since`` when given."""
    stmt = select(JobRun.state, func.count()).group_by(JobRun.state)
    if since is not None:
        stmt = stmt.where(JobRun.started_at >= since)
    return {str(state): int(n) for state, n in session.execute(stmt).all()}


def dead_letter_counts(session: Session, *, since: dt.datetime | None = None) -> dict[str, int]:
    """``{"total", "not_replayed", "since"}``: dead letters stored, those never replayed, and
    those last seen at or after ``since`` (``since`` omitted: equal to ``total``)."""
    recent = DeadLetter.last_seen >= since if since is not None else DeadLetter.id.is_not(None)
    total, never, seen = session.execute(
        select(
            func.count(),
            func.count(case((DeadLetter.replays == 0, 1))),
            func.count(case((recent, 1))),
        ).select_from(DeadLetter)
    ).one()
    return {"total": int(total), "not_replayed": int(never), "since": int(seen)}


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


# --- the worker's direct history writes (PostgreSQL) --------------------------------------
#: An execution's start in one statement: the run upserted (unless the reaper marked it
#: lost: then nothing is written and no row comes back) and its attempt row inserted.
_DIRECT_START = """
WITH run AS (
    INSERT INTO job_runs (task_id, task_name, queue, args, kwargs, state, attempts, retries,
                          worker, started_at)
    VALUES (%(task_id)s, %(task_name)s, %(queue)s, %(args)s, %(kwargs)s, 'started', 1,
            %(retries)s, %(worker)s, %(started_at)s)
    ON CONFLICT (task_id) DO UPDATE SET
        attempts = job_runs.attempts + 1, retries = EXCLUDED.retries, state = 'started',
        worker = EXCLUDED.worker, started_at = EXCLUDED.started_at, finished_at = NULL,
        duration_ms = NULL, updated_at = now()
    WHERE job_runs.state <> 'lost'
    RETURNING attempts
), attempt AS (
    INSERT INTO job_attempts (task_id, attempt, worker, state, started_at)
    SELECT %(task_id)s, attempts, %(worker)s, 'started', %(started_at)s FROM run
    ON CONFLICT (task_id, attempt) DO NOTHING
)
SELECT attempts FROM run
"""
#: An execution's end in one statement: its attempt row and the run.
_DIRECT_END = """
WITH attempt AS (
    UPDATE job_attempts SET state = %(state)s, finished_at = %(finished_at)s,
        duration_ms = %(duration_ms)s, error = %(error)s, result = %(result)s
    WHERE task_id = %(task_id)s AND attempt = %(attempt)s
)
UPDATE job_runs SET state = %(state)s, finished_at = %(finished_at)s,
    duration_ms = %(duration_ms)s, error = %(error)s, result = %(result)s, updated_at = now()
WHERE task_id = %(task_id)s
"""


class DirectHistory:
    """The job history of task executions written as two statements per execution — its start
    and its end — each one round trip on a connection of its own thread in autocommit mode,
    prepared once: the same rows :func:`record_job_start` and :func:`record_job_end` write,
    without a transaction's ``BEGIN``/``COMMIT``, a pool checkout's ping or the lost-run read
    (the start writes nothing for a run the reaper marked lost and says so).

    PostgreSQL only. A connection is opened lazily per thread and per process (a forked
    child never touches its parent's), with the limits :func:`db.engine.current_timeouts`
    gives; after an error the caller :meth:`drop`\\s it and writes the way it did before."""

    def __init__(self, url: str) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._local = threading.local()

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn = self._checked(conn)
        if conn is None or conn.closed or getattr(self._local, "pid", None) != os.getpid():
            settings = get_settings()
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                prepare_threshold=0,
                connect_timeout=settings.db_connect_timeout,
                options=current_timeouts().options(),
            )
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _checked(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any] | None:
        """``conn``, or ``None`` if it died while idle. An idle autocommit connection gets
        nothing from the server unless the server is ending it (a restart, an administrator's
        termination): only then — its socket readable — is it pinged, so a live connection
        costs no round trip (a pool's pre-ping costs one per checkout)."""
        if conn.closed:
            return None
        try:
            readable, _, _ = io_select.select([conn.fileno()], [], [], 0)
            if readable:
                conn.execute("SELECT 1")
        except (OSError, ValueError, psycopg.Error):
            self.drop()
            return None
        return conn

    def drop(self) -> None:
        """Forget this thread's connection (closing it: it belongs to this process)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            with contextlib.suppress(Exception):
                conn.close()

    def start(
        self,
        *,
        task_id: str,
        task_name: str,
        queue: str | None,
        args: Any,
        kwargs: Any,
        worker: str | None,
        retries: int,
        started_at: dt.datetime,
    ) -> int | None:
        """Record an execution's start; its attempt number, or ``None`` when the run is marked
        lost (nothing written).

        Raises:
            psycopg.Error: the database refused or could not be reached.
        """
        row = (
            self._connection()
            .execute(
                _DIRECT_START,
                {
                    "task_id": storable(task_id),
                    "task_name": storable(task_name),
                    "queue": storable(queue),
                    "args": Jsonb(storable(args)),
                    "kwargs": Jsonb(storable(kwargs)),
                    "retries": retries,
                    "worker": storable(worker),
                    "started_at": started_at,
                },
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def end(
        self,
        *,
        task_id: str,
        attempt: int,
        state: str,
        finished_at: dt.datetime,
        duration_ms: float | None,
        error: str | None = None,
        result: Any = None,
    ) -> None:
        """Record how execution ``attempt`` of ``task_id`` ended.

        Raises:
            psycopg.Error: the database refused or could not be reached.
        """
        self._connection().execute(
            _DIRECT_END,
            {
                "task_id": storable(task_id),
                "attempt": attempt,
                "state": state,
                "finished_at": finished_at,
                "duration_ms": duration_ms,
                "error": storable(error),
                # JSON null, as the ORM stores a missing result (none_as_null is off)
                "result": Jsonb(storable(result)),
            },
        )

"""Job history: what ``quantbeat jobs list|show`` and the API's ``/jobs`` read.

Every task execution is recorded in ``job_runs`` by the base task class
(:mod:`workers.base`): its arguments (masked), attempts, retries, worker, queue, timings, error
and result of the latest execution; ``job_attempts`` keeps every execution (worker, state,
timings, error, result). These functions open their own session and return JSON-ready rows (times as
ISO 8601 strings in UTC), so an entry point only formats them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from db.engine import session_scope
from db.jobs import (
    dead_letter_counts,
    find_job_run,
    job_state_counts,
    list_attempts,
    list_job_runs,
)
from db.models import JOB_STATES, JobAttempt, JobRun
from db.store import as_utc, iso_utc
from quant.errors import NotFound, ValidationError
from quantbeat.infra.masking import mask_text

#: Job states ``jobs list --failed`` shows: the executions that ended in failure.
FAILED_STATES: tuple[str, ...] = ("failed", "timed_out", "lost")


def _masked(error: str | None) -> str | None:
    return None if error is None else mask_text(error)


def job_dict(run: JobRun) -> dict[str, Any]:
    """Every column of a job run, JSON-ready (times as ISO 8601 UTC; the error masked:
    :func:`quantbeat.infra.masking.mask_text` — arguments and result as stored)."""
    return {
        "id": run.id,
        "task_id": run.task_id,
        "task_name": run.task_name,
        "queue": run.queue,
        "state": run.state,
        "attempts": run.attempts,
        "retries": run.retries,
        "worker": run.worker,
        "started_at": iso_utc(run.started_at),
        "finished_at": iso_utc(run.finished_at),
        "duration_ms": run.duration_ms,
        "error": _masked(run.error),
        "args": run.args,
        "kwargs": run.kwargs,
        "result": run.result,
        "created_at": iso_utc(run.created_at),
        "updated_at": iso_utc(run.updated_at),
    }


def attempt_dict(attempt: JobAttempt) -> dict[str, Any]:
    """One execution of a task id (``job_attempts``), JSON-ready (the error masked)."""
    return {
        "attempt": attempt.attempt,
        "worker": attempt.worker,
        "state": attempt.state,
        "started_at": iso_utc(attempt.started_at),
        "finished_at": iso_utc(attempt.finished_at),
        "duration_ms": attempt.duration_ms,
        "error": _masked(attempt.error),
        "result": attempt.result,
    }


def selected_states(states: Sequence[str] = (), *, failed: bool = False) -> list[str]:
    """The states a listing keeps (empty: every state): ``states``, narrowed to
    :data:`FAILED_STATES` with ``failed`` (all of them when ``states`` is empty).

    Raises:
        quant.errors.ValidationError: a state that does not exist, or ``failed`` with states
            none of which is a failure.
    """
    chosen = list(states)
    bad = [s for s in chosen if s not in JOB_STATES]
    if bad:
        raise ValidationError(
            f"--state must be one of {', '.join(JOB_STATES)}; got {', '.join(map(repr, bad))}",
            field="--state",
            value=bad,
        )
    if failed:
        narrowed = [s for s in chosen if s in FAILED_STATES] if chosen else list(FAILED_STATES)
        if not narrowed:
            raise ValidationError(
                "--failed and --state select no state in common", field="--state", value=chosen
            )
        return narrowed
    return chosen


def list_jobs(
    *,
    states: Sequence[str] = (),
    failed: bool = False,
    tasks: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Job runs as :func:`job_dict` rows, most recently started first: in ``states`` (see
    :func:`selected_states`; ``failed``: only failures), of tasks matching any of the globs
    ``tasks`` (``quantbeat.collect.*``), started at or after ``since`` (aware), at most
    ``limit``.

    Raises:
        quant.errors.ValidationError: a bad state selection, or ``limit`` below 1.
    """
    chosen = selected_states(states, failed=failed)
    if limit < 1:
        raise ValidationError(
            f"--limit must be at least 1, got {limit}", field="--limit", value=limit
        )
    with session_scope() as session:
        runs = list_job_runs(session, states=chosen, task_patterns=tasks, since=since, limit=limit)
        return [job_dict(run) for run in runs]


#: A key of the job listing's order: ``(started_at, row id)`` of a run.
JobKey = tuple[dt.datetime, int]


def page_jobs(
    *,
    states: Sequence[str] = (),
    tasks: Sequence[str] | None = None,
    limit: int = 50,
    after: JobKey | None = None,
) -> tuple[list[dict[str, Any]], JobKey | None]:
    """One page of job runs (:func:`job_dict` rows) in the order of :func:`list_jobs` (most
    recently started first; ties by highest row id): those after the key ``after`` (the key
    the previous page returned; ``None``: from the start), at most ``limit``. Returns the rows
    and the key to ask the next page with (``None`` on the last page).

    A run retried meanwhile moves towards the front (its ``started_at`` is its latest
    execution's, which only moves forward), so a page never repeats a run an earlier page
    listed; such a run is missed by the later pages instead, and shows on a fresh listing.

    Raises:
        quant.errors.ValidationError: a bad state, or ``limit`` below 1.
    """
    chosen = selected_states(states)
    if limit < 1:
        raise ValidationError(f"limit must be at least 1, got {limit}", field="limit", value=limit)
    with session_scope() as session:
        runs = list_job_runs(
            session, states=chosen, task_patterns=tasks, limit=limit + 1, before=after
        )
        more = len(runs) > limit
        runs = runs[:limit]
        rows = [job_dict(run) for run in runs]
        key = (as_utc(runs[-1].started_at), runs[-1].id) if more else None
    return rows, key


def jobs_summary(since: dt.datetime) -> dict[str, Any]:
    """Counts for a status page: ``{"since", "states": {state: runs started since}, "total",
    "failed" (in :data:`FAILED_STATES`), "dead_letters": {"total", "not_replayed",
    "since"}}`` (``since``: aware)."""
    with session_scope() as session:
        states = job_state_counts(session, since=since)
        letters = dead_letter_counts(session, since=since)
    return {
        "since": since.astimezone(dt.UTC).isoformat(),
        "states": dict(sorted(states.items())),
        "total": sum(states.values()),
        "failed": sum(n for s, n in states.items() if s in FAILED_STATES),
        "dead_letters": letters,
    }


def get_job(ident: str) -> dict[str, Any]:
    """The job run whose row id or Celery task id is ``ident``, as a :func:`job_dict` row
    plus ``executions``: every recorded execution (:func:`attempt_dict`), first first — the
    one that produced the result stays listed after later (e.g. skipped) deliveries.

    Raises:
        quant.errors.NotFound: no such job run (the message names ``ident``).
    """
    with session_scope() as session:
        run = find_job_run(session, ident.strip())
        if run is None:
            raise NotFound(f"no job run with row id or task id {ident!r}")
        return {
            **job_dict(run),
            "executions": [attempt_dict(a) for a in list_attempts(session, run.task_id)],
        }

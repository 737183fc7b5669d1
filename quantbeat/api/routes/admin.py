"""API routes for operators (scope ``admin``): the job history and the dead letters, what
``quantbeat jobs`` and ``quantbeat dlq`` show, replaying a dead letter, and Alertmanager's
webhook (alerts into notifications).

Arguments, payloads, results and errors are shown as stored — masked when they were
recorded — and masked again on the way out, so no secret reaches a response even from a row
written before a masking rule existed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from annotated_types import Ge, Le
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from db.models import JOB_STATES
from quantbeat.api.cursors import decode_cursor, encode_cursor, time_key
from quantbeat.api.params import DIGITS
from quantbeat.api.problems import problem_docs
from quantbeat.api.security import Admin
from quantbeat.infra.masking import mask_value
from quantbeat.services import alerts, dlq, jobs

router = APIRouter(tags=["admin"])

JobState = Literal[
    "started",
    "retrying",
    "succeeded",
    "failed",
    "timed_out",
    "ignored",
    "requeued",
    "duplicate",
    "lost",
    "cancelled",
]
if set(get_args(JobState)) != set(JOB_STATES):  # pragma: no cover - a new state was added
    raise RuntimeError("quantbeat.api.routes.admin.JobState must list db.models.JOB_STATES")

#: A task id or a job run's row id as a path segment (Celery ids are UUIDs).
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
#: A task name or glob (``quantbeat.collect.*``).
TASK_GLOB_PATTERN = r"^[A-Za-z*?][A-Za-z0-9_.*?\-]{0,199}$"


class Execution(BaseModel):
    """One execution of a task id (first run, retry, redelivery)."""

    model_config = ConfigDict(extra="allow")

    attempt: int
    worker: str | None
    state: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    error: str | None
    result: Any


class Job(BaseModel):
    """A task id's history: its latest execution's state and timings, attempts and retries,
    arguments (masked), error and result."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: int
    task_id: str
    task_name: str
    queue: str | None
    state: str
    attempts: int
    retries: int
    worker: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    error: str | None
    args: Any
    # Named kwargs_ (shown as kwargs): pydantic's mypy plugin gives a model allowing extra
    # fields an __init__(**kwargs).
    kwargs_: Any = Field(alias="kwargs")
    result: Any
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class JobDetail(Job):
    """A job run with every recorded execution, first first."""

    executions: list[Execution]


class JobPage(BaseModel):
    """One page of job runs, most recently started first. ``next_cursor``: pass it as
    ``cursor`` for the next page; ``null`` on the last one."""

    model_config = ConfigDict(extra="allow")

    items: list[Job]
    next_cursor: str | None


class DeadLetter(BaseModel):
    """A message that will not be processed without an operator, and why."""

    model_config = ConfigDict(extra="allow")

    id: int
    reason: str
    task_name: str | None
    task_id: str | None
    occurrences: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    replays: int
    replayed_at: dt.datetime | None
    error: str | None


class Replayed(BaseModel):
    """A dead letter's task, sent again as a new task."""

    model_config = ConfigDict(extra="allow")

    letter_id: int
    task_name: str
    task_id: str = Field(description="The new task's id")
    status_url: str = Field(description="Where the new task's history appears")


def _masked_job(row: dict[str, Any]) -> dict[str, Any]:
    """A job's arguments and results masked again on the way out (errors are masked by the
    service)."""
    out = {**row}
    for key in ("args", "kwargs", "result"):
        out[key] = mask_value(row.get(key))
    if "executions" in row:
        out["executions"] = [
            {**e, "result": mask_value(e.get("result"))} for e in row["executions"]
        ]
    return out


@router.get("/jobs", response_model=JobPage, summary="Job history, a page at a time")
def list_jobs(
    _: Admin,
    state: Annotated[
        list[JobState] | None, Query(max_length=10, description="Only these states (repeatable)")
    ] = None,
    task: Annotated[
        list[Annotated[str, Field(pattern=TASK_GLOB_PATTERN)]] | None,
        Query(max_length=20, description="Task name or glob, e.g. quantbeat.collect.*; repeatable"),
    ] = None,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="Runs per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> dict[str, Any]:
    """Task executions as ``quantbeat jobs list`` shows them — most recently started first —
    with keyset pagination: a page never repeats a run an earlier page listed. 422 naming
    ``query.cursor`` for a cursor this API did not give out."""
    after = None
    if cursor is not None:
        when, ident = decode_cursor(cursor, (str, int))
        after = (time_key(when), int(ident))
    rows, key = jobs.page_jobs(states=state or (), tasks=task, limit=limit, after=after)
    next_cursor = None if key is None else encode_cursor([key[0].isoformat(), key[1]])
    return {"items": [_masked_job(r) for r in rows], "next_cursor": next_cursor}


@router.get(
    "/jobs/{task_id}",
    response_model=JobDetail,
    summary="One task id's history",
    responses=problem_docs(s404="No run has this task id or row id"),
)
def show_job(
    _: Admin,
    task_id: Annotated[
        str, Path(pattern=TASK_ID_PATTERN, description="Celery task id, or the run's row id")
    ],
) -> dict[str, Any]:
    """Everything recorded about one task id (as ``quantbeat jobs show``): arguments
    (masked), attempts, retries, worker, queue, timings, error, result and every execution.
    404 when no run has this task id or row id."""
    return _masked_job(jobs.get_job(task_id))


@router.get(
    "/dead-letters", response_model=list[DeadLetter], summary="Dead letters, latest seen first"
)
def dead_letters(
    _: Admin,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="Letters listed")] = 50,
    reason: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]] | None,
        Query(max_length=20, description="Only this reason, e.g. retries_exhausted (repeatable)"),
    ] = None,
    task: Annotated[
        list[Annotated[str, Field(pattern=TASK_GLOB_PATTERN)]] | None,
        Query(max_length=20, description="Task name or glob (repeatable)"),
    ] = None,
) -> list[dict[str, Any]]:
    """What ``quantbeat dlq list`` shows: id, reason, task, occurrences, first and last seen,
    replays and the (masked) error, most recently seen first."""
    return dlq.list_letters(reasons=reason, tasks=task, limit=limit)  # errors masked there


@router.post(
    "/dead-letters/{letter_id}/replay",
    response_model=Replayed,
    status_code=202,
    summary="Send a dead letter's task again",
    responses=problem_docs(
        s404="No such dead letter",
        s409="The letter cannot be replayed (the detail says why)",
    ),
)
def replay_dead_letter(
    request: Request,
    _: Admin,
    letter_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Dead letter id")],
) -> JSONResponse:
    """Re-send the letter's task by name with its stored arguments, as a new task (as
    ``quantbeat dlq replay ID``), and record the replay on the letter. 202 with the new task
    id (``Location``: its job history). 409 when the letter cannot be replayed: an unknown
    task, no decodable arguments, or arguments masked when stored (re-submit those with the
    real values)."""
    done = dlq.replay_letter(letter_id)
    status_url = str(request.app.url_path_for("show_job", task_id=str(done.task_id)))
    body = Replayed(
        letter_id=done.letter_id,
        task_name=str(done.task_name),
        task_id=str(done.task_id),
        status_url=status_url,
    )
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": status_url})


class AlertsRecorded(BaseModel):
    """What became of an Alertmanager webhook call."""

    received: int = Field(description="Alerts in the call")
    recorded: int = Field(description="New ops.alert events (delivered to subscriptions)")
    duplicates: int = Field(description="Alerts recorded before (a retry or a repeat)")


@router.post(
    "/ops/alerts",
    response_model=AlertsRecorded,
    summary="Receive Alertmanager's webhook",
    responses=problem_docs(s422="Not an Alertmanager version 4 payload (the detail says where)"),
)
def receive_alerts(_: Admin, body: dict[str, Any]) -> AlertsRecorded:
    """Alertmanager's webhook receiver (``webhook_configs``, payload version 4; see
    ``deploy/alertmanager/alertmanager.yml``): each alert becomes an ``ops.alert`` event,
    delivered to the subscriptions that want it like any other event. Idempotent: a retried
    or repeated alert is recorded once."""
    return AlertsRecorded(**alerts.record_alerts(body))

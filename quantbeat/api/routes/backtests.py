"""API routes: backtests — submit (scope ``run``), list, follow (state, progress, server-sent
events), cancel (scope ``run``) and read the report.

A run goes ``queued`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` |
``timed_out`` (:mod:`quantbeat.services.backtests`). ``progress`` is a percentage (0–100),
``eta_s`` the seconds left at the pace so far (``null`` while unknown).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from db.backtests import FINAL_STATES
from quant.errors import ValidationError
from quantbeat.api.params import DIGITS
from quantbeat.api.problems import PROBLEM_MEDIA_TYPE, ApiProblem, FieldProblem, Problem
from quantbeat.api.security import Reader, Runner
from quantbeat.api.streams import EVENTS_RESPONSE, event_stream, progress_events
from quantbeat.services import backtests
from quantbeat.services.backtests import IDEMPOTENCY_KEY, BacktestSpec

router = APIRouter(tags=["backtests"])

State = Literal["queued", "running", "completed", "failed", "cancelled", "timed_out"]

RunId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="The run id as POST /backtests returned it (32 hex characters for runs "
        "submitted here; ids of other origins are up to 32 letters, digits, _ and -)",
    ),
]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": d}
        for s, d in (
            (404, "No such run"),
            (409, "Conflict with the run's state"),
        )
        if s in statuses
    }


class BacktestSubmitted(BaseModel):
    """Where to follow a submitted run (paths under this API)."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    status_url: str
    events_url: str
    report_url: str
    created: bool = Field(
        description="False when an earlier submission with the same Idempotency-Key "
        "recorded this run: nothing new was recorded or enqueued"
    )


class BacktestStatus(BaseModel):
    """A run: its state, progress (0–100 %), ETA (s), times and, once completed, its
    metrics (fractions: ``total_return`` 0.12 = 12 %) and summary."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    strategy: str
    state: State
    phase: str | None = Field(default=None, description="What a running run is doing")
    progress: float = Field(ge=0, le=100, description="Percent done")
    eta_s: float | None = Field(description="Seconds left at the pace so far; null: unknown")
    done: int = Field(description="Instruments whose signals are built")
    total: int = Field(description="Instruments of the run")
    attempts: int
    origin: str = Field(description="Who submitted it: api, cli, beat")
    label: str | None = None
    submitted_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_ms: float | None
    error: str | None
    data_version: str | None = None
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


class BacktestListItem(BaseModel):
    """One run of the list, with its headline metrics once completed."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    strategy: str
    state: State
    instruments: str = Field(description="done/total instruments")
    submitted_at: dt.datetime | None
    total_return: float | None = Field(description="Fraction (0.12 = 12 %)")
    sharpe: float | None
    trades: int | None
    origin: str


def _status_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`backtests.status` row as the API answers it (its error masked there)."""
    body = {k: v for k, v in row.items() if k not in ("eta_seconds", "instruments")}
    return {**body, **backtests.progress_payload(row)}


def _links(request: Request, run_id: str) -> dict[str, str]:
    return {
        "status_url": str(request.app.url_path_for("backtest_status", run_id=run_id)),
        "events_url": str(request.app.url_path_for("backtest_events", run_id=run_id)),
        "report_url": str(request.app.url_path_for("backtest_report", run_id=run_id)),
    }


def _invalid(exc: ValidationError) -> ApiProblem:
    """A service's refusal of a submission as a 422 naming the request's field."""
    field = exc.field or "spec"
    where = "header.Idempotency-Key" if field == "idempotency_key" else f"body.{field}"
    return ApiProblem(
        422,
        str(exc),
        slug="invalid-input",
        errors=[FieldProblem(field=where, message=str(exc))],
    )


@router.post(
    "/backtests",
    status_code=202,
    response_model=BacktestSubmitted,
    summary="Submit a backtest (scope run)",
    responses={
        202: {"headers": {"Location": {"description": "The run's status URL"}}},
    },
)
def submit_backtest(
    principal: Runner,
    request: Request,
    response: Response,
    spec: BacktestSpec,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY.pattern,
            description="A key of yours (1–200 printable ASCII characters): submitting the "
            "same spec with the same key again returns the same run and enqueues nothing; "
            "the same key with another spec is refused (422)",
        ),
    ] = None,
) -> dict[str, Any]:
    """Validate ``spec`` (strategy, parameters, execution settings, dates, instruments, the
    memory estimate) and enqueue the run: 202 with its URLs and ``Location``. Nothing is
    recorded when the spec is invalid (422 naming the field). Prices and cash in KRW;
    ``soft_time_limit``/``time_limit`` in seconds."""
    try:
        if idempotency_key is None:
            run_id = backtests.submit_backtest(spec, origin="api")
            created = True
        else:
            run_id, created = backtests.submit_idempotent(
                spec, key=idempotency_key, owner=f"api-key:{principal.key_id}", origin="api"
            )
    except ValidationError as exc:
        raise _invalid(exc) from None
    links = _links(request, run_id)
    response.headers["Location"] = links["status_url"]
    return {"run_id": run_id, **links, "created": created}


@router.get("/backtests", response_model=list[BacktestListItem], summary="Recent backtests")
def list_backtests(
    _: Reader,
    response: Response,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="How many runs")] = 20,
    state: Annotated[State | None, Query(description="Only runs in this state")] = None,
    strategy: Annotated[
        str | None,
        Query(pattern=r"^[a-z0-9_]{1,32}$", description="Only runs of this strategy"),
    ] = None,
) -> list[dict[str, Any]]:
    """The ``limit`` newest runs, newest first, with their headline metrics once
    completed."""
    response.headers["Cache-Control"] = "private, no-cache"
    return backtests.list_backtests(limit=limit, state=state, strategy=strategy)


@router.get(
    "/backtests/{run_id}",
    name="backtest_status",
    response_model=BacktestStatus,
    summary="A backtest's state, progress and metrics",
    responses=_problems(404),
)
def backtest_status(_: Reader, response: Response, run_id: RunId) -> dict[str, Any]:
    """State, progress (0–100), ETA (s), times, error; metrics and summary once completed.
    404 for an unknown run."""
    response.headers["Cache-Control"] = "private, no-cache"
    return _status_body(backtests.status(run_id))


@router.delete(
    "/backtests/{run_id}",
    status_code=202,
    response_model=BacktestStatus,
    summary="Cancel a backtest (scope run)",
    responses=_problems(404, 409),
)
def cancel_backtest(_: Runner, run_id: RunId) -> dict[str, Any]:
    """Cancel the run: a queued one at once, a running one at its worker's next check
    (within about a second). 202 with the run's state after up to 1 s (``cancelled``, or
    still ``running`` until the worker stops it); 409 when the run had already ended."""
    before = backtests.status(run_id)["state"]
    if before in FINAL_STATES:
        raise ApiProblem(
            409,
            f"backtest {run_id} already ended {before}; there is nothing to cancel",
            slug="already-ended",
        )
    after = backtests.cancel(run_id, wait=1.0)
    if after in FINAL_STATES and after != "cancelled":
        raise ApiProblem(
            409,
            f"backtest {run_id} already ended {after} before the cancel reached it",
            slug="already-ended",
        )
    return _status_body(backtests.status(run_id))


@router.get(
    "/backtests/{run_id}/report",
    name="backtest_report",
    response_class=Response,
    summary="A completed backtest's report: HTML, PNG or CSV",
    responses={
        200: {
            "description": "The report",
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        **_problems(404, 409),
    },
)
def backtest_report(
    _: Reader,
    run_id: RunId,
    fmt: Annotated[
        Literal["html", "png", "csv"],
        Query(
            alias="format",
            description="html: the self-contained report; png: its chart; csv: a table",
        ),
    ] = "html",
    table: Annotated[
        Literal["trades", "equity"],
        Query(description="With format=csv: the trades, or the daily equity"),
    ] = "trades",
) -> Response:
    """The report of a completed run (rendered once, then served from the report
    directory). 409 while the run is queued or running (not finished yet) or when it ended
    without a result."""
    found = backtests.report_file(run_id, fmt, table=table)
    headers = {
        "Content-Disposition": f'inline; filename="{found.filename}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }
    if fmt == "html":  # self-contained: inline styles and data: images, nothing else
        headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        )
    return Response(found.content, media_type=found.media_type, headers=headers)


@router.get(
    "/backtests/{run_id}/events",
    name="backtest_events",
    response_class=EventSourceResponse,
    summary="A backtest's progress as server-sent events",
    responses={**EVENTS_RESPONSE, **_problems(404)},
)
async def backtest_events(_: Reader, run_id: RunId) -> EventSourceResponse:
    """Server-sent events: ``progress`` (data ``{"state", "progress", "eta_s"}``) at once
    and on every change, polled from the live state (Redis) every 0.5 s; a comment ping
    every 15 s; a last event ``end`` (data: ``run_id``, ``state``, ``progress``, ``eta_s``,
    ``error``, ``finished_at``) once the run has ended, then the stream closes. 404 (no
    stream) for an unknown run."""
    first = backtests.progress_payload(
        await run_in_threadpool(backtests.live_progress, run_id, confirm=True)
    )
    return event_stream(
        progress_events(
            first,
            functools.partial(_read, run_id),
            functools.partial(_end, run_id),
            FINAL_STATES,
            what=f"backtest {run_id}",
        )
    )


def _read(run_id: str, confirm: bool) -> dict[str, Any]:
    return backtests.progress_payload(backtests.live_progress(run_id, confirm=confirm))


def _end(run_id: str) -> dict[str, Any]:
    body = _status_body(backtests.status(run_id))
    keep = ("run_id", "state", "progress", "eta_s", "error", "finished_at", "done", "total")
    return {k: body.get(k) for k in keep}

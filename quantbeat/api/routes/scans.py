"""API routes: universe scan runs — recent runs, one run's state and counts, its progress as
server-sent events.

A scan run is ``running`` until its last chunk ends, then ``completed`` (or ``failed``).
Scans record no progress of their own: ``progress`` (0–100) is the share of the universe the
finished chunks evaluated, ``(scanned + failed) / total``, and 100 once completed (see
:func:`quantbeat.services.scans.scan_run`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from quantbeat.api.params import DIGITS
from quantbeat.api.problems import PROBLEM_MEDIA_TYPE, Problem
from quantbeat.api.security import Reader
from quantbeat.api.streams import EVENTS_RESPONSE, event_stream, progress_events
from quantbeat.services import scans
from quantbeat.services.backtests import progress_payload
from quantbeat.services.scans import SCAN_FINAL_STATES

router = APIRouter(tags=["scans"])

ScanRunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The scan run's id")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "No such run"}
}


class ScanRun(BaseModel):
    """One scan run of ``strategy`` on ``trade_date``: state, progress (0–100 %), ETA (s)
    and counts of instruments (``total`` in the universe, ``scanned``, ``failed``,
    ``candidates`` written) and chunks."""

    model_config = ConfigDict(extra="allow")

    run_id: int
    strategy: str
    trade_date: dt.date
    state: str = Field(description="running, completed or failed")
    progress: float = Field(ge=0, le=100, description="Percent of the universe evaluated")
    eta_s: float | None = Field(description="Seconds left at the pace so far; null: unknown")
    total: int
    scanned: int
    failed: int
    candidates: int
    chunks: int
    chunks_failed: int
    coverage: str = Field(description="scanned/total")
    params: dict[str, Any] | None = None
    data_version: str | None = None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    error: str | None


def _body(row: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`scans.scan_run` row as the API answers it (its error masked there)."""
    body = {k: v for k, v in row.items() if k != "eta_seconds"}
    return {**body, **progress_payload(row)}


@router.get("/scans", response_model=list[ScanRun], summary="Recent scan runs")
def list_scans(
    _: Reader,
    response: Response,
    strategy: Annotated[
        str | None,
        Query(
            max_length=32,
            description="Only runs of this scan strategy (vcp, closing_bet …); unknown: 422",
        ),
    ] = None,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="How many runs")] = 20,
) -> list[dict[str, Any]]:
    """The ``limit`` newest scan runs (by start), newest first."""
    response.headers["Cache-Control"] = "private, no-cache"
    return [_body(r) for r in scans.scan_runs(strategy=strategy, limit=limit)]


@router.get(
    "/scans/{run_id}",
    name="scan_run",
    response_model=ScanRun,
    summary="A scan run's state, progress and counts",
    responses=_NOT_FOUND,
)
def scan_run(_: Reader, response: Response, run_id: ScanRunId) -> dict[str, Any]:
    """State, progress (0–100), ETA (s), counts, times and error of one run; 404 for an
    unknown run."""
    response.headers["Cache-Control"] = "private, no-cache"
    return _body(scans.scan_run(run_id))


@router.get(
    "/scans/{run_id}/events",
    name="scan_events",
    response_class=EventSourceResponse,
    summary="A scan run's progress as server-sent events",
    responses={**EVENTS_RESPONSE, **_NOT_FOUND},
)
async def scan_events(_: Reader, run_id: ScanRunId) -> EventSourceResponse:
    """Server-sent events: ``progress`` (data ``{"state", "progress", "eta_s"}``) at once
    and on every change, polled from PostgreSQL (where chunks record their counts) every
    0.5 s; a comment ping every 15 s; a last event ``end`` (data: the run as GET
    /scans/{run_id} gives it) once the run has ended, then the stream closes. 404 (no
    stream) for an unknown run."""
    first = progress_payload(await run_in_threadpool(scans.scan_run, run_id))
    return event_stream(
        progress_events(
            first,
            functools.partial(_read, run_id),
            functools.partial(_end, run_id),
            SCAN_FINAL_STATES,
            what=f"scan run {run_id}",
        )
    )


def _read(run_id: int, confirm: bool) -> dict[str, Any]:
    """``confirm`` changes nothing: a scan's progress is read from PostgreSQL each time."""
    return progress_payload(scans.scan_run(run_id))


def _end(run_id: int) -> dict[str, Any]:
    return _body(scans.scan_run(run_id))

"""API routes: the state of the stored data (the dashboard's "data status" page).

Read-only: gaps are reported, never backfilled from here (``quantbeat data gaps --backfill``
queues the backfill)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from quantbeat.api.params import DIGITS
from quantbeat.api.problems import fields_as
from quantbeat.api.security import Reader
from quantbeat.services.data_status import DEFAULT_JOB_HOURS, MAX_JOB_HOURS, data_status
from quantbeat.services.gaps import DEFAULT_WINDOW_SESSIONS

router = APIRouter(tags=["data"])


class Freshness(BaseModel):
    """The ``data_freshness`` component of ``quantbeat health``: daily candles and investor
    flows against the KRX session whose data should be in, hourly crypto bars against the
    last closed hour (``details`` per dataset: latest, expected, sessions behind, status)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="healthy, warning or unhealthy")
    message: str
    latency_ms: float | None
    details: dict[str, Any]


class Latest(BaseModel):
    """The latest day (or moment, for snapshots and news) a dataset holds (``null``:
    nothing stored), and whether that latest data is simulated."""

    model_config = ConfigDict(extra="allow")

    latest: str | None
    simulated: bool


class Gap(BaseModel):
    """Consecutive missing sessions (or bars) of one instrument."""

    model_config = ConfigDict(extra="allow")

    instrument: str
    first: str
    last: str
    missing: int


class KrxGaps(BaseModel):
    """Gaps of a daily KRX dataset over ``sessions`` sessions ``start``..``end``: ``listed``
    instruments judged, ``gap_count`` gaps, ``missing`` instrument-sessions, ``empty``
    listed instruments without a row in the window (not judged), the first gaps listed."""

    model_config = ConfigDict(extra="allow")

    dataset: str
    markets: list[str]
    start: dt.date
    end: dt.date
    sessions: int
    listed: int
    gap_count: int
    missing: int
    empty: int
    empty_examples: list[str]
    gaps: list[Gap]


class CryptoGaps(BaseModel):
    """Gaps in stored crypto bars (bar starts in UTC): Upbit emits no bar where nothing
    traded, so thin markets show gaps that stay."""

    model_config = ConfigDict(extra="allow")

    dataset: str
    interval: str
    start: dt.datetime
    end: dt.datetime
    bars: int
    listed: int
    gap_count: int
    missing: int
    gaps: list[Gap]


class DataGaps(BaseModel):
    model_config = ConfigDict(extra="allow")

    candles: KrxGaps
    flows: KrxGaps
    crypto: CryptoGaps


class DeadLetterCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    total: int
    not_replayed: int
    since: int = Field(description="Last seen within the window")


class JobsSummary(BaseModel):
    """Job runs started in the window, per state; ``failed`` counts failed, timed-out and
    lost runs."""

    model_config = ConfigDict(extra="allow")

    since: dt.datetime
    states: dict[str, int]
    total: int
    failed: int
    dead_letters: DeadLetterCounts


class DataStatus(BaseModel):
    """Freshness, the latest data per dataset, gaps and the recent jobs, in one report."""

    model_config = ConfigDict(extra="allow")

    checked_at: dt.datetime
    simulated: bool = Field(description="Some dataset's latest data is simulated")
    freshness: Freshness
    latest: dict[str, Latest]
    gaps: DataGaps
    jobs: JobsSummary


#: Seconds a data-status answer is reused (data changes at most a few times a day).
STATUS_TTL = 30.0


@router.get("/data/status", response_model=DataStatus, summary="The state of the stored data")
def status(
    request: Request,
    _: Reader,
    sessions: Annotated[
        int,
        Ge(1),
        Le(DEFAULT_WINDOW_SESSIONS),
        DIGITS,
        Query(
            description="KRX sessions the gap report looks back (up to the latest closed one)",
        ),
    ] = DEFAULT_WINDOW_SESSIONS,
    gap_limit: Annotated[
        int, Ge(0), Le(1000), DIGITS, Query(description="Gaps listed per dataset (all are counted)")
    ] = 30,
    job_hours: Annotated[
        int, Ge(1), Le(MAX_JOB_HOURS), DIGITS, Query(description="Hours of job runs counted")
    ] = DEFAULT_JOB_HOURS,
) -> Response:
    """What ``quantbeat health`` reports as ``data_freshness``, the latest day every dataset
    holds (with its simulated flag), the gaps ``quantbeat data gaps`` reports for candles,
    flows and hourly crypto bars (read-only: nothing is backfilled), and the job runs and dead
    letters of the last ``job_hours`` hours. The gap report reads every session of the
    window, so an answer is reused for up to :data:`STATUS_TTL` seconds per API process."""
    places = {name: f"query.{name}" for name in ("sessions", "gap_limit", "job_hours")}

    def produce() -> dict[str, Any]:
        with fields_as(places):
            return data_status(sessions=sessions, gap_limit=gap_limit, job_hours=job_hours)

    return request.app.state.reads.json(  # type: ignore[no-any-return]
        request,
        ("data/status", sessions, gap_limit, job_hours),
        DataStatus,
        produce,
        ttl=STATUS_TTL,
    )

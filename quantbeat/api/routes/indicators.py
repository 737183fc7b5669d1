"""API routes: indicator values (one series, or a batch of up to ten) and the indicator
cache's counters.

Reads go the way ``quantbeat indicators get`` goes (:func:`get_indicator`): the cache is
looked up in this process, and a hit is answered without a worker; a miss is computed by a
``cpu`` worker (``quantbeat.indicators.compute`` / ``compute_batch``), which fills the cache.
The API never computes in its own process — CPU work belongs to the workers — and answers
503 with ``Retry-After`` when no worker answers within :data:`WAIT_S` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio
from annotated_types import Ge, Le
from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from quant.indicators import INDICATORS
from quant.indicators.request import DEFAULT_LIMIT, INTERVALS, MAX_BARS
from quantbeat.api.params import DIGITS
from quantbeat.api.problems import fields_as, problem_docs
from quantbeat.api.security import Reader
from quantbeat.services.args import parse_param_pairs
from quantbeat.services.indicators import (
    MAX_BATCH,
    IndicatorResult,
    cache_stats,
    get_indicator,
    get_indicators,
)

router = APIRouter(tags=["indicators"])

#: Seconds a request waits for a cpu worker to compute a miss (then 503, Retry-After).
WAIT_S = 15.0
_T = TypeVar("_T")
#: Indicator requests that may wait for a worker at once (their own threads): a burst of
#: cache misses queues here instead of taking the worker threads every other route needs.
MAX_WAITING = 8
_waiting_limiter: anyio.CapacityLimiter | None = None


async def _waiting(call: Callable[[], _T]) -> _T:
    """``call()`` in a thread of the indicator requests' own pool (:data:`MAX_WAITING`)."""
    global _waiting_limiter
    if _waiting_limiter is None:  # made inside the event loop it belongs to
        _waiting_limiter = anyio.CapacityLimiter(MAX_WAITING)
    return await anyio.to_thread.run_sync(call, limiter=_waiting_limiter)


#: An instrument as a path segment: ``MARKET:TICKER`` or a bare ticker.
INSTRUMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:._\-]{0,63}$"

# Where the service's fields were in this request (quant.indicators.request names them
# request.<field>, the instrument resolver just "instrument").
_ONE = {
    "request.instrument": "path.instrument",
    "instrument": "path.instrument",
    "request.params.": "query.param.",
    "request.": "query.",
}


class IndicatorRequestOut(BaseModel):
    """The request as validated: the instrument as ``MARKET:TICKER`` once resolved, every
    parameter with its default filled in."""

    model_config = ConfigDict(extra="allow")

    instrument: str
    indicator: str
    params: dict[str, Any]
    interval: str
    start: str | None
    end: str | None
    limit: int


class IndicatorSeries(BaseModel):
    """An indicator's values: ``time`` (ISO dates for daily bars, date-times in UTC for
    intraday ones) and per output one value per bar, ``null`` during the warm-up.
    ``source``: ``cache`` or ``computed`` (by a cpu worker)."""

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    request: IndicatorRequestOut
    source: Literal["cache", "computed"]
    time: list[str]
    values: dict[str, list[float | None]]


class ItemErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The error's kind: ValidationError, NotFound, TimeoutError…")
    message: str
    field: str | None = Field(
        default=None, description="The bad field, e.g. requests[2].params.period"
    )


class ItemError(BaseModel):
    """One batch item that could not be answered, and why."""

    model_config = ConfigDict(extra="allow")

    ok: Literal[False]
    error: ItemErrorDetail


class IndicatorRequestIn(BaseModel):
    """One request of a batch, as ``quantbeat indicators get`` takes it. Values are checked
    per item: a bad one fails its item only."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "instrument": "KOSPI:005930",
                "indicator": "rsi",
                "params": {"period": 14},
                "limit": 200,
            }
        },
    )

    instrument: str = Field(description="MARKET:TICKER, or a ticker listed on one market")
    indicator: str = Field(description="Indicator name (quantbeat indicators list)")
    params: dict[str, Any] | None = Field(default=None, description="Parameters; default each")
    interval: str = Field(default="1d", description="1d or an intraday interval (1m … 240m)")
    start: str | None = Field(default=None, description="First bar (ISO date / date-time)")
    end: str | None = Field(default=None, description="Last bar (ISO date / date-time)")
    limit: StrictInt = Field(
        default=DEFAULT_LIMIT, description=f"Bars to compute over (1..{MAX_BARS})"
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[IndicatorRequestIn] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} requests"
    )


class BatchOut(BaseModel):
    """One item per request, in order: its values, or its own error."""

    model_config = ConfigDict(extra="allow")

    items: list[IndicatorSeries | ItemError]


class CacheStatsOut(BaseModel):
    """The indicator cache's counters across every process: indicator and candle hits and
    misses, ``hit_rate`` (``null`` before the first lookup), ``evictions`` (entries dropped
    because new candles were stored), Redis memory evictions, dropped stale writes, errors."""

    model_config = ConfigDict(extra="allow")

    backend: str
    hits: int
    misses: int
    hit_rate: float | None
    candle_hits: int
    candle_misses: int
    evictions: int
    memory_evictions: int
    stale_writes: int
    errors: int


# Registered before /indicators/{instrument}: a request to /indicators/batch with another
# method then answers 405 with Allow: POST (GET, which /indicators/{instrument} would take for
# the instrument "batch", is refused there).
@router.post(
    "/indicators/batch",
    response_model=BatchOut,
    summary=f"Up to {MAX_BATCH} indicator series at once",
)
async def indicator_batch(
    _: Reader,
    body: Annotated[BatchIn, Body()],
) -> dict[str, Any]:
    """Answer 1–10 requests: per request its values or its own error
    (``{"ok": false, "error": {"type", "message", "field"}}``; ``field`` like
    ``requests[2].params.period``) — one bad request never fails the others. Cache hits are
    answered here, misses by one cpu-worker task. A body of more than 10 requests is refused
    whole (422 naming ``body.requests``); 503 when no worker answered within 15 s."""
    items = [item.model_dump(exclude_unset=True) for item in body.requests]
    answers = await _waiting(partial(get_indicators, items, timeout=WAIT_S))
    return {
        "items": [a.to_json() if isinstance(a, IndicatorResult) else a for a in answers],
    }


@router.get(
    "/indicators/{instrument}",
    response_model=IndicatorSeries,
    summary="One indicator series of an instrument",
    responses=problem_docs(
        s404="Unknown instrument, or no bars in the range",
        s405="The path is /indicators/batch, the batch resource: POST only",
    ),
)
async def indicator(
    _: Reader,
    instrument: Annotated[
        str,
        Path(
            pattern=INSTRUMENT_PATTERN,
            description="MARKET:TICKER (e.g. KOSPI:005930), or a ticker listed on one market",
        ),
    ],
    indicator: Annotated[
        str,
        Query(
            pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
            description="Indicator name (quantbeat indicators list), e.g. rsi",
            json_schema_extra={"enum": list(INDICATORS)},
        ),
    ],
    param: Annotated[
        list[str] | None,
        Query(
            max_length=32,
            description="NAME=VALUE (repeatable), e.g. param=period=14; default each",
        ),
    ] = None,
    interval: Annotated[
        str,
        Query(
            max_length=8,
            description="1d or an intraday interval (1m … 240m)",
            json_schema_extra={"enum": list(INTERVALS)},
        ),
    ] = "1d",
    start: Annotated[
        str | None,
        Query(max_length=64, description="First bar: ISO date (1d) or date-time with zone"),
    ] = None,
    end: Annotated[
        str | None,
        Query(max_length=64, description="Last bar: ISO date (1d) or date-time with zone"),
    ] = None,
    limit: Annotated[
        int,
        Ge(1),
        Le(MAX_BARS),
        DIGITS,
        Query(description="Bars to compute over (the last N in range)"),
    ] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The values of ``indicator`` for ``instrument`` — the parameters of ``quantbeat
    indicators get`` — from the cache, or computed by a cpu worker on a miss. 404: unknown
    instrument or no bars in the range; 422: a bad parameter (named); 503: no worker
    answered within 15 s. The path ``/indicators/batch`` is the batch resource, not the
    instrument ``batch``: 405 (``Allow: POST``)."""
    if instrument == "batch":
        raise HTTPException(405)
    with fields_as(_ONE):
        params = parse_param_pairs(param, field="query.param")
        result = await _waiting(
            partial(
                get_indicator,
                instrument,
                indicator,
                params,
                interval=interval,
                start=start,
                end=end,
                limit=limit,
                timeout=WAIT_S,
            )
        )
    return result.to_json()


@router.get("/cache/stats", response_model=CacheStatsOut, summary="Indicator cache counters")
def cache_counters(_: Reader) -> dict[str, Any]:
    """What ``quantbeat indicators cache`` shows: hits, misses, hit rate, evictions, dropped
    stale writes and errors, counted across every process sharing the cache."""
    return cache_stats().as_dict()

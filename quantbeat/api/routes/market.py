"""API routes: the Market Gate (now and its history) and sector strength."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from quantbeat.api.params import DIGITS, IsoDate
from quantbeat.api.problems import problem_responses
from quantbeat.api.security import Reader
from quantbeat.services.market import gate_history_report, gate_report

router = APIRouter(tags=["market"])


class GateSummary(BaseModel):
    """A stored Market Gate (domain §7): ``color`` GREEN/YELLOW/RED (UNKNOWN without data)
    from ``score`` (0–100), the reason and the USD/KRW warning."""

    model_config = ConfigDict(extra="allow")

    trade_date: dt.date
    as_of: dt.datetime
    phase: str
    color: str
    score: float | None
    reason: str | None
    usdkrw: float | None
    fx_warning: bool | None
    simulated: bool


class Gate(GateSummary):
    """A stored Market Gate with its components and the sector ranking."""

    components: Any
    sectors: Any


class Sector(BaseModel):
    model_config = ConfigDict(extra="allow")

    rank: int | None
    code: str
    name: str
    score: float | None
    status: str
    reason: str | None = None


class Sectors(BaseModel):
    """Sector ETFs ranked by strength (0–100): BULLISH ≥ 70, BEARISH < 40."""

    model_config = ConfigDict(extra="allow")

    trade_date: dt.date
    simulated: bool
    sectors: list[Sector]
    strongest: str | None = None
    weakest: str | None = None


@router.get(
    "/market/gate",
    response_model=Gate,
    summary="The latest Market Gate",
    responses=problem_responses(404),
)
def market_gate(
    _: Reader,
    date: Annotated[
        IsoDate | None, Query(description="Trading day (YYYY-MM-DD); default: the latest")
    ] = None,
) -> dict[str, Any]:
    """The latest stored gate (of ``date``). 404 when none is stored yet."""
    return gate_report(date)


@router.get("/market/gate/history", response_model=list[Gate], summary="Stored gates, newest first")
def market_gate_history(
    _: Reader,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="How many gates")] = 30,
) -> list[dict[str, Any]]:
    """The ``limit`` latest stored gates (one per session and phase), newest first; an empty
    list when nothing is stored yet."""
    return gate_history_report(limit)


@router.get(
    "/market/sectors",
    response_model=Sectors,
    summary="Sector strength ranking",
    responses=problem_responses(404),
)
def market_sectors(
    _: Reader,
    date: Annotated[
        IsoDate | None, Query(description="Trading day (YYYY-MM-DD); default: the latest")
    ] = None,
) -> dict[str, Any]:
    """The sector ranking stored with the gate of ``date`` (default: the latest). 404 when no
    gate is stored yet."""
    found = gate_report(date)
    ranking = found["sectors"] or {"sectors": []}
    return {"trade_date": found["trade_date"], "simulated": found["simulated"], **ranking}

"""API routes: the closing bet (종가베팅) — the days decided, and a day's grade cards of its
buy-window (``preliminary``, 15:10) or evening (``final``) decision
(:mod:`quantbeat.services.closing_window`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from quantbeat.api.params import DIGITS, IsoDate
from quantbeat.api.problems import problem_responses
from quantbeat.api.routes.market import GateSummary
from quantbeat.api.security import Reader
from quantbeat.services.announce import is_simulated
from quantbeat.services.closing_window import closing_bet_dates, closing_bet_decision

router = APIRouter(tags=["closing-bet"])

Phase = Literal["final", "preliminary"]
_PHASE = (
    "preliminary (the buy-window decision, 15:10 KST) or final (the evening one); default: "
    "final when the day has one, else preliminary"
)


class Card(BaseModel):
    """One graded candidate: ``grade`` S/A/B/C, ``score`` the V2 total (0–21 points),
    ``entry`` in KRW and the exit plan's ``stop`` (−3 %) and ``target`` (+5 %) from it,
    ``news`` the AI analysis's catalyst (``None``: not analysed), ``gate`` the gate colour
    it was decided under, ``inputs`` the values the score used."""

    model_config = ConfigDict(extra="allow")

    rank: int
    signal_id: int | None
    instrument: str
    market: str
    ticker: str
    name: str | None
    grade: str | None
    score: float | None
    entry: float | None
    stop: float | None
    target: float | None
    reasons: list[str]
    news: str | None
    gate: str | None
    status: str | None
    inputs: dict[str, Any] | None
    simulated: bool


class Decision(BaseModel):
    """A day's closing-bet decision of one ``phase`` (``phases``: those the day has):
    ``decided_at`` the moment it was decided (KST), ``tradeable`` whether that was before
    the 15:20 closing auction on the day, ``total``/``scanned`` the universe and the
    instruments evaluated, ``count`` the cards."""

    model_config = ConfigDict(extra="allow")

    strategy: str
    trade_date: dt.date
    phase: str
    phases: list[str]
    run_id: int
    decided_at: dt.datetime
    tradeable: bool
    total: int
    scanned: int
    count: int
    gate: GateSummary | None = Field(description="The stored Market Gate as of the decision")
    simulated: bool
    cards: list[Card]


class DecisionDay(BaseModel):
    model_config = ConfigDict(extra="allow")

    trade_date: dt.date
    phases: list[str]


class DecisionDays(BaseModel):
    model_config = ConfigDict(extra="allow")

    simulated: bool
    items: list[DecisionDay]


@router.get(
    "/closing-bet/latest",
    response_model=Decision,
    summary="The latest closing-bet decision",
    responses=problem_responses(404),
)
def closing_bet_latest(
    _: Reader, phase: Annotated[Phase | None, Query(description=_PHASE)] = None
) -> dict[str, Any]:
    """The latest day's decision (of ``phase``: the latest day that has one). 404 when none
    is stored yet."""
    return closing_bet_decision(None, phase, field_prefix="query.")


@router.get(
    "/closing-bet/dates", response_model=DecisionDays, summary="Days with a closing-bet decision"
)
def closing_bet_days(
    _: Reader,
    limit: Annotated[int, Ge(1), Le(5000), DIGITS, Query(description="How many days")] = 365,
) -> dict[str, Any]:
    """The days holding a completed closing-bet decision, newest first, each with the
    phases decided (an empty list when none is stored yet)."""
    return {"simulated": is_simulated(), "items": closing_bet_dates(limit)}


@router.get(
    "/closing-bet/{date}",
    response_model=Decision,
    summary="A day's closing-bet decision",
    responses=problem_responses(404),
)
def closing_bet_day(
    _: Reader,
    date: Annotated[IsoDate, Path(description="Trading day (YYYY-MM-DD)")],
    phase: Annotated[Phase | None, Query(description=_PHASE)] = None,
) -> dict[str, Any]:
    """The grade cards of ``date``'s decision of ``phase``. 404 when that decision is not
    stored (not collected yet)."""
    return closing_bet_decision(date, phase, field_prefix="query.")

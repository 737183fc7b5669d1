"""API routes: scan signals — each strategy's latest decision, every signal a page at a time
(keyset pagination), and one signal with its outcome and latest intraday price."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from quantbeat.api.cursors import MAX_CURSOR, MAX_ID, date_id_key, encode_cursor
from quantbeat.api.params import DIGITS, IsoDate
from quantbeat.api.problems import problem_responses
from quantbeat.api.security import Reader
from quantbeat.services.announce import is_simulated
from quantbeat.services.args import grade_ladder
from quantbeat.services.signal_reads import MAX_PAGE, latest_signals, list_signals, signal_detail
from quantbeat.services.strategies import scan_strategy_names

router = APIRouter(tags=["signals"])

#: The query parameters naming a strategy, a market or a grade (the enums are what is
#: registered when the API starts).
StrategyQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="A registered scan strategy",
        json_schema_extra={"enum": list(scan_strategy_names())},
    ),
]
MarketQuery = Annotated[Literal["KOSPI", "KOSDAQ"] | None, Query(description="A KRX market")]
_GRADES = "closing bet S, A, B, C; VCP Textbook, Strong, Good, Developing, Weak"


class SignalItem(BaseModel):
    """A stored signal: ``score`` in the strategy's points, ``entry_price`` in KRW, ``gate``
    the Market Gate colour it was decided under (``None``: no gate computed), ``phase``
    ``final`` (the evening decision) or ``preliminary`` (the 15:10 buy-window one)."""

    model_config = ConfigDict(extra="allow")

    id: int
    trade_date: dt.date
    strategy: str
    phase: str
    instrument: str
    market: str
    ticker: str
    name: str | None
    score: float | None
    grade: str | None
    entry_price: float | None
    status: str | None
    volume_ratio: float | None
    reasons: list[str]
    gate: str | None
    source: str | None = None
    simulated: bool


class RankedSignal(SignalItem):
    """A candidate of a scan run, ``rank`` 1 the best (the scan's own order)."""

    rank: int


class StrategySignals(BaseModel):
    """A strategy's latest completed scan run and its candidates (``run_id`` ``None``: no
    completed run yet)."""

    model_config = ConfigDict(extra="allow")

    strategy: str
    label: str
    run_id: int | None
    trade_date: dt.date | None
    phase: str | None
    finished_at: dt.datetime | None
    simulated: bool
    count: int
    signals: list[RankedSignal]


class LatestSignals(BaseModel):
    model_config = ConfigDict(extra="allow")

    simulated: bool
    strategies: list[StrategySignals]


class SignalPage(BaseModel):
    """A page of signals, newest first; ``next_cursor`` fetches the next (``None``: last
    page); ``simulated`` whether any of them (or this deployment's market) is simulated."""

    model_config = ConfigDict(extra="allow")

    items: list[SignalItem]
    next_cursor: str | None
    simulated: bool


class Outcome(BaseModel):
    """Where the signal went (the track record): ``state`` pending, open, closed (``reason``
    the exit rule), expired or void; returns and excursions are fractions of the entry."""

    model_config = ConfigDict(extra="allow")

    state: str
    rules: str
    reason: str | None
    note: str | None
    entry_date: dt.date | None
    entry_price: float | None
    exit_date: dt.date | None
    exit_price: float | None
    gross_return: float | None
    net_return: float | None
    costs: float | None
    mfe: float | None
    mae: float | None
    sessions_held: int | None
    evaluated_through: dt.date | None


class Snapshot(BaseModel):
    """The instrument's latest intraday snapshot: the day so far at ``taken_at``, ``last``
    the last price (KRW), ``vs_entry`` it against the signal's entry (a fraction)."""

    model_config = ConfigDict(extra="allow")

    trade_date: dt.date
    taken_at: dt.datetime
    open: float | None
    high: float | None
    low: float | None
    last: float | None
    volume: float | None
    value: float | None
    vs_entry: float | None
    simulated: bool


class SignalDetail(SignalItem):
    """A signal with the values its decision used (``inputs``), the exit plan's ``stop`` and
    ``target`` from its entry (KRW; ``None`` where the plan has none), the AI analysis's news
    catalyst, its outcome and the latest snapshot."""

    inputs: dict[str, Any] | None
    stop: float | None
    target: float | None
    news: str | None
    outcome: Outcome | None
    snapshot: Snapshot | None


@router.get(
    "/signals/latest", response_model=LatestSignals, summary="Each strategy's latest decision"
)
def signals_latest(
    request: Request,
    _: Reader,
    strategy: StrategyQuery = None,
    market: MarketQuery = None,
    min_grade: Annotated[
        str | None,
        Query(
            max_length=16,
            description=f"At least this grade, on its own strategy's ladder ({_GRADES}): "
            "min_grade=A keeps closing-bet S and A and no VCP signal",
            json_schema_extra={"enum": list(grade_ladder())},
        ),
    ] = None,
) -> Response:
    """The latest completed scan run of every registered strategy (or ``strategy``), with its
    candidates ranked as the scan ranks them. A strategy without a completed run is listed
    with ``run_id`` null and no signals. Answers are reused for up to 2 s (see
    ``quantbeat.api.readcache``)."""
    return request.app.state.reads.json(  # type: ignore[no-any-return]
        request,
        ("signals/latest", strategy, market, min_grade),
        LatestSignals,
        lambda: latest_signals(
            strategy=strategy, market=market, min_grade=min_grade, field_prefix="query."
        ),
    )


@router.get("/signals", response_model=SignalPage, summary="Stored signals, newest first")
def signals_page(
    _: Reader,
    date: Annotated[IsoDate | None, Query(description="Trading day (YYYY-MM-DD)")] = None,
    strategy: StrategyQuery = None,
    grade: Annotated[
        str | None,
        Query(
            max_length=16,
            description=f"Exactly this grade ({_GRADES})",
            json_schema_extra={"enum": list(grade_ladder())},
        ),
    ] = None,
    market: MarketQuery = None,
    phase: Annotated[
        Literal["final", "preliminary"] | None,
        Query(description="final (the evening decision) or preliminary (the 15:10 one)"),
    ] = None,
    limit: Annotated[int, Ge(1), Le(MAX_PAGE), DIGITS, Query(description="Signals per page")] = 50,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR,
            description="The previous page's next_cursor, unchanged",
        ),
    ] = None,
) -> dict[str, Any]:
    """Every stored signal matching the filters, newest first (trade date, then id,
    descending), ``limit`` at a time: pass ``next_cursor`` back as ``cursor`` for the next
    page (``null``: this was the last)."""
    after = None if cursor is None else date_id_key(cursor)
    items, more = list_signals(
        after=after,
        limit=limit,
        trade_date=date,
        strategy=strategy,
        grade=grade,
        market=market,
        phase=phase,
        field_prefix="query.",
    )
    next_cursor = None
    if more and items:
        last = items[-1]
        next_cursor = encode_cursor([last["trade_date"], last["id"]])
    simulated = is_simulated() or any(item["simulated"] for item in items)
    return {"items": items, "next_cursor": next_cursor, "simulated": simulated}


@router.get(
    "/signals/{signal_id}",
    response_model=SignalDetail,
    summary="One signal",
    responses=problem_responses(404),
)
def signal_one(
    _: Reader,
    signal_id: Annotated[int, Ge(1), Le(MAX_ID), DIGITS, Path(description="The signal's id")],
) -> dict[str, Any]:
    """The signal with its inputs, stop and target, news, its track-record outcome
    (``null``: not followed yet) and the instrument's latest intraday snapshot (``null``:
    none stored). 404 when no such signal."""
    return signal_detail(signal_id)

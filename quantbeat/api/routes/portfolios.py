"""API routes: paper portfolios — the list, one portfolio, its positions and its daily
equity (:mod:`quantbeat.services.portfolio`). Amounts are KRW, returns fractions."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from quantbeat.api.params import IsoDate
from quantbeat.api.problems import problem_responses
from quantbeat.api.security import Reader
from quantbeat.services import portfolio

router = APIRouter(tags=["portfolios"])
#: A portfolio's routes answer 404 when there is none of that name.
_UNKNOWN = problem_responses(404)

PortfolioName = Annotated[
    str,
    Path(
        pattern=portfolio.NAME_RE.pattern,
        max_length=64,
        description="The portfolio's name (letters, digits, _ . -)",
    ),
]


class Position(BaseModel):
    """A paper position opened from a signal: prices are fills (KRW per share),
    ``realized_pnl`` after every cost once closed, ``unrealized_pnl`` at the last mark while
    open."""

    model_config = ConfigDict(extra="allow")

    signal_id: int
    market: str
    ticker: str
    name: str | None
    strategy: str
    phase: str
    grade: str | None
    state: str
    quantity: int
    opened_on: dt.date
    entry_price: float | None
    stop: float | None
    last_price: float | None
    closed_on: dt.date | None
    exit_price: float | None
    exit_reason: str | None
    realized_pnl: float | None
    unrealized_pnl: float | None


class PortfolioSummary(BaseModel):
    """A portfolio and its latest day (``through`` ``None``: not updated yet); ``return``
    is equity over capital minus 1."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    simulated: bool
    capital: float
    start_date: dt.date
    state: str
    rules: dict[str, Any]
    through: dt.date | None
    cash: float | None
    market_value: float | None
    equity: float | None
    return_: float | None = Field(alias="return")
    positions: int


class PortfolioDetail(PortfolioSummary):
    """A portfolio with its open positions and statistics: entries, refused entries, exits,
    realized P&L, fees, tax, the maximum drawdown of daily equity (a fraction ≤ 0) and the
    days stepped."""

    open: list[Position]
    entries: int
    refused: int
    exits: int
    realized: float | None
    fees: float | None
    tax: float | None
    max_drawdown: float | None
    days: int


class PortfolioList(BaseModel):
    model_config = ConfigDict(extra="allow")

    simulated: bool
    items: list[PortfolioSummary]


class Positions(BaseModel):
    model_config = ConfigDict(extra="allow")

    portfolio: str
    simulated: bool
    state: str | None
    items: list[Position]


class EquityDay(BaseModel):
    """A portfolio's end of day: cash + market value = equity; ``pnl`` the day's change,
    ``realized`` the day's exits; ``blocked`` why new entries were refused (``None``: they
    were not)."""

    model_config = ConfigDict(extra="allow")

    trade_date: dt.date
    cash: float | None
    market_value: float | None
    equity: float | None
    pnl: float | None
    realized: float | None
    positions: int
    blocked: str | None


class Equity(BaseModel):
    model_config = ConfigDict(extra="allow")

    portfolio: str
    simulated: bool
    since: dt.date | None
    items: list[EquityDay]


@router.get("/portfolios", response_model=PortfolioList, summary="Every paper portfolio")
def portfolios(_: Reader) -> dict[str, Any]:
    """Every portfolio with its latest equity and return, by name."""
    found = portfolio.list_portfolios()
    return {"simulated": any(p["simulated"] for p in found), "items": found}


@router.get(
    "/portfolios/{name}",
    response_model=PortfolioDetail,
    summary="One portfolio",
    responses=_UNKNOWN,
)
def portfolio_one(_: Reader, name: PortfolioName) -> dict[str, Any]:
    """The portfolio with its open positions and statistics. 404 when there is none of that
    name."""
    return portfolio.describe(name)


@router.get(
    "/portfolios/{name}/positions",
    response_model=Positions,
    summary="A portfolio's positions",
    responses=_UNKNOWN,
)
def portfolio_positions(
    _: Reader,
    name: PortfolioName,
    state: Annotated[
        Literal["open", "closed"] | None, Query(description="open or closed; default both")
    ] = None,
) -> dict[str, Any]:
    """The portfolio's positions (of ``state``), newest opened first. 404 when there is no
    portfolio of that name."""
    items = portfolio.positions(name, state=state)
    return {
        "portfolio": name,
        "simulated": portfolio.is_simulated(name),
        "state": state,
        "items": items,
    }


@router.get(
    "/portfolios/{name}/equity",
    response_model=Equity,
    summary="A portfolio's daily equity",
    responses=_UNKNOWN,
)
def portfolio_equity(
    _: Reader,
    name: PortfolioName,
    since: Annotated[IsoDate | None, Query(description="From this day on (YYYY-MM-DD)")] = None,
) -> dict[str, Any]:
    """The portfolio's days (cash, market value, equity, P&L), oldest first. 404 when there
    is no portfolio of that name."""
    items = portfolio.history(name, since=since)
    return {
        "portfolio": name,
        "simulated": portfolio.is_simulated(name),
        "since": since,
        "items": items,
    }

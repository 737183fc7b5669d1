"""API routes: the stored AI analyses (Gemini, or the offline rule-based analyzer) and the
news items they read. Read-only: analyses are made by the ``ai`` workers (and
``quantbeat analyze``), never by a GET."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from quantbeat.api.params import DIGITS, IsoDate
from quantbeat.api.problems import fields_as, problem_docs
from quantbeat.api.routes.indicators import INSTRUMENT_PATTERN
from quantbeat.api.security import Reader
from quantbeat.services.ai import instrument_analyses, stored_analyses, stored_news
from quantbeat.services.strategies import scan_strategy_names

router = APIRouter(tags=["analyses"])


class Analysis(BaseModel):
    """One stored analysis of an instrument's candidate on a trading day.

    ``status`` ``succeeded`` or ``failed`` (``error`` says why); ``analyzer`` ``gemini`` or
    ``offline`` (rule-based, no AI: ``offline`` true); ``news_score`` 0–3, ``sentiment``
    −1…1, ``confidence`` 0…1; token counts as the provider reported them (``null``
    offline); ``simulated``: the instrument belongs to the simulated market."""

    model_config = ConfigDict(extra="allow")

    id: int
    instrument: str = Field(description="MARKET:TICKER")
    name: str
    trade_date: dt.date
    strategy: str
    status: str
    analyzer: str
    offline: bool
    model: str
    prompt_version: str
    news_score: int | None
    sentiment: float | None
    confidence: float | None
    catalyst: str | None
    risk_flags: Any
    news_count: int
    tokens: int | None
    prompt_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    latency_ms: float | None
    attempts: int
    error: str | None
    recommendation: str | None
    details: Any
    simulated: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class Analyses(BaseModel):
    """The analyses of a trading day (``trade_date`` ``null``: none is stored yet), the best
    news score first."""

    model_config = ConfigDict(extra="allow")

    trade_date: dt.date | None
    strategy: str | None
    simulated: bool = Field(description="Any item is on simulated market data")
    items: list[Analysis]


class NewsItemOut(BaseModel):
    """A stored news item: its feed, title, summary, link, when it was published (``null``:
    the feed gave no date) and stored, the instruments it mentions, and ``simulated`` (an
    item of the simulated news source)."""

    model_config = ConfigDict(extra="allow")

    id: int
    source: str
    title: str
    summary: str
    url: str
    published_at: dt.datetime | None
    stored_at: dt.datetime | None
    simulated: bool
    instruments: list[str]


class InstrumentAnalyses(BaseModel):
    """Every analysis of one instrument on a trading day (one per strategy, model and prompt
    version) and the stored news an analysis of that day reads, newest first."""

    model_config = ConfigDict(extra="allow")

    instrument: str
    name: str
    trade_date: dt.date
    simulated: bool
    analyses: list[Analysis]
    news: list[NewsItemOut]


class News(BaseModel):
    """The news items of a calendar day in the deployment's time zone (``date`` ``null``:
    no news is stored yet), newest first."""

    model_config = ConfigDict(extra="allow")

    date: dt.date | None
    simulated: bool = Field(description="Any item comes from the simulated news source")
    items: list[NewsItemOut]


@router.get("/analyses", response_model=Analyses, summary="A trading day's AI analyses")
def analyses(
    _: Reader,
    date: Annotated[
        IsoDate | None,
        Query(description="Trading day (YYYY-MM-DD); default: the latest one analysed"),
    ] = None,
    strategy: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only this scan strategy's (e.g. closing_bet, vcp)",
            json_schema_extra={"enum": list(scan_strategy_names())},
        ),
    ] = None,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="Most analyses listed")] = 200,
) -> dict[str, Any]:
    """The analyses stored for ``date`` (of ``strategy``), highest news score first: Gemini's,
    or the offline analyzer's (``offline`` true) when no Gemini key is set. An empty list when
    nothing is stored; 422 naming ``query.strategy`` for a strategy that does not exist."""
    return stored_analyses(date, strategy, limit=limit, field="query.strategy")


@router.get(
    "/analyses/{instrument}",
    response_model=InstrumentAnalyses,
    summary="One instrument's analyses and the news they read",
    responses=problem_docs(s404="Unknown instrument, or no analysis of it (on the day)"),
)
def analyses_of_instrument(
    _: Reader,
    instrument: Annotated[
        str,
        Path(pattern=INSTRUMENT_PATTERN, description="MARKET:TICKER, or a ticker on one market"),
    ],
    date: Annotated[
        IsoDate | None,
        Query(description="Trading day (YYYY-MM-DD); default: the latest it was analysed"),
    ] = None,
) -> dict[str, Any]:
    """Every analysis stored for ``instrument`` on ``date``, with the news items an analysis
    of that day reads. 404 when the instrument is unknown or has no analysis (on ``date``);
    422 for a ticker listed on several markets (give MARKET:TICKER)."""
    with fields_as({"instrument": "path.instrument", "date": "query.date"}):
        return instrument_analyses(instrument, date)


@router.get("/news", response_model=News, summary="A day's news items")
def news(
    _: Reader,
    date: Annotated[
        IsoDate | None,
        Query(description="Calendar day (YYYY-MM-DD, local time); default: the newest item's"),
    ] = None,
    limit: Annotated[int, Ge(1), Le(500), DIGITS, Query(description="Most items listed")] = 100,
) -> dict[str, Any]:
    """The news items published on ``date`` in the deployment's time zone (an undated item
    counts on the day it was stored), newest first, with their summaries and the instruments
    they mention. An empty list when none is stored."""
    return stored_news(date, limit=limit, field="query.date")

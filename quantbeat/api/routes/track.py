"""API routes: the track record — KPIs of every followed signal by strategy and, within
each, by grade (:func:`quantbeat.services.track_record.report`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from quantbeat.api.params import IsoDate
from quantbeat.api.security import Reader
from quantbeat.services.args import parse_strategy
from quantbeat.services.strategies import scan_strategy_names
from quantbeat.services.track_record import report

router = APIRouter(tags=["track-record"])


class Kpis(BaseModel):
    """KPIs of closed signals' net returns (fractions, after costs and the dated tax):
    ``count`` closed, ``wins`` (> 0), ``win_rate``, ``mean``/``median``, ``profit_factor``
    (``None`` without a loss), ``expectancy``, the longest losing streak; beside them the
    signals ``open``, ``pending``, ``expired`` and ``void``."""

    model_config = ConfigDict(extra="allow")

    count: int
    wins: int
    win_rate: float | None
    mean: float | None
    median: float | None
    profit_factor: float | None
    expectancy: float | None
    max_consecutive_losses: int
    open: int
    pending: int
    expired: int
    void: int


class TrackRecord(BaseModel):
    """The track record: ``groups`` by strategy (preliminary closing bets apart as
    ``closing_bet (preliminary)``), ``grades`` each strategy's KPIs by grade, ``total`` all
    of them (``None``: nothing followed yet), outcome ``states`` and exit ``reasons``
    counted, the exit ``rules`` versions and what the nightly walk-forward backtest
    ``expected``."""

    model_config = ConfigDict(extra="allow")

    strategy: str | None
    since: dt.date | None
    by: str | None
    groups: dict[str, Kpis]
    grades: dict[str, dict[str, Kpis]]
    total: Kpis | None
    states: dict[str, int]
    reasons: dict[str, int]
    simulated: bool
    rules: dict[str, str]
    expected: dict[str, Any]


@router.get("/track-record", response_model=TrackRecord, summary="KPIs by strategy and grade")
def track_record(
    _: Reader,
    strategy: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only this registered strategy",
            json_schema_extra={"enum": list(scan_strategy_names())},
        ),
    ] = None,
    since: Annotated[
        IsoDate | None, Query(description="Only signals from this day on (YYYY-MM-DD)")
    ] = None,
) -> dict[str, Any]:
    """How the stored signals did, each followed to its exit under its strategy's exit plan
    (empty groups and ``total`` null before anything is followed)."""
    name = (
        None if strategy is None else parse_strategy(strategy, field="query.strategy", exact=True)
    )
    return report(strategy=name, since=since, by="strategy", grades=True)

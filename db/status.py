"""What is stored, dataset by dataset: the latest day (or moment) each holds and whether that
latest data is simulated — the reads behind the API's data status page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from db.models import (
    AiAnalysis,
    DailyCandle,
    Instrument,
    IntradaySnapshot,
    InvestorFlow,
    MarketGateRow,
    NewsItem,
    ReferenceBar,
    ReferenceSeriesRow,
    Signal,
)
from db.store import as_utc


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))  # SQLite: max() of a date column is text


def _moment(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):  # SQLite: max() over an expression is text
        value = dt.datetime.fromisoformat(str(value))
    return as_utc(value)


def _any(session: Session, *conditions: ColumnElement[bool]) -> bool:
    return bool(session.execute(select(exists().where(*conditions))).scalar())


def latest_stored(session: Session, *, simulated_source: str = "simulated") -> dict[str, Any]:
    """Per dataset ``{"latest", "simulated"}``: the latest trading day (``candles``,
    ``flows``, ``reference``, ``gates``, ``signals``, ``analyses``; a date) or moment
    (``snapshots``, ``news``; an aware UTC datetime) stored, ``None`` when nothing is, and
    whether the rows of that latest day/moment are simulated (a row's ``simulated`` flag, or
    its provider or instrument source being ``simulated_source``; ``False`` when nothing is
    stored)."""
    out: dict[str, Any] = {}

    day = _date(session.execute(select(func.max(DailyCandle.trade_date))).scalar())
    out["candles"] = {
        "latest": day,
        "simulated": day is not None
        and _any(session, DailyCandle.trade_date == day, DailyCandle.source == simulated_source),
    }
    day = _date(session.execute(select(func.max(InvestorFlow.trade_date))).scalar())
    out["flows"] = {
        "latest": day,
        "simulated": day is not None
        and _any(session, InvestorFlow.trade_date == day, InvestorFlow.source == simulated_source),
    }
    day = _date(session.execute(select(func.max(ReferenceBar.trade_date))).scalar())
    out["reference"] = {
        "latest": day,
        "simulated": day is not None
        and _any(
            session,
            ReferenceBar.trade_date == day,
            ReferenceSeriesRow.id == ReferenceBar.series_id,
            ReferenceSeriesRow.simulated.is_(True),
        ),
    }
    gate = session.execute(
        select(MarketGateRow.trade_date, MarketGateRow.simulated)
        .order_by(MarketGateRow.trade_date.desc(), MarketGateRow.as_of.desc())
        .limit(1)
    ).first()
    out["gates"] = {
        "latest": None if gate is None else _date(gate[0]),
        "simulated": bool(gate is not None and gate[1]),
    }
    for name, model in (("signals", Signal), ("analyses", AiAnalysis)):
        day = _date(session.execute(select(func.max(model.trade_date))).scalar())
        out[name] = {
            "latest": day,
            "simulated": day is not None
            and _any(
                session,
                model.trade_date == day,
                Instrument.id == model.instrument_id,
                Instrument.source == simulated_source,
            ),
        }
    snapshot = session.execute(
        select(IntradaySnapshot.taken_at, IntradaySnapshot.simulated)
        .order_by(IntradaySnapshot.taken_at.desc())
        .limit(1)
    ).first()
    out["snapshots"] = {
        "latest": None if snapshot is None else _moment(snapshot[0]),
        "simulated": bool(snapshot is not None and snapshot[1]),
    }
    moment = func.coalesce(NewsItem.published_at, NewsItem.created_at)
    news = session.execute(
        select(moment, NewsItem.simulated).order_by(moment.desc(), NewsItem.id.desc()).limit(1)
    ).first()
    out["news"] = {
        "latest": None if news is None else _moment(news[0]),
        "simulated": bool(news is not None and news[1]),
    }
    return out

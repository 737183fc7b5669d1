"""Intraday snapshots (:class:`db.models.IntradaySnapshot`): the day so far of instruments
and indices, stored as history. Each call runs in the caller's session; callers commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Instrument, IntradaySnapshot, ReferenceSeriesRow
from db.store import insert_for, to_store


def tickers_to_ids(session: Session, markets: Sequence[str]) -> dict[str, int]:
    """``{ticker: instrument id}`` of the listed instruments of ``markets`` (KRX tickers are
    unique across KOSPI and KOSDAQ)."""
    rows = session.execute(
        select(Instrument.ticker, Instrument.id).where(
            Instrument.market.in_(list(markets)), Instrument.listing_status == "listed"
        )
    ).all()
    return {ticker: ident for ticker, ident in rows}


def store_snapshots(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert snapshot rows (each with exactly one of ``instrument_id``/``series_id``); a
    row already stored for the same instrument or series and moment is kept as it is.
    Returns how many were new."""
    table = IntradaySnapshot.__table__
    new = 0
    for key in ("instrument_id", "series_id"):
        batch = [dict(r) for r in rows if r.get(key) is not None]
        if not batch:
            continue
        for r in batch:
            r.setdefault("instrument_id", None)
            r.setdefault("series_id", None)
        stmt = (
            insert_for(session, table)  # type: ignore[arg-type]
            .on_conflict_do_nothing(index_elements=[key, "taken_at"])
            .returning(table.c.id)
        )
        new += len(session.execute(stmt, batch).all())
    return new


def latest_snapshot(session: Session, trade_date: dt.date | None = None) -> dt.datetime | None:
    """When the latest snapshot was taken (of ``trade_date`` when given), timezone-aware:
    SQLite keeps no zone and gives the stored UTC time naive, PostgreSQL an aware one."""
    query = select(func.max(IntradaySnapshot.taken_at))
    if trade_date is not None:
        query = query.where(IntradaySnapshot.trade_date == trade_date)
    found: dt.datetime | str | None = session.execute(query).scalar_one_or_none()
    if isinstance(found, str):  # SQLite's max() may give the stored text
        found = dt.datetime.fromisoformat(found)
    if found is not None and found.tzinfo is None:
        found = found.replace(tzinfo=dt.UTC)
    return found


def snapshot_counts(session: Session, taken_at: dt.datetime) -> tuple[int, int]:
    """(instrument rows, series rows) stored for ``taken_at``."""
    instruments = session.execute(
        select(func.count()).where(
            IntradaySnapshot.taken_at == taken_at, IntradaySnapshot.instrument_id.is_not(None)
        )
    ).scalar_one()
    series = session.execute(
        select(func.count()).where(
            IntradaySnapshot.taken_at == taken_at, IntradaySnapshot.series_id.is_not(None)
        )
    ).scalar_one()
    return int(instruments), int(series)


def snapshot_bars(
    session: Session, trade_date: dt.date, at_or_before: dt.datetime
) -> dict[int, tuple[dt.datetime, float, float, float, float, float, float]]:
    """Each instrument's latest snapshot of ``trade_date`` taken at or before
    ``at_or_before``: ``{instrument_id: (taken_at, open, high, low, last, volume, value)}``
    (volume and value 0.0 when unknown)."""
    latest = (
        select(
            IntradaySnapshot.instrument_id.label("iid"),
            func.max(IntradaySnapshot.taken_at).label("at"),
        )
        .where(
            IntradaySnapshot.trade_date == trade_date,
            IntradaySnapshot.instrument_id.is_not(None),
            IntradaySnapshot.taken_at <= to_store(at_or_before),
        )
        .group_by(IntradaySnapshot.instrument_id)
        .subquery()
    )
    rows = session.execute(
        select(
            IntradaySnapshot.instrument_id,
            IntradaySnapshot.taken_at,
            IntradaySnapshot.open,
            IntradaySnapshot.high,
            IntradaySnapshot.low,
            IntradaySnapshot.close,
            IntradaySnapshot.volume,
            IntradaySnapshot.value,
        ).join(
            latest,
            (IntradaySnapshot.instrument_id == latest.c.iid)
            & (IntradaySnapshot.taken_at == latest.c.at),
        )
    ).all()
    return {
        int(i): (at, float(o), float(h), float(lo), float(c), float(v or 0.0), float(val or 0.0))
        for i, at, o, h, lo, c, v, val in rows
        if i is not None
    }


def series_snapshots(
    session: Session, trade_date: dt.date, at_or_before: dt.datetime
) -> dict[str, tuple[dt.datetime, float, float | None]]:
    """Each reference series' latest snapshot of ``trade_date`` taken at or before
    ``at_or_before``: ``{code: (taken_at, last, cumulative volume or None)}``."""
    latest = (
        select(
            IntradaySnapshot.series_id.label("sid"),
            func.max(IntradaySnapshot.taken_at).label("at"),
        )
        .where(
            IntradaySnapshot.trade_date == trade_date,
            IntradaySnapshot.series_id.is_not(None),
            IntradaySnapshot.taken_at <= to_store(at_or_before),
        )
        .group_by(IntradaySnapshot.series_id)
        .subquery()
    )
    rows = session.execute(
        select(
            ReferenceSeriesRow.code,
            IntradaySnapshot.taken_at,
            IntradaySnapshot.close,
            IntradaySnapshot.volume,
        )
        .join(
            latest,
            (IntradaySnapshot.series_id == latest.c.sid)
            & (IntradaySnapshot.taken_at == latest.c.at),
        )
        .join(ReferenceSeriesRow, ReferenceSeriesRow.id == IntradaySnapshot.series_id)
    ).all()
    return {str(code): (at, float(c), None if v is None else float(v)) for code, at, c, v in rows}


def instrument_snapshot(session: Session, instrument_id: int) -> IntradaySnapshot | None:
    """The latest snapshot of instrument ``instrument_id`` (any day), if any."""
    return session.execute(
        select(IntradaySnapshot)
        .where(IntradaySnapshot.instrument_id == instrument_id)
        .order_by(IntradaySnapshot.taken_at.desc())
        .limit(1)
    ).scalar_one_or_none()

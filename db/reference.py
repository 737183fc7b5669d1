"""Reference series (indices, sector ETFs, USD/KRW), their daily bars, the stored Market
Gates and market events. Each call runs in the caller's session; callers commit."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import MarketGateRow, ReferenceBar, ReferenceSeriesRow
from db.store import UpsertCounts, insert_for, to_store, upsert_rows
from quant.market.types import ReferenceSeries

#: Columns a stored gate row carries besides its key (what :func:`store_gate` writes).
GATE_FIELDS: tuple[str, ...] = (
    "phase",
    "color",
    "score",
    "reason",
    "usdkrw",
    "fx_warning",
    "components",
    "sectors",
    "kodex_status",
    "params",
    "simulated",
)


def ensure_series(
    session: Session, series: Sequence[ReferenceSeries], *, source: str, simulated: bool
) -> dict[str, int]:
    """Insert the series not known yet (name, kind, source and whether it is simulated are
    updated on known ones); return ``{code: id}`` for every one given."""
    if series:
        upsert_rows(
            session,
            ReferenceSeriesRow.__table__,  # type: ignore[arg-type]
            [
                {
                    "code": s.code,
                    "kind": s.kind.value,
                    "name": s.name,
                    "currency": s.currency,
                    "source": source,
                    "simulated": simulated,
                }
                for s in series
            ],
            key=("code",),
            compare=("kind", "name", "currency", "source", "simulated"),
        )
    codes = [s.code for s in series]
    rows = session.execute(
        select(ReferenceSeriesRow.code, ReferenceSeriesRow.id).where(
            ReferenceSeriesRow.code.in_(codes)
        )
    ).all()
    return {code: ident for code, ident in rows}


def _optional(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def upsert_bars(
    session: Session, frame: pd.DataFrame, ids: Mapping[str, int], *, source: str
) -> UpsertCounts:
    """Upsert checked reference bars (``REFERENCE_BAR_COLUMNS``; every ``code`` in ``ids``);
    an unchanged bar is not rewritten."""
    rows = [
        {
            "series_id": ids[str(code)],
            "trade_date": day,
            "open": float(o),
            "high": float(h),
            "low": float(lo),
            "close": float(c),
            "volume": _optional(v),
            "value": _optional(val),
            "source": source,
        }
        for code, day, o, h, lo, c, v, val in frame[
            ["code", "trade_date", "open", "high", "low", "close", "volume", "value"]
        ].itertuples(index=False, name=None)
    ]
    return upsert_rows(
        session,
        ReferenceBar.__table__,  # type: ignore[arg-type]
        rows,
        key=("series_id", "trade_date"),
        compare=("open", "high", "low", "close", "volume", "value", "source"),
    )


def latest_bar_date(session: Session, codes: Sequence[str]) -> dt.date | None:
    """The oldest of the latest stored sessions of ``codes`` (``None`` when any has none):
    where an incremental collection resumes."""
    latest: dt.date | None = None
    for code in codes:
        day = session.execute(
            select(ReferenceBar.trade_date)
            .join(ReferenceSeriesRow, ReferenceSeriesRow.id == ReferenceBar.series_id)
            .where(ReferenceSeriesRow.code == code)
            .order_by(ReferenceBar.trade_date.desc())
            .limit(1)
        ).scalar_one_or_none()
        if day is None:
            return None
        latest = day if latest is None or day < latest else latest
    return latest


def load_bars(
    session: Session, codes: Sequence[str], sessions: Sequence[dt.date]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Closes and volumes of each of ``codes`` aligned on ``sessions`` (NaN where a bar is
    missing; volume NaN where the provider has none). A code without any bar in the window is
    absent from the result."""
    if not sessions:
        return {}
    index = {day: i for i, day in enumerate(sessions)}
    rows = session.execute(
        select(
            ReferenceSeriesRow.code,
            ReferenceBar.trade_date,
            ReferenceBar.close,
            ReferenceBar.volume,
        )
        .join(ReferenceSeriesRow, ReferenceSeriesRow.id == ReferenceBar.series_id)
        .where(
            ReferenceSeriesRow.code.in_(list(codes)),
            ReferenceBar.trade_date >= sessions[0],
            ReferenceBar.trade_date <= sessions[-1],
        )
    ).all()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for code, day, close, volume in rows:
        at = index.get(day)
        if at is None:  # a bar on a day the calendar does not list as a session
            continue
        if code not in out:
            out[code] = (np.full(len(sessions), np.nan), np.full(len(sessions), np.nan))
        out[code][0][at] = close
        out[code][1][at] = np.nan if volume is None else volume
    return out


def series_names(session: Session) -> dict[str, str]:
    """``{code: name}`` of every known reference series."""
    rows = session.execute(select(ReferenceSeriesRow.code, ReferenceSeriesRow.name)).all()
    return {code: name for code, name in rows}


def any_simulated(session: Session, codes: Sequence[str]) -> bool:
    """Whether any of ``codes`` holds bars from a simulated source."""
    found = session.execute(
        select(ReferenceSeriesRow.id)
        .where(ReferenceSeriesRow.code.in_(list(codes)), ReferenceSeriesRow.simulated)
        .limit(1)
    ).scalar_one_or_none()
    return found is not None


def store_gate(
    session: Session, *, trade_date: dt.date, as_of: dt.datetime, fields: Mapping[str, Any]
) -> MarketGateRow:
    """Insert the gate of ``trade_date`` as of ``as_of`` (``fields``: :data:`GATE_FIELDS`), or
    replace the one stored for that same moment; returns the row."""
    table = MarketGateRow.__table__
    values = {k: fields[k] for k in GATE_FIELDS}
    as_of = to_store(as_of)
    stmt = insert_for(session, table).values(  # type: ignore[arg-type]
        trade_date=trade_date, as_of=as_of, **values
    )
    session.execute(stmt.on_conflict_do_update(index_elements=["trade_date", "as_of"], set_=values))
    row = session.execute(
        select(MarketGateRow).where(
            MarketGateRow.trade_date == trade_date, MarketGateRow.as_of == as_of
        )
    ).scalar_one()
    session.refresh(row)
    return row


def gate_before(session: Session, as_of: dt.datetime) -> MarketGateRow | None:
    """The latest stored gate strictly before ``as_of`` (any session)."""
    return session.execute(
        select(MarketGateRow)
        .where(MarketGateRow.as_of < to_store(as_of))
        .order_by(MarketGateRow.as_of.desc())
        .limit(1)
    ).scalar_one_or_none()


def latest_gate(
    session: Session, trade_date: dt.date | None = None, *, at_or_before: dt.datetime | None = None
) -> MarketGateRow | None:
    """The latest stored gate of ``trade_date`` (any session when ``None``), as of
    ``at_or_before`` at the latest when given."""
    query = select(MarketGateRow)
    if trade_date is not None:
        query = query.where(MarketGateRow.trade_date == trade_date)
    if at_or_before is not None:
        query = query.where(MarketGateRow.as_of <= to_store(at_or_before))
    return session.execute(query.order_by(MarketGateRow.as_of.desc()).limit(1)).scalar_one_or_none()


def gate_history(session: Session, *, limit: int = 30) -> list[MarketGateRow]:
    """The latest ``limit`` stored gates, newest first."""
    return list(
        session.execute(
            select(MarketGateRow).order_by(MarketGateRow.as_of.desc()).limit(limit)
        ).scalars()
    )

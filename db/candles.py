"""Reading candles into :class:`quant.indicators.Candles` (what indicators and scans consume).

Daily bars come from ``daily_candles`` (``time`` is the trade date), intraday bars from
``intraday_candles`` (``time`` is the UTC bar start, ``datetime64[s]``). A range is "the last
``limit`` bars whose time is in ``[start, end]``", the semantics of
:class:`quant.indicators.IndicatorRequest`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.models import DailyCandle, Instrument, IntradayCandle
from quant.errors import NotFound, ValidationError
from quant.indicators.candles import COLUMNS, Candles

_PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "traded_value")


def resolve_instrument(session: Session, name: str) -> tuple[int, str]:
    """``(id, "MARKET:TICKER")`` for ``MARKET:TICKER`` or a bare ticker.

    Raises:
        quant.errors.NotFound: no such instrument.
        quant.errors.ValidationError: a bare ticker listed on several markets (the message
            lists them; give the market).
    """
    if ":" in name:
        market, ticker = name.split(":", 1)
        found = session.execute(
            select(Instrument.id).where(Instrument.market == market, Instrument.ticker == ticker)
        ).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no instrument {name}")
        return int(found), name
    rows = session.execute(
        select(Instrument.id, Instrument.market, Instrument.listing_status).where(
            Instrument.ticker == name
        )
    ).all()
    if not rows:
        raise NotFound(f"no instrument with ticker {name}")
    listed = [r for r in rows if r[2] == "listed"]
    if len(rows) > 1 and len(listed) == 1:
        rows = listed  # a company that moved market keeps its ticker; the listed one counts
    if len(rows) > 1:
        options = ", ".join(sorted(f"{m}:{name}" for _, m, _ in rows))
        raise ValidationError(
            f"ticker {name} is listed on several markets ({options}); give MARKET:TICKER",
            field="instrument",
            value=name,
        )
    ident, market, _ = rows[0]
    return int(ident), f"{market}:{name}"


def _frame(rows: Sequence[Any], unit: str) -> Candles:
    if not rows:
        return Candles.empty(unit)
    columns = list(zip(*rows, strict=True))
    times = columns[0]
    if unit == "D":
        # PostgreSQL gives dates; SQLite's text() queries give ISO strings. Both convert.
        time_ = np.array(times, dtype="datetime64[D]")
    else:
        time_ = np.array(
            [(t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp() for t in times],
            dtype=np.int64,
        )
    values = {
        name: np.array(col, dtype=np.float64)
        for name, col in zip(_PRICE_COLUMNS, columns[1:], strict=True)
    }
    return Candles.from_columns(time_.astype(f"datetime64[{unit}]"), unit=unit, **values)


def load_candles(
    session: Session,
    instrument_id: int,
    interval: str,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    limit: int,
) -> Candles:
    """The last ``limit`` bars of one instrument in ``[start, end]``, oldest first."""
    if interval == "1d":
        model: Any = DailyCandle
        when = DailyCandle.trade_date
        unit = "D"
        stmt = select(when, *(getattr(model, c) for c in _PRICE_COLUMNS)).where(
            model.instrument_id == instrument_id
        )
    else:
        model = IntradayCandle
        when = IntradayCandle.ts
        unit = "s"
        stmt = select(when, *(getattr(model, c) for c in _PRICE_COLUMNS)).where(
            model.instrument_id == instrument_id, model.interval == interval
        )
    if start is not None:
        stmt = stmt.where(when >= start)
    if end is not None:
        stmt = stmt.where(when <= end)
    rows = session.execute(stmt.order_by(when.desc()).limit(limit)).all()
    return _frame(rows[::-1], unit)


def load_daily_universe(
    session: Session, instrument_ids: Sequence[int], *, end: dt.date, bars: int
) -> dict[int, Candles]:
    """The last ``bars`` daily bars up to ``end`` of each instrument (those with none are
    absent): the same bars :func:`load_candles` reads for each, in one query."""
    if not instrument_ids:
        return {}
    ids = sorted({int(i) for i in instrument_ids})
    cols = ", ".join(f"d.{c}" for c in _PRICE_COLUMNS)
    if session.get_bind().dialect.name == "postgresql":
        # One index range scan per instrument, newest first, stopping after `bars` rows.
        sql = text(
            f"SELECT i.id, d.trade_date, {cols} FROM unnest(CAST(:ids AS bigint[])) AS i(id) "  # noqa: S608
            "CROSS JOIN LATERAL (SELECT trade_date, open, high, low, close, volume, "
            "traded_value FROM daily_candles WHERE instrument_id = i.id AND trade_date <= :end "
            "ORDER BY trade_date DESC LIMIT :bars) AS d ORDER BY i.id, d.trade_date"
        )
        rows = session.execute(sql, {"ids": ids, "end": end, "bars": bars}).all()
    else:
        # SQLite: a window function over the instruments' rows.
        placeholders = ", ".join(f":i{n}" for n in range(len(ids)))
        sql = text(
            f"SELECT instrument_id, trade_date, {', '.join(_PRICE_COLUMNS)} FROM ("  # noqa: S608
            f"SELECT instrument_id, trade_date, {', '.join(_PRICE_COLUMNS)}, row_number() OVER "
            "(PARTITION BY instrument_id ORDER BY trade_date DESC) AS rn FROM daily_candles "
            f"WHERE instrument_id IN ({placeholders}) AND trade_date <= :end) "
            "WHERE rn <= :bars ORDER BY instrument_id, trade_date"
        )
        params: dict[str, Any] = {f"i{n}": v for n, v in enumerate(ids)}
        # ISO text, as the Date column stores it (no reliance on sqlite3's date adapter).
        params.update(end=end.isoformat(), bars=bars)
        rows = session.execute(sql, params).all()
    out: dict[int, Candles] = {}
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            out[int(rows[start][0])] = _frame([r[1:] for r in rows[start:i]], "D")
            start = i
    return out


def universe(session: Session, markets: Sequence[str]) -> list[tuple[int, str]]:
    """``(id, "MARKET:TICKER")`` of the listed instruments of ``markets``, by id."""
    rows = session.execute(
        select(Instrument.id, Instrument.market, Instrument.ticker)
        .where(Instrument.market.in_(list(markets)), Instrument.listing_status == "listed")
        .order_by(Instrument.id)
    ).all()
    return [(int(i), f"{m}:{t}") for i, m, t in rows]


assert set(_PRICE_COLUMNS) == set(COLUMNS)

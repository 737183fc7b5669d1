"""Reading candles into :class:`quant.indicators.Candles` (what indicators and scans consume).

Daily bars come from ``daily_candles`` (``time`` is the trade date), intraday bars from
``intraday_candles`` (``time`` is the UTC bar start, ``datetime64[s]``). A range is "the last
``limit`` bars whose time is in ``[start, end]``", the semantics of
:class:`quant.indicators.IndicatorRequest`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.bulk import copy_out
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


@dataclass(frozen=True)
class DailyBars:
    """Daily bars of many instruments as columns, sorted by instrument id, then date.

    ``columns`` holds :data:`_PRICE_COLUMNS` (NaN where a value is unknown)."""

    instrument_id: npt.NDArray[np.int64]
    time: npt.NDArray[np.datetime64]
    columns: dict[str, npt.NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.instrument_id)

    def spans(self) -> list[tuple[int, int, int]]:
        """``(instrument_id, first row, end row)`` of each instrument present."""
        if not len(self):
            return []
        cuts = np.flatnonzero(np.diff(self.instrument_id)) + 1
        lows = np.concatenate(([0], cuts))
        highs = np.concatenate((cuts, [len(self)]))
        return [
            (int(self.instrument_id[lo]), int(lo), int(hi))
            for lo, hi in zip(lows, highs, strict=True)
        ]

    def candles(self) -> dict[int, Candles]:
        """Each instrument's bars as :class:`Candles` (views into the columns, no copy)."""
        return {
            ident: Candles(
                time=self.time[lo:hi], **{c: self.columns[c][lo:hi] for c in _PRICE_COLUMNS}
            )
            for ident, lo, hi in self.spans()
        }


def _empty_bars() -> DailyBars:
    return DailyBars(
        np.array([], dtype=np.int64),
        np.array([], dtype="datetime64[D]"),
        {c: np.array([], dtype=np.float64) for c in _PRICE_COLUMNS},
    )


def concat_bars(parts: Sequence[DailyBars]) -> DailyBars:
    """``parts`` (each sorted, over disjoint instruments in increasing order) as one."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty_bars()
    if len(parts) == 1:
        return parts[0]
    return DailyBars(
        np.concatenate([p.instrument_id for p in parts]),
        np.concatenate([p.time for p in parts]),
        {c: np.concatenate([p.columns[c] for p in parts]) for c in _PRICE_COLUMNS},
    )


def align(
    bars: DailyBars, order: Sequence[int]
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``(times, rows, cols)``: the union of the bars' dates (sorted) and, for each bar, its
    row in ``times`` and its column — the position of its instrument in ``order``. Linear in
    the bars (dates are small integers: no sort of the bars).

    Raises:
        ValueError: a bar's instrument is not in ``order``.
    """
    if not len(bars):
        return np.array([], dtype="datetime64[D]"), np.array([], np.intp), np.array([], np.intp)
    days = bars.time.astype("datetime64[D]").astype(np.int64)
    low = int(days.min())
    offset = days - low
    present = np.zeros(int(offset.max()) + 1, dtype=bool)
    present[offset] = True
    times = (np.flatnonzero(present) + low).astype("datetime64[D]")
    rows = (np.cumsum(present) - 1)[offset]
    keys = np.asarray(order, dtype=np.int64)
    sorter = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys, bars.instrument_id, sorter=sorter)
    at = np.minimum(at, len(keys) - 1)
    cols = sorter[at]
    if not (keys[cols] == bars.instrument_id).all():
        raise ValueError("bars of an instrument outside the requested order")
    return times, rows, cols


#: The binary COPY row of a daily bar (the SELECT list of :func:`read_daily_bars`).
_BAR_TYPES = ("int8", "date", *("float8",) * len(_PRICE_COLUMNS))
#: NULL prices read as NaN, so every row has the same width (see :mod:`db.copybin`).
_BAR_SELECT = ", ".join(f"COALESCE(d.{c}, 'NaN'::float8)" for c in _PRICE_COLUMNS)


def read_daily_bars(
    session: Session,
    instrument_ids: Sequence[int],
    *,
    end: dt.date,
    start: dt.date | None = None,
    bars: int | None = None,
) -> DailyBars:
    """Daily bars of ``instrument_ids`` up to ``end``: those from ``start`` on, or (``bars``)
    each instrument's last ``bars`` — one query either way. On PostgreSQL the rows travel as
    ``COPY … TO STDOUT (FORMAT binary)`` straight into NumPy (:mod:`db.copybin`).

    Raises:
        ValueError: neither or both of ``start`` and ``bars`` given.
    """
    if (start is None) == (bars is None):
        raise ValueError("read_daily_bars needs exactly one of start and bars")
    ids = sorted({int(i) for i in instrument_ids})
    if not ids:
        return _empty_bars()
    if session.get_bind().dialect.name == "postgresql":
        if bars is None:
            query = (
                f"SELECT d.instrument_id, d.trade_date, {_BAR_SELECT} FROM daily_candles d "  # noqa: S608
                "WHERE d.instrument_id = ANY(%(ids)s) AND d.trade_date BETWEEN %(start)s "
                "AND %(end)s ORDER BY d.instrument_id, d.trade_date"
            )
        else:
            # One index range scan per instrument, newest first, stopping after `bars` rows.
            query = (
                f"SELECT i.id, d.trade_date, {_BAR_SELECT} "  # noqa: S608
                "FROM unnest(%(ids)s::bigint[]) AS i(id) CROSS JOIN LATERAL (SELECT * "
                "FROM daily_candles WHERE instrument_id = i.id AND trade_date <= %(end)s "
                "ORDER BY trade_date DESC LIMIT %(bars)s) AS d ORDER BY i.id, d.trade_date"
            )
        params = {"ids": ids, "start": start, "end": end, "bars": bars}
        columns = copy_out(session, query, params, _BAR_TYPES)
        return DailyBars(
            columns[0], columns[1], dict(zip(_PRICE_COLUMNS, columns[2:], strict=True))
        )
    return _sqlite_bars(session, ids, start=start, end=end, bars=bars)


def _sqlite_bars(
    session: Session,
    ids: Sequence[int],
    *,
    start: dt.date | None,
    end: dt.date,
    bars: int | None,
) -> DailyBars:
    """:func:`read_daily_bars` on SQLite (the embedded default): rows through the driver."""
    placeholders = ", ".join(f":i{n}" for n in range(len(ids)))
    cols = ", ".join(_PRICE_COLUMNS)
    params: dict[str, Any] = {f"i{n}": v for n, v in enumerate(ids)}
    # ISO text, as the Date column stores it (no reliance on sqlite3's date adapter).
    params["end"] = end.isoformat()
    if bars is None:
        assert start is not None
        params["start"] = start.isoformat()
        sql = text(
            f"SELECT instrument_id, trade_date, {cols} FROM daily_candles "  # noqa: S608
            f"WHERE instrument_id IN ({placeholders}) AND trade_date BETWEEN :start AND :end "
            "ORDER BY instrument_id, trade_date"
        )
    else:
        params["bars"] = bars
        sql = text(
            f"SELECT instrument_id, trade_date, {cols} FROM ("  # noqa: S608
            f"SELECT instrument_id, trade_date, {cols}, row_number() OVER "
            "(PARTITION BY instrument_id ORDER BY trade_date DESC) AS rn FROM daily_candles "
            f"WHERE instrument_id IN ({placeholders}) AND trade_date <= :end) "
            "WHERE rn <= :bars ORDER BY instrument_id, trade_date"
        )
    rows = session.execute(sql, params).all()
    if not rows:
        return _empty_bars()
    columns = list(zip(*rows, strict=True))
    return DailyBars(
        np.array(columns[0], dtype=np.int64),
        np.array(columns[1], dtype="datetime64[D]"),
        {
            c: np.array(values, dtype=np.float64)
            for c, values in zip(_PRICE_COLUMNS, columns[2:], strict=True)
        },
    )


def load_daily_universe(
    session: Session, instrument_ids: Sequence[int], *, end: dt.date, bars: int
) -> dict[int, Candles]:
    """The last ``bars`` daily bars up to ``end`` of each instrument (those with none are
    absent): the same bars :func:`load_candles` reads for each, in one query."""
    return read_daily_bars(session, instrument_ids, end=end, bars=bars).candles()


def universe(session: Session, markets: Sequence[str]) -> list[tuple[int, str]]:
    """``(id, "MARKET:TICKER")`` of the listed instruments of ``markets``, by id."""
    rows = session.execute(
        select(Instrument.id, Instrument.market, Instrument.ticker)
        .where(Instrument.market.in_(list(markets)), Instrument.listing_status == "listed")
        .order_by(Instrument.id)
    ).all()
    return [(int(i), f"{m}:{t}") for i, m, t in rows]


assert set(_PRICE_COLUMNS) == set(COLUMNS)

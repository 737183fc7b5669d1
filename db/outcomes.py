"""Reading what the track record follows and writing signal outcomes
(:class:`db.models.SignalOutcome`). Functions of a caller's session; callers commit.

Reads are bulk (one query per kind, chunked by the caller): the signals to follow with
their instrument's market and listing, the daily bars of many instruments over a date range,
the sessions of each market, the morning snapshots of a day. The write compares with what is
stored first and sends only the rows that differ, through an upsert whose guard also skips
identical rows — a re-run writes nothing and leaves ``updated_at`` alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from db.candles import read_daily_bars
from db.models import UNFOLLOWED_RULES, Instrument, IntradaySnapshot, Signal, SignalOutcome
from db.store import UpsertCounts, upsert_rows

#: The outcome columns an update may change (all but the key and the timestamp).
OUTCOME_COLUMNS: tuple[str, ...] = (
    "rules",
    "state",
    "reason",
    "note",
    "entry_date",
    "entry_price",
    "exit_date",
    "exit_price",
    "gross_return",
    "net_return",
    "costs",
    "mfe",
    "mae",
    "sessions_held",
    "evaluated_through",
)


@dataclass(frozen=True)
class FollowedSignal:
    """A signal with what its rules read: its instrument's market, listing status and
    source (``simulated`` marks simulated data)."""

    signal_id: int
    instrument_id: int
    strategy: str
    phase: str
    trade_date: dt.date
    entry_price: float | None
    status: str | None
    inputs: Any
    grade: str | None
    gate: str | None
    market: str
    ticker: str
    listing_status: str
    source: str


def signals_to_follow(
    session: Session,
    *,
    through: dt.date,
    current_rules: Collection[str],
    finished: Collection[str],
    everything: bool = False,
    strategy: str | None = None,
) -> list[FollowedSignal]:
    """The signals of sessions up to ``through`` whose outcome is not followed yet, not in a
    ``finished`` state, or computed under rules not in ``current_rules`` (every signal with
    ``everything``), optionally of one ``strategy``; ordered by instrument and date.

    Every signal has an outcome row from birth (:data:`db.models.UNFOLLOWED_RULES`), so the
    work list is read from ``signal_outcomes`` by index: the distinct states and rules are
    found by a loose index scan (a handful of values), then the ids of the rows in the
    unfinished states and under stale rules through their indexes, then those signals by
    primary key — never a scan of every signal (a join let the planner hash all of them)."""
    query = select(
        Signal.id,
        Signal.instrument_id,
        Signal.strategy,
        Signal.phase,
        Signal.trade_date,
        Signal.entry_price,
        Signal.status,
        Signal.inputs,
        Signal.grade,
        Signal.gate,
        Instrument.market,
        Instrument.ticker,
        Instrument.listing_status,
        Instrument.source,
    ).join(Instrument, Instrument.id == Signal.instrument_id)
    query = query.where(Signal.trade_date <= through)
    if strategy is not None:
        query = query.where(Signal.strategy == strategy)
    order = (Signal.instrument_id, Signal.trade_date, Signal.id)
    if everything:
        return [FollowedSignal(*row) for row in session.execute(query.order_by(*order))]
    unfinished = [v for v in distinct_values(session, "state") if v not in finished]
    stale = [v for v in distinct_values(session, "rules") if v not in current_rules]
    if not unfinished and not stale:
        return []
    ids = list(
        session.execute(
            select(SignalOutcome.signal_id).where(
                or_(SignalOutcome.state.in_(unfinished), SignalOutcome.rules.in_(stale))
            )
        ).scalars()
    )
    found: list[FollowedSignal] = []
    for at in range(0, len(ids), _ID_CHUNK):
        part = ids[at : at + _ID_CHUNK]
        found.extend(FollowedSignal(*r) for r in session.execute(query.where(Signal.id.in_(part))))
    found.sort(key=lambda s: (s.instrument_id, s.trade_date, s.signal_id))
    return found


#: Signal ids per read of the work list's signals (by primary key; under SQLite's limit of
#: bound parameters).
_ID_CHUNK = 10_000


#: The indexed columns of ``signal_outcomes`` whose distinct values :func:`distinct_values`
#: walks (``ix_signal_outcomes_state``, ``ix_signal_outcomes_rules``).
_DISTINCT = {
    column: text(
        f"WITH RECURSIVE v(x) AS (SELECT min({column}) FROM signal_outcomes UNION ALL "  # noqa: S608 (a fixed column name)
        f"SELECT (SELECT min(o.{column}) FROM signal_outcomes o WHERE o.{column} > v.x) "
        "FROM v WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"
    )
    for column in ("state", "rules")
}


def distinct_values(session: Session, column: str) -> list[str]:
    """The distinct values of ``signal_outcomes.<column>`` (``state`` or ``rules``), each the
    smallest one after the last through the column's index (a loose index scan: one probe
    per value, whatever the table's size).

    Raises:
        KeyError: another column.
    """
    return [str(v) for (v,) in session.execute(_DISTINCT[column])]


def stored_outcomes(session: Session, signal_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored outcome columns (:data:`OUTCOME_COLUMNS`) of ``signal_ids`` by signal id."""
    out: dict[int, dict[str, Any]] = {}
    columns = [getattr(SignalOutcome, c) for c in OUTCOME_COLUMNS]
    for start in range(0, len(signal_ids), 10_000):
        part = list(signal_ids[start : start + 10_000])
        rows = session.execute(
            select(SignalOutcome.signal_id, *columns).where(SignalOutcome.signal_id.in_(part))
        )
        for row in rows:
            out[int(row[0])] = dict(zip(OUTCOME_COLUMNS, row[1:], strict=True))
    return out


def write_outcomes(
    session: Session, rows: Sequence[Mapping[str, Any]], stored: Mapping[int, Mapping[str, Any]]
) -> UpsertCounts:
    """Write the outcome ``rows`` (each with ``signal_id`` and :data:`OUTCOME_COLUMNS`) that
    differ from ``stored`` (as :func:`stored_outcomes` read them); identical ones are counted
    as unchanged and not sent. Changed rows get a new ``updated_at``. A signal's first
    outcome counts as inserted, also where it replaces the unfollowed row the signal was
    born with (:data:`db.models.UNFOLLOWED_RULES`)."""
    changed = []
    first = 0
    for row in rows:
        before = stored.get(int(row["signal_id"]))
        if before is None or any(before[c] != row[c] for c in OUTCOME_COLUMNS):
            first += before is not None and before["rules"] == UNFOLLOWED_RULES
            changed.append(
                {"signal_id": int(row["signal_id"]), **{c: row[c] for c in OUTCOME_COLUMNS}}
            )
    counts = upsert_rows(
        session,
        SignalOutcome.__table__,  # type: ignore[arg-type]
        changed,
        key=("signal_id",),
        compare=OUTCOME_COLUMNS,
    )
    births = UpsertCounts(inserted=first, updated=-first)
    return counts + births + UpsertCounts(unchanged=len(rows) - len(changed))


def market_sessions(
    session: Session, markets: Collection[str], start: dt.date, end: dt.date
) -> dict[str, npt.NDArray[np.datetime64]]:
    """The sessions of each of ``markets`` in ``[start, end]``: the dates on which at least
    one of its instruments has a daily bar (``datetime64[D]``, ascending).

    Never a scan of the range's candles (a year of the universe is millions of rows): the
    distinct dates are walked through the trade-date index, each the smallest one after the
    last (a loose index scan), and a date is kept for a market when a probe of that date
    finds one bar of one of its instruments. One query per market."""
    found: dict[str, Any] = {}
    for market in sorted(markets):
        days = session.execute(_SESSIONS, {"start": start, "end": end, "market": market})
        found[market] = np.unique(np.array([d for (d,) in days], dtype="datetime64[D]"))
    return found


_SESSIONS = text(
    "WITH RECURSIVE days(day) AS ("
    " SELECT min(trade_date) FROM daily_candles WHERE trade_date >= :start"
    " AND trade_date <= :end"
    " UNION ALL"
    " SELECT (SELECT min(n.trade_date) FROM daily_candles n WHERE n.trade_date > days.day"
    " AND n.trade_date <= :end) FROM days WHERE days.day IS NOT NULL)"
    " SELECT days.day FROM days WHERE days.day IS NOT NULL AND EXISTS ("
    " SELECT 1 FROM daily_candles d JOIN instruments i ON i.id = d.instrument_id"
    " WHERE d.trade_date = days.day AND i.market = :market)"
)


def load_bars(
    session: Session, starts: Mapping[int, dt.date], end: dt.date
) -> dict[int, tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64]]]:
    """Daily bars of each instrument of ``starts`` from its start date through ``end``:
    ``{instrument_id: (dates, values)}`` with ``values`` of shape ``(n, 5)`` (open, high,
    low, close, volume; NaN where a value is unknown), oldest first. One query."""
    if not starts:
        return {}
    bars = read_daily_bars(session, list(starts), start=min(starts.values()), end=end)
    values = np.column_stack([bars.columns[c] for c in ("open", "high", "low", "close", "volume")])
    out: dict[int, tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64]]] = {}
    for ident, lo, hi in bars.spans():
        dates = bars.time[lo:hi]
        keep = int(np.searchsorted(dates, np.datetime64(starts[ident], "D")))
        out[ident] = (dates[keep:], values[lo + keep : hi])
    return out


def snapshot_days(session: Session, days: Collection[dt.date]) -> list[dt.date]:
    """Which of ``days`` have instrument snapshots stored."""
    if not days:
        return []
    rows = session.execute(
        select(IntradaySnapshot.trade_date)
        .where(
            and_(
                IntradaySnapshot.trade_date.in_(sorted(days)),
                IntradaySnapshot.instrument_id.is_not(None),
            )
        )
        .group_by(IntradaySnapshot.trade_date)
    ).scalars()
    return sorted(rows)


def count_outcomes(session: Session) -> dict[str, int]:
    """Stored outcomes by state (the track record's: rows not followed yet are left out)."""
    rows = session.execute(
        select(SignalOutcome.state, func.count())
        .where(SignalOutcome.rules != UNFOLLOWED_RULES)
        .group_by(SignalOutcome.state)
    ).all()
    return {str(state): int(n) for state, n in rows}


def track_rows(
    session: Session, *, strategy: str | None = None, since: dt.date | None = None
) -> list[tuple[Any, ...]]:
    """Every outcome the track record computed, joined with its signal and instrument:
    ``(signal_id, strategy, trade_date, state, net_return, exit_date, grade, market, gate,
    source, reason, phase)``, of one ``strategy`` and of signals from ``since`` on when given
    (rows not followed yet are left out)."""
    query = (
        select(
            Signal.id,
            Signal.strategy,
            Signal.trade_date,
            SignalOutcome.state,
            SignalOutcome.net_return,
            SignalOutcome.exit_date,
            Signal.grade,
            Instrument.market,
            Signal.gate,
            Instrument.source,
            SignalOutcome.reason,
            Signal.phase,
        )
        .join(SignalOutcome, SignalOutcome.signal_id == Signal.id)
        .join(Instrument, Instrument.id == Signal.instrument_id)
        .where(SignalOutcome.rules != UNFOLLOWED_RULES)
    )
    if strategy is not None:
        query = query.where(Signal.strategy == strategy)
    if since is not None:
        query = query.where(Signal.trade_date >= since)
    return [tuple(r) for r in session.execute(query.order_by(Signal.id))]

"""Daily candles packed by instrument and calendar month (``candle_months``, migration 0023):
the cache that makes a universe load a read of 13 rows per instrument instead of 250.

A packed month is ``bars`` fixed 56-byte records (:data:`RECORD`: big-endian ``int8`` days
since 1970-01-01, then ``float8`` open, high, low, close, volume, traded value, NaN where
unknown) in date order, so any number of months joined end to end is one array of 8-byte
words, seven per bar, made native in one pass (:func:`decode`).
PostgreSQL writes them itself (``int4send``/``float8send`` aggregated in date order), so the
bytes are exactly the stored values.

Consistency: on PostgreSQL, triggers on ``daily_candles`` delete every packed month a statement
touches and list it in ``candle_months_stale``, in the writer's transaction; :func:`pack` packs
the listed months under a ``SHARE ROW EXCLUSIVE`` lock on ``daily_candles`` — writers wait
(packing one month of 2,500 instruments takes about 0.1 s), packers queue behind each other —
so a packed month is always the committed rows of its month. A reader that finds no packed
month reads the rows (:func:`db.candles.read_daily_bars`). SQLite (the embedded default) has
neither triggers nor packed months.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

#: One packed bar (network byte order, as PostgreSQL's ``*send`` functions write it).
RECORD = np.dtype(
    [
        ("day", ">i8"),
        ("open", ">f8"),
        ("high", ">f8"),
        ("low", ">f8"),
        ("close", ">f8"),
        ("volume", ">f8"),
        ("traded_value", ">f8"),
    ]
)
#: Months packed per transaction: bounds how long writers wait (about 1 s on 2 cores).
BATCH = 25_000
#: How long :func:`pack` waits for writers to finish before it leaves the work for later.
LOCK_TIMEOUT_S = 2.0

_PACK = """
WITH todo AS (
    DELETE FROM candle_months_stale WHERE (instrument_id, month) IN (
        SELECT instrument_id, month FROM candle_months_stale
        ORDER BY instrument_id, month LIMIT :batch
    ) RETURNING instrument_id, month
), written AS (
    INSERT INTO candle_months (instrument_id, month, bars, packed)
    SELECT d.instrument_id, t.month, count(*),
           string_agg(
               int8send((d.trade_date - DATE '1970-01-01')::int8) || float8send(d.open)
               || float8send(d.high) || float8send(d.low) || float8send(d.close)
               || float8send(d.volume) || float8send(COALESCE(d.traded_value, 'NaN'::float8)),
               ''::bytea ORDER BY d.trade_date
           )
    FROM todo AS t JOIN daily_candles AS d
      ON d.instrument_id = t.instrument_id
     AND d.trade_date >= t.month AND d.trade_date < (t.month + INTERVAL '1 month')::date
    GROUP BY d.instrument_id, t.month
    ON CONFLICT (instrument_id, month) DO UPDATE
    SET bars = excluded.bars, packed = excluded.packed, packed_at = CURRENT_TIMESTAMP
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM todo)
"""
#: PostgreSQL's ``lock_not_available`` (``lock_timeout`` expired).
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class PackReport:
    """What one :func:`pack` did: months ``packed`` (written), ``listed`` (taken off the stale
    list: more than ``packed`` when a listed month has no rows left), ``remaining`` on the
    list, ``busy`` when writers held the table past the lock timeout (the rest is left for
    the next pass), and the wall time in seconds."""

    packed: int
    listed: int
    remaining: int
    busy: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "packed": self.packed,
            "listed": self.listed,
            "remaining": self.remaining,
            "busy": self.busy,
            "seconds": round(self.seconds, 3),
        }


def supported(session: Session) -> bool:
    """Whether the session's database keeps packed months (PostgreSQL only)."""
    return session.get_bind().dialect.name == "postgresql"


def stale_count(session: Session) -> int:
    """Months waiting to be packed (0 on SQLite)."""
    if not supported(session):
        return 0
    return int(session.execute(text("SELECT count(*) FROM candle_months_stale")).scalar_one())


def pack_batch(
    session: Session, *, batch: int = BATCH, lock_timeout: float = LOCK_TIMEOUT_S
) -> tuple[int, int]:
    """Pack up to ``batch`` listed months in the session's transaction (the caller commits):
    ``(months written, months taken off the list)``. Takes ``SHARE ROW EXCLUSIVE`` on
    ``daily_candles`` until the transaction ends, waiting at most ``lock_timeout`` seconds.

    Raises:
        sqlalchemy.exc.OperationalError: the lock was not granted in time (SQLSTATE 55P03;
            the transaction is then aborted).
        ValueError: ``batch`` below 1 or a negative ``lock_timeout``.
    """
    if batch < 1:
        raise ValueError(f"pack batch must be at least 1, got {batch!r}")
    if lock_timeout < 0:
        raise ValueError(f"pack lock timeout must be >= 0 s, got {lock_timeout!r}")
    session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}"))
    session.execute(text("LOCK TABLE daily_candles IN SHARE ROW EXCLUSIVE MODE"))
    written, listed = session.execute(text(_PACK), {"batch": batch}).one()
    return int(written), int(listed)


def pack(
    session_factory: Callable[[], AbstractContextManager[Session]],
    *,
    batch: int = BATCH,
    lock_timeout: float = LOCK_TIMEOUT_S,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PackReport:
    """Pack the listed months, ``batch`` per transaction (each in its own session from
    ``session_factory``, which commits on success, like :func:`db.engine.session_scope`),
    until none is left or ``limit`` months were taken. A batch whose lock is not granted
    within ``lock_timeout`` seconds ends the pass (``busy``): packing is a cache's upkeep and
    never makes a writer wait long. ``progress(taken, listed at the start)`` is called after
    each batch. A no-op on SQLite.

    Raises:
        ValueError: see :func:`pack_batch`.
        sqlalchemy.exc.SQLAlchemyError: any database error but the lock timeout.
    """
    started = time.perf_counter()
    with session_factory() as session:
        if not supported(session):
            return PackReport(0, 0, 0, False, time.perf_counter() - started)
        total = stale_count(session)
    written = taken = 0
    busy = False
    while total and (limit is None or taken < limit):
        size = batch if limit is None else min(batch, limit - taken)
        try:
            with session_factory() as session:
                done, listed = pack_batch(session, batch=size, lock_timeout=lock_timeout)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            busy = True
            break
        written += done
        taken += listed
        if progress is not None:
            progress(taken, total)
        if listed < size:
            break
    with session_factory() as session:
        remaining = stale_count(session)
    return PackReport(written, taken, remaining, busy, time.perf_counter() - started)


def decode(packed: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(days since 1970-01-01, values)`` of packed months joined end to end: ``values`` has
    one row per bar and the six price columns of :data:`RECORD` (native byte order).

    Raises:
        ValueError: ``packed`` is not a whole number of records.
    """
    if len(packed) % RECORD.itemsize:
        raise ValueError(
            f"packed candle months of {len(packed)} bytes: not whole {RECORD.itemsize}-byte bars"
        )
    words = np.frombuffer(packed, dtype=">f8").reshape(-1, len(RECORD.names or ())).astype("<f8")
    return words[:, 0].view(np.int64), words[:, 1:]


def month_start(day: dt.date) -> dt.date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after ``month`` (a first day)."""
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

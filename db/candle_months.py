"""Daily candles packed by instrument and calendar month (``candle_months``, migration 0023):
the cache that makes a universe load a read of 13 rows per instrument instead of 250.

A packed month is ``bars`` fixed 56-byte records (:data:`RECORD`: big-endian ``int8`` days
since 1970-01-01, then ``float8`` open, high, low, close, volume, traded value, NaN where
unknown) in date order, so any number of months joined end to end is one array of 8-byte
words, seven per bar, made native in one pass (:func:`decode`). PostgreSQL writes them
itself (``int8send``/``float8send`` aggregated in date order), so the bytes are exactly the
stored values.

Consistency without locks between writers and packing. Triggers on ``daily_candles`` append
every month a statement touches to ``candle_months_stale`` in the writer's transaction; a
packed month is *valid* in a snapshot when no entry for it is visible there (:data:`VALID`).
:func:`pack_batch` is one statement, so one snapshot: it takes a batch of logged months,
deletes the entries it sees, and writes those months from the rows it sees (or drops them
when no row is left). A write committed after that snapshot keeps its entry, so the month it
touched stays invalid until the next pack. Packers run one at a time (a transaction-level
advisory lock; a second one returns at once): one with an older snapshot could otherwise
overwrite a newer pack after the newer one consumed the entries. Writers wait for nothing
here, and the triggers never block one writer on another's log entries (append-only, no
unique key). SQLite (the embedded default) has neither triggers nor packed months.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
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
#: Months packed per transaction (about 1 s of work on 2 cores).
BATCH = 25_000
#: The advisory lock key packers share (``pg_try_advisory_xact_lock``): "candle_months".
PACK_LOCK = 0x63616E646C65
#: The SQL condition "packed month ``m`` is valid in this statement's snapshot" (its
#: definition; reads decide it in the client from the same statement's answer, see
#: :func:`db.candles._read_packed`, so no plan depends on the log's statistics).
VALID = (
    "NOT EXISTS (SELECT 1 FROM candle_months_stale AS s "
    "WHERE s.instrument_id = m.instrument_id AND s.month = m.month)"
)
#: One daily bar ``d`` as a :data:`RECORD` (PostgreSQL's binary send functions).
RECORD_SQL = (
    "int8send((d.trade_date - DATE '1970-01-01')::int8) || float8send(d.open) "
    "|| float8send(d.high) || float8send(d.low) || float8send(d.close) "
    "|| float8send(d.volume) || float8send(COALESCE(d.traded_value, 'NaN'::float8))"
)

#: Counts one pack (in the packer's transaction; the row is made again if it was removed).
COUNT_PACK = (
    "INSERT INTO candle_months_packs AS p (id, generation) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET generation = p.generation + 1"
)

_PACK = f"""
WITH todo AS (
    DELETE FROM candle_months_stale WHERE (instrument_id, month) IN (
        SELECT DISTINCT instrument_id, month FROM candle_months_stale
        ORDER BY instrument_id, month LIMIT :batch
    ) RETURNING instrument_id, month
), months AS (
    SELECT DISTINCT instrument_id, month FROM todo
), written AS (
    INSERT INTO candle_months (instrument_id, month, bars, packed)
    SELECT d.instrument_id, t.month, count(*),
           string_agg({RECORD_SQL}, ''::bytea ORDER BY d.trade_date)
    FROM months AS t JOIN daily_candles AS d
      ON d.instrument_id = t.instrument_id
     AND d.trade_date >= t.month AND d.trade_date < (t.month + INTERVAL '1 month')::date
    GROUP BY d.instrument_id, t.month
    ON CONFLICT (instrument_id, month) DO UPDATE
    SET bars = excluded.bars, packed = excluded.packed, packed_at = CURRENT_TIMESTAMP
    RETURNING instrument_id, month
), dropped AS (
    DELETE FROM candle_months AS c USING months AS t
    WHERE c.instrument_id = t.instrument_id AND c.month = t.month
      AND NOT EXISTS (
          SELECT 1 FROM written AS w WHERE w.instrument_id = t.instrument_id AND w.month = t.month
      )
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM months), (SELECT count(*) FROM dropped)
"""  # noqa: S608 (constants only)


@dataclass(frozen=True)
class PackReport:
    """What one :func:`pack` did: months ``packed`` (written), ``listed`` (taken off the log:
    more than ``packed`` when a logged month has no rows left, and is ``dropped``),
    ``remaining`` on the log, ``busy`` when another packer was running (the rest is left to
    it), and the wall time in seconds."""

    packed: int
    listed: int
    dropped: int
    remaining: int
    busy: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def supported(session: Session) -> bool:
    """Whether the session's database keeps packed months (PostgreSQL only)."""
    return session.get_bind().dialect.name == "postgresql"


def stale_count(session: Session) -> int:
    """Months waiting to be packed (distinct; 0 on SQLite)."""
    if not supported(session):
        return 0
    return int(
        session.execute(
            text("SELECT count(*) FROM (SELECT DISTINCT instrument_id, month "
                 "FROM candle_months_stale) AS s")
        ).scalar_one()
    )  # fmt: skip


def pack_batch(session: Session, *, batch: int = BATCH) -> tuple[int, int, int] | None:
    """Pack up to ``batch`` logged months in the session's transaction (the caller commits):
    ``(months written, months taken off the log, months dropped)``, or ``None`` when another
    packer holds the lock (nothing done).

    Raises:
        ValueError: ``batch`` below 1.
    """
    if batch < 1:
        raise ValueError(f"pack batch must be at least 1, got {batch!r}")
    locked = session.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PACK_LOCK}
    ).scalar_one()
    if not locked:
        return None
    written, listed, dropped = session.execute(text(_PACK), {"batch": batch}).one()
    # committed with the pack: a read that spans this commit sees the count change
    session.execute(text(COUNT_PACK))
    return int(written), int(listed), int(dropped)


def pack(
    session_factory: Callable[[], AbstractContextManager[Session]],
    *,
    batch: int = BATCH,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PackReport:
    """Pack the logged months, ``batch`` per transaction (each in its own session from
    ``session_factory``, which commits on success, like :func:`db.engine.session_scope`),
    until none is left or ``limit`` months were taken. When another packer is running the
    pass ends at once (``busy``). ``progress(taken, logged at the start)`` is called after
    each batch. A no-op on SQLite.

    Raises:
        ValueError: ``batch`` or ``limit`` below 1.
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"pack limit must be at least 1, got {limit!r}")
    started = time.perf_counter()
    with session_factory() as session:
        if not supported(session):
            return PackReport(0, 0, 0, 0, False, time.perf_counter() - started)
        total = stale_count(session)
    written = taken = dropped = 0
    busy = False
    while total and (limit is None or taken < limit):
        size = batch if limit is None else min(batch, limit - taken)
        with session_factory() as session:
            done = pack_batch(session, batch=size)
        if done is None:
            busy = True
            break
        written += done[0]
        taken += done[1]
        dropped += done[2]
        if progress is not None:
            progress(taken, total)
        if done[1] < size:
            break
    with session_factory() as session:
        remaining = stale_count(session)
    return PackReport(written, taken, dropped, remaining, busy, time.perf_counter() - started)


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

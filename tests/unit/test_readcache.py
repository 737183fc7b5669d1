"""The embedded run's read cache (db.readcache) on a real SQLite file: a repeated read comes
from memory inside the scope only, and no write to the tables it reads — through the ORM,
the bulk upsert or raw SQL, committed on any connection, repeated with the same statement —
ever leaves a stale result; a writer reads its own uncommitted rows."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pytest
from sqlalchemy import text

from db import readcache
from db.bulk import sqlite_matrix
from db.engine import session_scope

QUERY = "SELECT instrument_id, close FROM daily_candles ORDER BY instrument_id, trade_date"
INSERT = (
    "INSERT INTO daily_candles (instrument_id, trade_date, open, high, low, close, volume, "
    "source) VALUES (1, :d, 1, 1, 1, :c, 1, 'test')"
)


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(readcache, "MIN_BYTES", 0)  # keep the small test results too
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO instruments (id, market, ticker, name, currency, listing_status, "
                "source) VALUES (1, 'KOSPI', '000001', 'one', 'KRW', 'listed', 'test')"
            )
        )
        session.execute(text(INSERT), {"d": "2026-11-02", "c": 100.0})
    return sqlite_url


def _closes() -> list[float]:
    with session_scope() as session:
        return [float(c) for c in sqlite_matrix(session, QUERY, [], 2)[:, 1]]


def _add(day: str, close: float) -> None:
    with session_scope() as session:
        session.execute(text(INSERT), {"d": day, "c": close})


def test_a_repeated_read_comes_from_memory_inside_the_scope_only(db: str) -> None:
    before = readcache.stats()["hits"]
    assert _closes() == [100.0]
    assert _closes() == [100.0]
    assert readcache.stats()["hits"] == before  # outside a scope nothing is kept
    with readcache.scope():
        assert _closes() == [100.0]
        with session_scope() as session:
            first = sqlite_matrix(session, QUERY, [], 2)
        assert readcache.stats()["hits"] == before + 1
        first[:, 1] = -1.0  # a copy: the kept result is not the caller's
        assert _closes() == [100.0]
        assert readcache.stats()["hits"] == before + 2
    with readcache.scope():
        _closes()
        assert readcache.stats()["hits"] == before + 2  # emptied when the scope ended


def test_every_committed_write_empties_it_even_the_same_statement_again(db: str) -> None:
    with readcache.scope():
        assert _closes() == [100.0]
        _add("2026-11-03", 101.0)  # a raw INSERT through the ORM session
        assert _closes() == [100.0, 101.0]
        _add("2026-11-04", 102.0)  # the same statement text again, a later transaction
        assert _closes() == [100.0, 101.0, 102.0]
        with session_scope() as session:
            session.execute(text("UPDATE daily_candles SET close = close * 2"))
        assert _closes() == [200.0, 202.0, 204.0]
        with session_scope() as session:
            session.execute(text("DELETE FROM instruments"))  # cascades to its candles
        assert _closes() == []


def test_an_autocommit_write_empties_it_when_its_connection_closes(db: str) -> None:
    path = db.removeprefix("sqlite:///")
    with readcache.scope():
        assert _closes() == [100.0]
        raw = sqlite3.connect(path, factory=readcache.WatchedConnection, isolation_level=None)
        raw.execute(INSERT.replace(":d", "'2026-11-07'").replace(":c", "107.0"))
        assert _closes() == [100.0, 107.0]  # dirty: read from the database
        raw.close()  # no commit() ever came: the close settles it
        assert _closes() == [100.0, 107.0]
        assert _closes() == [100.0, 107.0]  # kept again, and current


def test_a_writer_reads_its_own_rows_and_a_rollback_leaves_it_valid(db: str) -> None:
    with readcache.scope():
        assert _closes() == [100.0]
        seen: list[float] = []

        def write_read_and_fail() -> None:
            with session_scope() as session:
                session.execute(text(INSERT), {"d": "2026-11-05", "c": 105.0})
                # the uncommitted row is seen by its own transaction, never from memory
                seen.extend(sqlite_matrix(session, QUERY, [], 2)[:, 1])
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            write_read_and_fail()
        assert seen == [100.0, 105.0]
        assert _closes() == [100.0]


def test_a_result_read_while_a_write_committed_is_not_kept(db: str) -> None:
    path = db.removeprefix("sqlite:///")

    def load_then_commit_elsewhere() -> np.ndarray:
        with sqlite3.connect(path) as reader:  # a read outside any transaction
            value = reader.execute(QUERY).fetchall()
        _add("2026-11-06", 106.0)  # a watched connection commits meanwhile
        return np.array(value, dtype=float)

    with readcache.scope():
        stale = readcache.read(("test", QUERY), load_then_commit_elsewhere)
        assert list(stale[:, 1]) == [100.0]
        # not kept: the same key reads again and sees the new row
        fresh = readcache.read(("test", QUERY), lambda: np.array([[1.0, 106.0]]))
        assert list(fresh[:, 1]) == [106.0]


def test_the_embedded_run_reads_the_same_bars_with_and_without_it(db: str) -> None:
    from db.candles import read_daily_bars

    for day in range(3, 20):
        _add(f"2026-11-{day:02d}", 100.0 + day)
    with session_scope() as session:
        plain = read_daily_bars(session, [1], start=dt.date(2026, 11, 1), end=dt.date(2026, 11, 30))
    with readcache.scope():
        for _ in range(2):
            with session_scope() as session:
                kept = read_daily_bars(
                    session, [1], start=dt.date(2026, 11, 1), end=dt.date(2026, 11, 30)
                )
            assert kept.columns["close"].tolist() == plain.columns["close"].tolist()
            assert kept.time.tolist() == plain.time.tolist()

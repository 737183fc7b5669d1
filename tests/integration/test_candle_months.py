"""Packed candle months (migration 0023, db.candle_months) on PostgreSQL: the triggers on
``daily_candles`` log every month a statement touches — upserts, updates, deletes, an
instrument's cascade — in the writer's transaction, so its packed month stops being valid
when the write commits; ``TRUNCATE`` empties both tables. Writers never wait for each other
or for packing (and packing for neither), and a read racing a write returns one committed
state. After each change the read equals the rows read directly
(tests/integration/test_candle_reads.py runs the read scenarios packed too)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from db import bulk, candle_months, candles, migrate
from db.candle_months import PACK_LOCK, VALID
from db.candles import DailyBars, _read_rows, read_daily_bars
from db.engine import session_scope
from db.store import upsert_daily_candles, upsert_instruments
from quant.market.types import Instrument, Market
from quantbeat.cli.main import app as cli

pytestmark = pytest.mark.integration

FIRST, LAST = dt.date(2026, 8, 3), dt.date(2026, 11, 20)
TICKERS = ("P00001", "P00002", "P00003")


def _frame(tickers: tuple[str, ...], days: list[dt.date], bump: float = 0.0) -> pd.DataFrame:
    rows = [
        ("KOSPI", t, d, 100.0 + n + k + bump, 110.0 + n, 90.0 + n, 101.0 + n + bump, 1e4 + n,
         None if (n + k) % 7 == 0 else 1e6 + n)
        for k, t in enumerate(tickers)
        for n, d in enumerate(days)
    ]  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=["market", "ticker", "trade_date", "open", "high", "low", "close", "volume",
                 "traded_value"],
    )  # fmt: skip


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [d.date() for d in pd.bdate_range(first, last)]


@pytest.fixture
def ids(clean_db: str) -> dict[str, int]:
    with session_scope() as session:
        found = upsert_instruments(
            session, [Instrument(Market.KOSPI, t, t, "KRW") for t in TICKERS], source="test"
        )
        upsert_daily_candles(session, _frame(TICKERS, _days(FIRST, LAST)), found, source="test")
    return {t: i for (_, t), i in found.items()}


def _pack(**kwargs: Any) -> candle_months.PackReport:
    return candle_months.pack(session_scope, **kwargs)


def _pairs(sql: str) -> set[tuple[int, str]]:
    with session_scope() as session:
        return {(int(i), m.isoformat()) for i, m in session.execute(text(sql))}


def _packed() -> set[tuple[int, str]]:
    return _pairs("SELECT instrument_id, month FROM candle_months")


def _stale() -> set[tuple[int, str]]:
    return _pairs("SELECT DISTINCT instrument_id, month FROM candle_months_stale")


def _valid() -> set[tuple[int, str]]:
    return _pairs(f"SELECT m.instrument_id, m.month FROM candle_months AS m WHERE {VALID}")


def _expected(ids: dict[str, int], start: dt.date, end: dt.date) -> DailyBars:
    with session_scope() as session:
        return _read_rows(session, sorted(ids.values()), start, end)


def _equal(got: DailyBars, rows: DailyBars) -> None:
    assert len(got) == len(rows) > 0
    assert np.array_equal(got.instrument_id, rows.instrument_id)
    assert np.array_equal(got.time, rows.time)
    for column, values in rows.columns.items():
        assert np.array_equal(got.columns[column], values, equal_nan=True), column


def _same_as_rows(ids: dict[str, int], start: dt.date = FIRST, end: dt.date = LAST) -> None:
    """The read (packed months and rows) equals the rows read directly, bar for bar."""
    with session_scope() as session:
        got = read_daily_bars(session, sorted(ids.values()), start=start, end=end)
    _equal(got, _expected(ids, start, end))


def _upsert(ids: dict[str, int], ticker: str, days: list[dt.date], bump: float = 0.0) -> None:
    with session_scope() as session:
        upsert_daily_candles(
            session,
            _frame((ticker,), days, bump=bump),
            {("KOSPI", ticker): ids[ticker]},
            source="test",
        )


def _connect(url: str) -> psycopg.Connection[Any]:
    """A connection of its own that gives up on any lock wait after a second (a wait here
    would be the bug)."""
    conn = psycopg.connect(url.replace("+psycopg", ""))
    conn.execute("SET lock_timeout = '1s'")
    conn.commit()
    return conn


def test_writes_unpack_the_months_they_touch(ids: dict[str, int]) -> None:
    months = {(i, f"2026-{m:02d}-01") for i in ids.values() for m in (8, 9, 10, 11)}
    assert _stale() == months  # the insert logged every month it wrote
    report = _pack()
    assert (report.packed, report.listed, report.dropped, report.remaining) == (12, 12, 0, 0)
    assert _packed() == _valid() == months
    assert _stale() == set()
    _same_as_rows(ids)
    _same_as_rows(ids, dt.date(2026, 8, 19), dt.date(2026, 10, 7))  # months cut at both ends
    _same_as_rows(ids, dt.date(2026, 9, 15), dt.date(2026, 9, 15))  # one day

    p1, p2, p3 = (ids[t] for t in TICKERS)
    _upsert(ids, "P00001", [dt.date(2026, 11, 23)])  # a new day: an insert into November
    assert _stale() == {(p1, "2026-11-01")}
    assert _valid() == months - {(p1, "2026-11-01")}  # packed, but no longer valid
    _same_as_rows(ids, end=dt.date(2026, 11, 30))

    with session_scope() as session:  # a correction of an old bar: an update of September
        session.execute(
            text("UPDATE daily_candles SET close = close + 0.5 WHERE instrument_id = :i "
                 "AND trade_date = '2026-09-15'"),
            {"i": p2},
        )  # fmt: skip
    assert _stale() == {(p1, "2026-11-01"), (p2, "2026-09-01")}
    _same_as_rows(ids, end=dt.date(2026, 11, 30))
    assert _pack().packed == 2
    assert _valid() == months
    _same_as_rows(ids, end=dt.date(2026, 11, 30))

    # an upsert that changes the values of packed bars, across two months
    _upsert(ids, "P00003", _days(dt.date(2026, 10, 26), dt.date(2026, 11, 6)), bump=3.0)
    assert _stale() == {(p3, "2026-10-01"), (p3, "2026-11-01")}
    _same_as_rows(ids)
    _pack()

    with session_scope() as session:  # a bar moved to another month: both are logged
        session.execute(
            text("UPDATE daily_candles SET trade_date = '2026-10-31' WHERE instrument_id = :i "
                 "AND trade_date = '2026-09-30'"),
            {"i": p1},
        )  # fmt: skip
    assert _stale() == {(p1, "2026-09-01"), (p1, "2026-10-01")}
    _same_as_rows(ids)
    _pack()

    with session_scope() as session:  # a delete: a month without rows is dropped
        session.execute(
            text("DELETE FROM daily_candles WHERE instrument_id = :i AND trade_date < "
                 "'2026-09-01'"),
            {"i": p2},
        )  # fmt: skip
    assert _stale() == {(p2, "2026-08-01")}
    report = _pack()
    assert (report.packed, report.listed, report.dropped) == (0, 1, 1)
    assert (p2, "2026-08-01") not in _packed()
    _same_as_rows(ids)

    with session_scope() as session:  # an instrument deleted: its candles go by cascade
        session.execute(text("DELETE FROM instruments WHERE id = :i"), {"i": p3})
    assert {i for i, _ in _stale()} == {p3}  # logged after it was gone
    assert {i for i, _ in _valid()} == {p1, p2}
    assert _pack().dropped == 4
    assert {i for i, _ in _packed()} == {p1, p2}

    def generation() -> int:
        with session_scope() as session:
            return int(
                session.execute(text("SELECT generation FROM candle_months_packs")).scalar_one()
            )

    before = generation()
    with session_scope() as session:
        session.execute(text("TRUNCATE daily_candles"))
    assert _packed() == set()
    assert _stale() == set()
    assert generation() == before + 1  # a read spanning it reads again


def test_writers_and_packing_never_wait_for_each_other(clean_db: str, ids: dict[str, int]) -> None:
    _pack()
    p1 = ids["P00001"]
    # two writers touching the same instrument-months in opposite orders, each in two
    # statements (different rows): neither waits for the other's log entries
    w1, w2 = _connect(clean_db), _connect(clean_db)
    try:
        bump = (
            "UPDATE daily_candles SET volume = volume + 1 "
            "WHERE instrument_id = %s AND trade_date = %s"
        )
        w1.execute(bump, (p1, dt.date(2026, 8, 5)))
        w2.execute(bump, (p1, dt.date(2026, 9, 7)))
        w1.execute(bump, (p1, dt.date(2026, 9, 8)))
        w2.execute(bump, (p1, dt.date(2026, 8, 6)))
        # a pass packs while both are open: it waits for neither, and their months, which it
        # cannot see yet, stay logged
        assert _pack().busy is False
        w1.commit()
        w2.commit()
    finally:
        w1.close()
        w2.close()
    assert _stale() == {(p1, "2026-08-01"), (p1, "2026-09-01")}
    _same_as_rows(ids)
    _pack()
    assert _stale() == set()

    # a pass open (its months written, not committed) and a writer of one of them: the
    # writer does not wait, and its month stays logged after both commit
    with session_scope() as session:
        session.execute(text("INSERT INTO candle_months_stale (instrument_id, month) "
                             "VALUES (:i, '2026-11-01')"), {"i": p1})  # fmt: skip
    packer = _connect(clean_db)
    writer = _connect(clean_db)
    try:
        assert packer.execute("SELECT pg_try_advisory_xact_lock(%s)", (PACK_LOCK,)).fetchone() == (
            True,
        )
        assert _pack().busy  # a second pass gives way to the one running
        packer.execute(text_of_pack(), {"batch": 10})
        writer.execute(
            "UPDATE daily_candles SET close = close + 2 WHERE instrument_id = %s "
            "AND trade_date = %s",
            (p1, dt.date(2026, 11, 20)),
        )
        writer.commit()
        packer.commit()
    finally:
        packer.close()
        writer.close()
    assert _stale() == {(p1, "2026-11-01")}
    assert (p1, "2026-11-01") in _packed() - _valid()
    _same_as_rows(ids)

    # an instrument deleted in an open transaction does not stop a pass, nor a pass it
    deleter = _connect(clean_db)
    try:
        deleter.execute("DELETE FROM instruments WHERE id = %s", (ids["P00003"],))
        assert not _pack().busy
        deleter.commit()
    finally:
        deleter.close()
    assert _pack().dropped == 4
    assert {i for i, _ in _valid()} == {p1, ids["P00002"]}


def text_of_pack() -> str:
    """The pack statement with psycopg's placeholders (the test runs it on its own
    connection)."""
    return candle_months._PACK.replace(":batch", "%(batch)s")


def _read_with(
    monkeypatch: pytest.MonkeyPatch, between: Callable[[], None]
) -> tuple[DailyBars, list[str]]:
    """The universe read of the fixture's instruments (through November) with ``between``
    run right after its first statement (the packed months' read); the read, and every
    statement of packed months it sent."""
    calls: list[str] = []
    original = bulk.binary_rows

    def racing(session: Any, query: str, params: Any) -> Any:
        found = original(session, query, params)
        calls.append(query)
        if len(calls) == 1:
            between()
        return found

    monkeypatch.setattr(candles, "binary_rows", racing)
    with session_scope() as session:
        ids = [int(i) for (i,) in session.execute(text("SELECT id FROM instruments ORDER BY id"))]
        got = read_daily_bars(session, ids, start=FIRST, end=dt.date(2026, 11, 30))
    return got, calls


@pytest.mark.parametrize("repacked", [False, True], ids=["unpacked", "repacked"])
def test_a_read_racing_a_write_returns_one_committed_state(
    clean_db: str, ids: dict[str, int], monkeypatch: pytest.MonkeyPatch, repacked: bool
) -> None:
    """A write between the packed months' read and the rows' (a bar moved from a packed
    month read to a month read as rows; every close of a day changed): seen, and the read
    made again — also when a pack made those months valid again before the check (the packs'
    count changed)."""
    _pack()
    p1 = ids["P00001"]
    _upsert(ids, "P00001", [dt.date(2026, 11, 23)])  # November unpacked: a mixed read

    def write() -> None:
        # a bar moved from a packed month to the unpacked one, and every close of a day
        # changed, in one transaction
        with _connect(clean_db) as writer:
            writer.execute(
                "UPDATE daily_candles SET trade_date = '2026-11-24' "
                "WHERE instrument_id = %s AND trade_date = '2026-10-30'",
                (p1,),
            )
            writer.execute("UPDATE daily_candles SET close = 99 WHERE trade_date = '2026-09-15'")
        if repacked:
            assert _pack().packed == 5  # P1 October and November, every September

    got, calls = _read_with(monkeypatch, write)
    after = _expected(ids, FIRST, dt.date(2026, 11, 30))
    _equal(got, after)
    # the first read's check saw months changed, and the read was made again (after the
    # pack, every month packed: nothing to check)
    assert len(calls) == (3 if repacked else 4)
    assert int((got.time == np.datetime64("2026-09-15")).sum()) == 3
    assert set(got.columns["close"][got.time == np.datetime64("2026-09-15")]) == {99.0}


def test_a_pack_during_a_read_makes_it_read_again(
    ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _pack()
    _upsert(ids, "P00002", [dt.date(2026, 11, 23)])

    def pack() -> None:
        assert _pack().packed == 1  # the month the read will take from the rows

    got, calls = _read_with(monkeypatch, pack)
    # the check saw the packs' count change: read again, now every month packed
    assert len(calls) == 3
    _equal(got, _expected(ids, FIRST, dt.date(2026, 11, 30)))


def test_months_read_as_rows_come_from_one_statement(
    ids: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Months read as rows that are not one range (P1's September and November around a
    packed October, P2's August) are one COPY, so one moment with each other."""
    _pack()
    p1, p2 = ids["P00001"], ids["P00002"]
    with session_scope() as session:
        session.execute(
            text("UPDATE daily_candles SET volume = volume + 1 WHERE (instrument_id = :a AND "
                 "trade_date IN ('2026-09-14', '2026-11-16')) OR (instrument_id = :b AND "
                 "trade_date = '2026-08-10')"),
            {"a": p1, "b": p2},
        )  # fmt: skip
    assert _stale() == {(p1, "2026-09-01"), (p1, "2026-11-01"), (p2, "2026-08-01")}
    copies: list[str] = []
    original = bulk.copy_out

    def counting(session: Any, query: str, params: Any, types: Any) -> Any:
        copies.append(query)
        return original(session, query, params, types)

    monkeypatch.setattr(candles, "copy_out", counting)
    _same_as_rows(ids)
    assert len(copies) == 2  # the months as rows in one statement; the expected rows apart


def test_batches_limit_and_progress(ids: dict[str, int]) -> None:
    seen: list[tuple[int, int]] = []
    report = _pack(batch=5, limit=7, progress=lambda taken, total: seen.append((taken, total)))
    assert seen == [(5, 12), (7, 12)]
    assert (report.listed, report.remaining) == (7, 5)
    with pytest.raises(ValueError, match="batch must be at least 1, got 0"):
        _pack(batch=0)
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        _pack(limit=0)
    assert _pack().remaining == 0


def test_the_migration_logs_the_months_stored_before_it(clean_db: str, ids: dict[str, int]) -> None:
    migrate.downgrade(clean_db, "0022")
    migrate.upgrade(clean_db)
    assert len(_stale()) == 12
    assert _packed() == set()
    _same_as_rows(ids)


def test_the_cli_packs_with_progress(ids: dict[str, int]) -> None:
    result = CliRunner().invoke(cli, ["db", "pack-candles"])
    assert result.exit_code == 0, result.output
    assert "packed 12 of 12 months" in result.output
    assert "packed 12 instrument-months" in result.output
    assert "0 left" in result.output
    assert len(_valid()) == 12

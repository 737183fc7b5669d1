"""Packed candle months (migration 0023, db.candle_months) on PostgreSQL: the triggers on
``daily_candles`` take every month a statement touches out of the cache — upserts, updates,
deletes, ``TRUNCATE``, an instrument's cascade — in the writer's transaction; packing waits
for writers (and a writer for packing), gives up on a held lock within its timeout, and
the migration lists the months stored before it. After each change the read equals the rows
read directly (tests/integration/test_candle_reads.py runs the read scenarios packed)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from db import candle_months, migrate
from db.candles import _read_rows, read_daily_bars
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


def _pack(**kwargs: object) -> candle_months.PackReport:
    return candle_months.pack(session_scope, **kwargs)  # type: ignore[arg-type]


def _packed() -> set[tuple[int, str]]:
    with session_scope() as session:
        rows = session.execute(text("SELECT instrument_id, month FROM candle_months"))
        return {(int(i), m.isoformat()) for i, m in rows}


def _stale() -> set[tuple[int, str]]:
    with session_scope() as session:
        rows = session.execute(text("SELECT instrument_id, month FROM candle_months_stale"))
        return {(int(i), m.isoformat()) for i, m in rows}


def _same_as_rows(ids: dict[str, int], start: dt.date = FIRST, end: dt.date = LAST) -> None:
    """The read (packed months and rows) equals the rows read directly, bar for bar."""
    wanted = sorted(ids.values())
    with session_scope() as session:
        got = read_daily_bars(session, wanted, start=start, end=end)
        rows = _read_rows(session, wanted, start, end)
    assert len(got) == len(rows) > 0
    assert np.array_equal(got.instrument_id, rows.instrument_id)
    assert np.array_equal(got.time, rows.time)
    for column, values in rows.columns.items():
        assert np.array_equal(got.columns[column], values, equal_nan=True), column


def test_writes_unpack_the_months_they_touch(ids: dict[str, int]) -> None:
    months = {(i, f"2026-{m:02d}-01") for i in ids.values() for m in (8, 9, 10, 11)}
    assert _stale() == months  # the insert listed every month it wrote
    report = _pack()
    assert (report.packed, report.listed, report.remaining, report.busy) == (12, 12, 0, False)
    assert _packed() == months
    assert _stale() == set()
    _same_as_rows(ids)
    _same_as_rows(ids, dt.date(2026, 8, 19), dt.date(2026, 10, 7))  # months cut at both ends

    p1 = ids["P00001"]
    with session_scope() as session:  # an upsert of a new day: an insert into November
        upsert_daily_candles(
            session,
            _frame(("P00001",), [dt.date(2026, 11, 23)]),
            {("KOSPI", "P00001"): p1},
            source="test",
        )
    assert _stale() == {(p1, "2026-11-01")}
    assert (p1, "2026-11-01") not in _packed()
    _same_as_rows(ids, end=dt.date(2026, 11, 30))

    with session_scope() as session:  # a correction of an old bar: an update of September
        session.execute(
            text("UPDATE daily_candles SET close = close + 0.5 WHERE instrument_id = :i "
                 "AND trade_date = '2026-09-15'"),
            {"i": ids["P00002"]},
        )  # fmt: skip
    assert _stale() == {(p1, "2026-11-01"), (ids["P00002"], "2026-09-01")}
    _same_as_rows(ids, end=dt.date(2026, 11, 30))
    assert _pack().packed == 2
    _same_as_rows(ids, end=dt.date(2026, 11, 30))

    with session_scope() as session:  # an upsert that changes values of packed bars
        upsert_daily_candles(
            session,
            _frame(("P00003",), _days(dt.date(2026, 10, 26), dt.date(2026, 11, 6)), bump=3.0),
            {("KOSPI", "P00003"): ids["P00003"]},
            source="test",
        )
    assert _stale() == {(ids["P00003"], "2026-10-01"), (ids["P00003"], "2026-11-01")}
    _same_as_rows(ids)
    _pack()

    with session_scope() as session:  # a delete: a month without rows is packed as nothing
        session.execute(
            text("DELETE FROM daily_candles WHERE instrument_id = :i AND trade_date < "
                 "'2026-09-01'"),
            {"i": ids["P00002"]},
        )  # fmt: skip
    assert _stale() == {(ids["P00002"], "2026-08-01")}
    report = _pack()
    assert (report.packed, report.listed) == (0, 1)
    assert (ids["P00002"], "2026-08-01") not in _packed()
    _same_as_rows(ids)

    with session_scope() as session:  # an instrument deleted: its candles go by cascade
        session.execute(text("DELETE FROM instruments WHERE id = :i"), {"i": ids["P00003"]})
    assert {i for i, _ in _packed()} == {p1, ids["P00002"]}
    assert {i for i, _ in _stale()} == {ids["P00003"]}  # listed after it was gone
    assert _pack().packed == 0
    assert _stale() == set()

    with session_scope() as session:
        session.execute(text("TRUNCATE daily_candles"))
    assert _packed() == set()
    assert _stale() == set()


def test_packing_gives_up_on_a_held_lock_and_writers_wait_for_packing(
    ids: dict[str, int],
) -> None:
    # a writer's open transaction holds the candles: packing waits its timeout, then leaves
    # the work for the next pass
    with session_scope() as writer:
        writer.execute(text("UPDATE daily_candles SET volume = volume + 1 WHERE id = 1"))
        started = time.monotonic()
        report = _pack(lock_timeout=0.2)
        assert report.busy
        assert time.monotonic() - started < 5
        assert (report.packed, report.remaining) == (0, 12)
    assert _pack().remaining == 0

    # packing holds the candles: a writer waits, and its write unpacks the month after
    p1 = ids["P00001"]
    done = threading.Event()

    def write() -> None:
        with session_scope() as session:
            upsert_daily_candles(
                session,
                _frame(("P00001",), [dt.date(2026, 11, 23)], bump=9.0),
                {("KOSPI", "P00001"): p1},
                source="test",
            )
        done.set()

    with session_scope() as session:
        session.execute(text("INSERT INTO candle_months_stale VALUES (:i, '2026-11-01')"),
                        {"i": p1})  # fmt: skip
    with session_scope() as packer:
        assert candle_months.pack_batch(packer, batch=10) == (1, 1)
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)  # blocked by the packer's lock
    thread.join(10)
    assert done.is_set()
    assert _stale() == {(p1, "2026-11-01")}
    assert (p1, "2026-11-01") not in _packed()
    _same_as_rows(ids, end=dt.date(2026, 11, 30))


def test_batches_limit_and_progress(ids: dict[str, int]) -> None:
    seen: list[tuple[int, int]] = []
    report = _pack(batch=5, limit=7, progress=lambda taken, total: seen.append((taken, total)))
    assert seen == [(5, 12), (7, 12)]
    assert (report.listed, report.remaining) == (7, 5)
    with pytest.raises(ValueError, match="batch must be at least 1, got 0"):
        _pack(batch=0)
    assert _pack().remaining == 0


def test_the_migration_lists_the_months_stored_before_it(
    clean_db: str, ids: dict[str, int]
) -> None:
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
    assert len(_packed()) == 12

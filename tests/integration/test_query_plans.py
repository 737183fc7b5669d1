"""Query plans on large tables (issue 22): a database of its own with 5,000,000 daily candles
(5,000 instruments × 1,000 sessions), 500,000 signals with their outcomes and 1,000,000 job
runs; the product's own code runs its main reads — each strategy's latest signals, a
2,500-instrument universe load, a track-record update, a job-history page — while every SQL
statement it sends is captured; each captured read is then run again under
``EXPLAIN (ANALYZE, BUFFERS)``: it must use an index and never scan a large table
sequentially. The plans' times are printed, not asserted (tests assert no timings).

The track-record update found its work list by a left join of ``signals`` and
``signal_outcomes`` (sequential scans of both) until migration 0021 gave every signal its
outcome row at birth; its sessions per market, which read a year of candles, are a loose
index scan."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from db import bulk, candles, migrate, scans
from db.candles import read_daily_bars
from db.engine import forget_engines, get_engine, session_scope
from db.outcomes import market_sessions
from quantbeat.infra.settings import reset_settings
from quantbeat.services import track_record
from quantbeat.services.jobs import page_jobs
from quantbeat.services.signal_reads import latest_signals
from tests.support import parallel
from tests.support.plans import (
    LAST_DAY,
    build_large_database,
    large_tables_read,
    pack_candles,
    plan_problems,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def large(database: str) -> Iterator[str]:
    url = database.rsplit("/", 1)[0] + "/" + database.rsplit("/", 1)[1] + "_plans"
    admin = url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    parallel.ensure_database(url)
    migrate.upgrade(url)
    build_large_database(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUANTBEAT_DATABASE_URL", url)
        reset_settings()
        forget_engines()
        yield url
    reset_settings()
    forget_engines()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


class Captured:
    """SQL statements sent while a block runs: SQLAlchemy's, and the COPY reads of
    :mod:`db.bulk` (their inner SELECT)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []


@pytest.fixture
def captured(large: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    found = Captured()
    engine = get_engine(large)

    def before(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool):
        if not many:
            found.statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", before)
    original = bulk.copy_out

    def copy_out(session: Any, query: str, params: Any, types: Any) -> Any:
        found.statements.append((query, params))
        return original(session, query, params, types)

    original_rows = bulk.binary_rows

    def binary_rows(session: Any, query: str, params: Any) -> Any:
        found.statements.append((query, params))
        return original_rows(session, query, params)

    monkeypatch.setattr(candles, "binary_rows", binary_rows)
    monkeypatch.setattr(bulk, "copy_out", copy_out)
    monkeypatch.setattr(candles, "copy_out", copy_out)
    monkeypatch.setattr(scans, "copy_out", copy_out)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _explain(url: str, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of every captured read."""
    plans = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for statement, params in statements:
            head = statement.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "WITH") or "pg_catalog" in statement:
                continue
            if statement.strip().upper() in ("SELECT 1", "SELECT VERSION()"):
                continue
            row = conn.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}",
                params or None,
            ).fetchone()
            assert row is not None
            plan = row[0][0] if isinstance(row[0], list) else json.loads(row[0])[0]
            plans.append({"sql": " ".join(statement.split())[:160], "plan": plan})
            conn.rollback()
    return plans


def _check(name: str, plans: list[dict[str, Any]]) -> None:
    assert plans, f"{name}: no read was captured"
    problems = [p for entry in plans for p in plan_problems(entry["plan"], entry["sql"])]
    assert problems == [], f"{name}:\n" + "\n".join(problems)
    assert set().union(*(large_tables_read(e["plan"]) for e in plans)), (
        f"{name}: no read of a large table was captured"
    )
    for entry in plans:
        print(f"{name}: {entry['plan']['Execution Time']:.1f} ms  {entry['sql'][:100]}")


def test_the_latest_signals(large: str, captured: Captured) -> None:
    found = latest_signals()
    assert any(s["count"] for s in found["strategies"])
    _check("latest signals", _explain(large, captured.statements))


def _universe(captured: Captured) -> int:
    with session_scope() as session:
        found = session.execute(text("SELECT id FROM instruments ORDER BY id LIMIT 2500"))
        ids = [int(i) for (i,) in found]
        captured.statements.clear()  # the id list is not the read under test
        bars = read_daily_bars(session, ids, start=dt.date(2025, 12, 1), end=dt.date(2026, 11, 30))
    return len(bars)


def test_a_universe_load(large: str, captured: Captured) -> None:
    """Every month packed (the state after a collection): one read of the valid packed
    months."""
    assert _universe(captured) > 500_000
    reads = [sql for sql, _ in captured.statements if "candle" in sql]
    assert len(reads) == 1
    assert "candle_months" in reads[0]
    _check("universe load", _explain(large, captured.statements))


def test_a_universe_load_after_a_write(large: str, captured: Captured) -> None:
    """The last month written since it was packed (a day stored, the pack not run yet): the
    valid packed months, the last month's rows of all 2,500 instruments as one range read,
    and the check that the packed months read did not change."""
    with session_scope() as session:
        session.execute(
            text("UPDATE daily_candles SET volume = volume WHERE trade_date = :d"),
            {"d": dt.date.fromisoformat(LAST_DAY)},
        )
    try:
        assert _universe(captured) > 500_000
        reads = [sql for sql, _ in captured.statements if "candle" in sql]
        assert len(reads) == 3
        assert "daily_candles" in reads[1]
        _check("universe load after a write", _explain(large, captured.statements))
    finally:
        pack_candles(large)


def test_the_sessions_per_market(large: str, captured: Captured) -> None:
    # what the track-record update reads to know each market's sessions over a year
    with session_scope() as session:
        found = market_sessions(
            session, {"KOSPI", "KOSDAQ"}, dt.date(2025, 12, 1), dt.date(2026, 11, 30)
        )
    assert len(found["KOSPI"]) > 200
    _check("sessions per market", _explain(large, captured.statements))


def test_a_job_history_page(large: str, captured: Captured) -> None:
    rows, after = page_jobs(limit=50)
    assert len(rows) == 50
    more, _ = page_jobs(limit=50, after=after)
    assert len(more) == 50
    failed, _ = page_jobs(states=["failed"], tasks=["quantbeat.scans.*"], limit=50)
    assert failed
    _check("job history page", _explain(large, captured.statements))


def test_a_track_record_update(large: str, captured: Captured) -> None:
    """The daily update: the work list (the last month's signals, not followed yet, among
    500,000 whose outcomes are closed), the sessions, the bars from each signal's start, the
    stored outcomes; then the same reads again once those signals are followed (open and
    pending), as the next day's update sends them."""
    day = dt.date.fromisoformat(LAST_DAY)
    first = track_record.update(day)
    assert first["followed"] > 1_000
    assert first["inserted"] > 1_000  # first outcomes, over the rows the signals were born with
    _check("track-record update", _explain(large, captured.statements))
    captured.statements.clear()
    again = track_record.update(day)
    assert again["followed"] > 0
    assert (again["inserted"], again["updated"]) == (0, 0)
    _check("track-record update, again", _explain(large, captured.statements))

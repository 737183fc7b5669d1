"""The main reads on large tables, timed: the database of ``tests/support/plans.py`` (5,000,000
daily candles, 500,000 signals with outcomes, 1,000,000 job runs; SIMULATED values) in its
own scratch database, and the SQL the product's own code sends for

* each strategy's latest signals (``quantbeat.services.signal_reads.latest_signals``),
* a job-history page, the first and the next (``quantbeat.services.jobs.page_jobs``), and
  the failures of one task family,
* a universe load: a year of 2,500 instruments' candles (``db.candles.read_daily_bars``),
* a track-record update for the last session
  (``quantbeat.services.track_record.update``: the last month's 10,500 signals not followed
  yet among 500,000) — its own reads (work list, sessions per market, stored outcomes) as
  ``track_record_update``; its bar reads, bulk candle transfers like the universe load,
  printed beside it,

each statement captured, then run under ``EXPLAIN (ANALYZE, BUFFERS)`` five times: the
median server execution time per read (the sum over a read's statements). Issue 22 asks each
to stay under 100 ms — ``goal <read>: … (target < 100 ms)``. The universe load reads the
candle months packed per instrument and month (migration 0023, :mod:`db.candle_months`):
``goal universe_load`` with every month packed (the state a collection leaves) and
``goal universe_load_after_write`` with the last month written since (its rows read beside
the packed months). Printed beside them: the load with nothing packed (the rows: 242 ms in
one statement on 2026-12-07 — clustered 125 ms, split into ten statements 853 ms), and each
state's wall time in the client.

Its own scratch database ``quantbeat_bench_plans`` (``QUANTBEAT_BENCH_DATABASE_URL``),
dropped and created by the run; about 3 minutes, most of it building the data.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import drop_database, recreate_database, use_services  # noqa: E402

DB_URL, _ = use_services("quantbeat_bench_plans")
TARGET_MS = 100.0
REPEATS = 5


def _capture(run: Any, copies: list[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """The reads ``run`` sends: SQLAlchemy's SELECTs and the bulk candle reads (the COPYs'
    inner SELECT) — those into ``copies`` instead when given."""
    from sqlalchemy import event

    from db import bulk, candles
    from db.engine import get_engine

    found: list[tuple[str, Any]] = []

    def before(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if not many and head in ("SELECT", "WITH") and "pg_catalog" not in statement:
            found.append((statement, params))

    original, original_rows = bulk.copy_out, bulk.binary_rows

    def copy_out(session: Any, query: str, params: Any, types: Any) -> Any:
        (found if copies is None else copies).append((query, params))
        return original(session, query, params, types)

    def binary_rows(session: Any, query: str, params: Any) -> Any:
        (found if copies is None else copies).append((query, params))
        return original_rows(session, query, params)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    setattr(candles, "copy_out", copy_out)  # noqa: B010 (not a re-export mypy sees)
    setattr(candles, "binary_rows", binary_rows)  # noqa: B010 (not a re-export mypy sees)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        setattr(candles, "copy_out", original)  # noqa: B010 (not a re-export mypy sees)
        setattr(candles, "binary_rows", original_rows)  # noqa: B010 (not a re-export mypy sees)
    return found


def _statement_ms(statements: list[tuple[str, Any]]) -> list[float]:
    """Each statement's median over :data:`REPEATS` of its server execution time (ms)."""
    import psycopg

    runs: list[list[float]] = []
    with psycopg.connect(DB_URL.replace("+psycopg", "")) as conn:
        for _ in range(REPEATS + 1):  # the first warms the cache
            times = []
            for statement, params in statements:
                row = conn.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}",
                    params or None,
                ).fetchone()
                assert row is not None
                times.append(float(row[0][0]["Execution Time"]))
            conn.rollback()
            runs.append(times)
    return [statistics.median(column) for column in zip(*runs[1:], strict=True)]


def _reads(statements: list[tuple[str, Any]]) -> int:
    """How many of ``statements`` read tables: not counted, though timed with the rest, the
    ``set_config`` calls around the packed months' reads (no parallel plan for them)."""
    return sum(
        1 for sql, _ in statements if "set_config" not in sql and "current_setting" not in sql
    )


def _execution_ms(statements: list[tuple[str, Any]]) -> float:
    """Median over :data:`REPEATS` of the summed server execution time of ``statements``."""
    return sum(_statement_ms(statements))


def main() -> None:
    recreate_database(DB_URL)
    from sqlalchemy import text

    from db import migrate
    from db.candles import read_daily_bars
    from db.engine import session_scope
    from quantbeat.services import track_record
    from quantbeat.services.jobs import page_jobs
    from quantbeat.services.signal_reads import latest_signals
    from tests.support.plans import (
        INSTRUMENTS,
        JOB_RUNS,
        LAST_DAY,
        SESSIONS,
        build_large_database,
    )

    migrate.upgrade(DB_URL)
    started = time.perf_counter()
    build_large_database(DB_URL)  # packs every month it wrote
    print(f"built and packed in {time.perf_counter() - started:.1f} s")
    with session_scope() as session:
        ids = [int(i) for (i,) in session.execute(text("SELECT id FROM instruments LIMIT 2500"))]

    def jobs() -> None:
        _, after = page_jobs(limit=50)
        page_jobs(limit=50, after=after)

    def universe() -> None:
        with session_scope() as session:
            read_daily_bars(session, ids, start=dt.date(2025, 12, 1), end=dt.date(2026, 11, 30))

    reads = {
        "latest_signals": lambda: latest_signals(),
        "job_history_pages": jobs,
        "job_failures_page": lambda: page_jobs(
            states=["failed"], tasks=["quantbeat.scans.*"], limit=50
        ),
        "universe_load": universe,
    }
    print(
        f"SIMULATED data: {INSTRUMENTS * SESSIONS:,} daily candles, 500,000 signals with "
        f"outcomes, {JOB_RUNS:,} job runs; median of {REPEATS} EXPLAIN ANALYZE runs"
    )
    figures = {}
    longest: dict[str, float] = {}
    for name, run in reads.items():
        statements = _capture(run)
        each = _statement_ms(statements)
        figures[name] = (sum(each), _reads(statements))
        longest[name] = max(each)
        print(
            f"  {name:20s} {figures[name][0]:9.1f} ms  ({figures[name][1]} statements, the "
            f"longest {longest[name]:.1f} ms)"
        )
    # The update writes: run once, its reads captured (bar reads apart), then timed.
    bars: list[tuple[str, Any]] = []
    own = _capture(lambda: track_record.update(dt.date.fromisoformat(LAST_DAY)), copies=bars)
    figures["track_record_update"] = (_execution_ms(own), _reads(own))
    bars_ms = _execution_ms(bars)
    print(
        f"  {'track_record_update':20s} {figures['track_record_update'][0]:9.1f} ms  "
        f"({_reads(own)} statements; its {_reads(bars)} bar reads, bulk transfers: "
        f"{bars_ms:.1f} ms)"
    )
    for name in ("latest_signals", "job_history_pages", "job_failures_page", "track_record_update"):
        ms = figures[name][0]
        verdict = "met" if ms < TARGET_MS else "missed"
        print(f"goal {name}: {ms:.1f} ms (target < {TARGET_MS:.0f} ms) {verdict}")
    _universe_states(ids, figures)
    for name in ("universe_load", "universe_load_after_write"):
        ms = figures[name][0]
        verdict = "met" if ms < TARGET_MS else "missed"
        print(f"goal {name}: {ms:.1f} ms (target < {TARGET_MS:.0f} ms) {verdict}")
    drop_database(DB_URL)


def _universe_states(ids: list[int], figures: dict[str, tuple[float, int]]) -> None:
    """The universe load in the packed months' other states — the last month written since
    it was packed (a day stored, the pack not run yet: a goal too), nothing packed (after a
    bulk load, before its pack) — and each read's wall time in the client, as a scan sees
    it: the bars in NumPy."""
    from sqlalchemy import text

    from db.candles import _read_rows, read_daily_bars
    from db.engine import session_scope
    from tests.support.plans import LAST_DAY, pack_candles

    start, end = dt.date(2025, 12, 1), dt.date(2026, 11, 30)

    def universe() -> None:
        with session_scope() as session:
            read_daily_bars(session, ids, start=start, end=end)

    def wall(read: Any) -> float:
        times = []
        for _ in range(REPEATS + 1):
            with session_scope() as session:
                began = time.perf_counter()
                read(session, ids, start=start, end=end)
                times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times[1:])

    packed_wall = wall(read_daily_bars)
    rows_wall = wall(lambda s, i, start, end: _read_rows(s, i, start, end))
    with session_scope() as session:  # a day stored again: its month logged for every instrument
        session.execute(
            text("UPDATE daily_candles SET volume = volume WHERE trade_date = :d"),
            {"d": dt.date.fromisoformat(LAST_DAY)},
        )
    statements = _capture(universe)
    figures["universe_load_after_write"] = (_execution_ms(statements), _reads(statements))
    after_wall = wall(read_daily_bars)
    with session_scope() as session:
        session.execute(text("UPDATE daily_candles SET volume = volume WHERE trade_date >= :d"),
                        {"d": start})  # fmt: skip
    statements = _capture(universe)
    cold = _execution_ms(statements)
    began = time.perf_counter()
    report = pack_candles(DB_URL)
    print(
        f"  universe_load_after_write {figures['universe_load_after_write'][0]:.1f} ms "
        f"({figures['universe_load_after_write'][1]} statements); nothing packed {cold:.1f} ms"
        f" ({_reads(statements)} statements: the packed months, none valid, then the rows; the "
        f"year just rewritten)\n"
        f"  wall, bars in NumPy: packed {packed_wall:.0f} ms, last month unpacked "
        f"{after_wall:.0f} ms, rows only {rows_wall:.0f} ms\n"
        f"  repacking a year of 5,000 instruments: {report.packed:,} months in "
        f"{time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()

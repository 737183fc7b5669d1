"""Upsert 1,000,000 daily candles into PostgreSQL through quantbeat's bulk path
(:func:`db.store.upsert_daily_candles`: instrument ids and quality flags, a binary COPY into a
temporary table, then ``INSERT … ON CONFLICT DO UPDATE … WHERE changed``) against the floor
measured in the same run: a binary ``COPY`` of the same rows (flags included), built from
NumPy buffers (:mod:`db.copybin`), straight into the same table — no conflict handling, no
temporary table. A second reference, the same binary COPY into an index-free copy of the
table, shows what the table's indexes cost.

Goal (issue 21): the upsert reaches at least 50 % of the binary COPY's rows/s —
``goal upsert_vs_binary_copy``.

Its own scratch database ``quantbeat_bench_ingest`` (``QUANTBEAT_BENCH_DATABASE_URL``),
dropped and created by the run.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import recreate_database
from sqlalchemy import text

URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_ingest",
)
os.environ["QUANTBEAT_DATABASE_URL"] = URL
INSTRUMENTS = 2_500
SESSIONS = 400  # 2,500 x 400 = 1,000,000 rows
END = dt.date(2026, 11, 20)
REPEATS = 2
TARGET = 0.50


def best_of(fn: Callable[[], object], setup: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    recreate_database(URL)
    from db import migrate
    from db.bulk import copy_rows, pg_types
    from db.engine import get_engine, session_scope
    from db.models import DailyCandle
    from db.store import _with_ids, upsert_daily_candles, upsert_instruments
    from quant.calendar import krx_approximate_calendar
    from quant.market.quality import flag_daily_candles
    from quant.market.simulated import SimulatedMarket
    from quant.market.types import DAILY_CANDLE_COLUMNS

    migrate.upgrade(URL)
    calendar = krx_approximate_calendar()
    sessions = calendar.sessions(END - dt.timedelta(days=SESSIONS * 2), END)[-SESSIONS:]
    market = SimulatedMarket(seed=42, universe_size=INSTRUMENTS, calendar=calendar)
    t0 = time.perf_counter()
    frame = market.daily_candles(sessions[0], sessions[-1])
    print(f"generated {len(frame):,} simulated candles in {time.perf_counter() - t0:.1f} s")
    engine = get_engine(URL)
    with session_scope() as s:
        ids = upsert_instruments(s, market.list_instruments(END), source="simulated")
    mapped = _with_ids(frame, DAILY_CANDLE_COLUMNS, ids, source="simulated", what="candles")
    mapped["quality_flags"] = flag_daily_candles(frame.reset_index(drop=True), {}).to_numpy()
    types = pg_types(DailyCandle.__table__, list(mapped.columns))  # type: ignore[arg-type]
    assert types is not None
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bare_candles (LIKE daily_candles INCLUDING DEFAULTS)"))

    def truncate() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE daily_candles, bare_candles RESTART IDENTITY"))
            conn.execute(text("CHECKPOINT"))

    def binary_copy() -> None:
        with session_scope() as s:
            copy_rows(s, "daily_candles", mapped, types)

    def binary_copy_no_index() -> None:
        with session_scope() as s:
            copy_rows(s, "bare_candles", mapped, types)

    def upsert() -> None:
        with session_scope() as s:
            upsert_daily_candles(s, frame, ids, source="simulated")

    rows = len(frame)
    ref = best_of(binary_copy, truncate)
    bare = best_of(binary_copy_no_index, truncate)
    ours = best_of(upsert, truncate)
    rerun = best_of(upsert, lambda: None)  # the same rows again: nothing to write
    truncate()
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bare_candles"))

    print(f"rows: {rows:,} ({INSTRUMENTS:,} instruments x {SESSIONS} sessions), best of {REPEATS}")
    for label, seconds in (
        ("floor: binary COPY into the table", ref),
        ("binary COPY, index-free copy", bare),
        ("quantbeat upsert", ours),
        ("quantbeat upsert re-run, unchanged", rerun),
    ):
        print(f"  {label:36s} {seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s")
    ratio = ref / ours
    print(f"ratio upsert rows/s / binary COPY rows/s = {ratio:.2f}")
    verdict = "met" if ratio >= TARGET else "missed"
    print(f"goal upsert_vs_binary_copy: {ratio:.2f} (target {TARGET:.2f}) {verdict}")


if __name__ == "__main__":
    main()

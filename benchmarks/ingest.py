"""Upsert 1,000,000 daily candles into PostgreSQL through quantbeat's bulk path (COPY into a
temporary table, then INSERT … ON CONFLICT DO UPDATE … WHERE changed) and compare it with a
bare COPY of the same rows into the same table, measured in the same run.

Goal (issue 3): the upsert path reaches at least 50 % of bare COPY's rows/s.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import ensure_database
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
    ensure_database(URL)
    from db import migrate
    from db.bulk import copy_rows
    from db.engine import get_engine, session_scope
    from db.store import _with_ids, upsert_daily_candles, upsert_instruments
    from quant.calendar import krx_approximate_calendar
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

    def truncate() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE daily_candles RESTART IDENTITY"))

    def bare_copy() -> None:
        with session_scope() as s:
            copy_rows(s, "daily_candles", mapped)

    def upsert() -> None:
        with session_scope() as s:
            upsert_daily_candles(s, frame, ids, source="simulated")

    rows = len(frame)
    ref = best_of(bare_copy, truncate)
    ours = best_of(upsert, truncate)
    rerun = best_of(upsert, lambda: None)  # the same rows again: nothing to write
    truncate()

    print(f"rows: {rows:,} ({INSTRUMENTS:,} instruments x {SESSIONS} sessions), best of {REPEATS}")
    print(f"  bare COPY                {ref:6.2f} s  {rows / ref:>10,.0f} rows/s")
    print(f"  upsert (COPY+ON CONFLICT){ours:6.2f} s  {rows / ours:>10,.0f} rows/s")
    print(f"  upsert re-run, unchanged {rerun:6.2f} s  {rows / rerun:>10,.0f} rows/s")
    ratio = ref / ours
    print(f"ratio upsert rows/s / bare COPY rows/s = {ratio:.2f}")
    verdict = "met" if ratio >= TARGET else "missed"
    print(f"goal upsert_vs_copy: {ratio:.2f} (target {TARGET:.2f}) {verdict}")


if __name__ == "__main__":
    main()

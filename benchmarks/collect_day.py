"""Store one simulated trading day (2,500 instruments) in PostgreSQL: quantbeat's idempotent
upsert (first write and an unchanged re-run) against two references measured in the same run —
a plain ``executemany`` INSERT and a ``COPY`` of the same rows into a scratch table.

Issue 2 sets no speed goal; these figures are the baseline for issue 3's bulk (COPY) path.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import ensure_database
from sqlalchemy import text

URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_collect",
)
os.environ["QUANTBEAT_DATABASE_URL"] = URL
REPEATS = 5
DAY = dt.date(2026, 11, 20)


def timed(fn: Callable[[], object], setup: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(REPEATS):
        setup()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ensure_database(URL)
    from db import migrate
    from db.engine import get_engine, session_scope
    from db.store import upsert_daily_candles, upsert_instruments
    from quant.calendar import krx_approximate_calendar
    from quant.market.simulated import SimulatedMarket

    migrate.upgrade(URL)
    market = SimulatedMarket(seed=42, universe_size=2500, calendar=krx_approximate_calendar())
    frame = market.daily_candles(DAY, DAY)
    instruments = market.list_instruments(DAY)
    engine = get_engine(URL)
    with session_scope() as s:
        ids = upsert_instruments(s, instruments, source="simulated")
    rows = [
        (ids[(m, t)], d, o, h, lo, c, v, tv, "simulated")
        for m, t, d, o, h, lo, c, v, tv in frame.itertuples(index=False, name=None)
    ]

    def clear() -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM daily_candles"))
            conn.execute(text("DROP TABLE IF EXISTS bench_ref"))
            conn.execute(text("CREATE TABLE bench_ref (LIKE daily_candles INCLUDING DEFAULTS)"))

    def upsert() -> None:
        with session_scope() as s:
            upsert_daily_candles(s, frame, ids, source="simulated")

    cols = "instrument_id, trade_date, open, high, low, close, volume, traded_value, source"

    def ref_insert() -> None:
        with engine.begin() as conn:
            cur = conn.connection.cursor()
            cur.executemany(
                f"INSERT INTO bench_ref ({cols}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows
            )

    def ref_copy() -> None:
        with engine.begin() as conn:
            cur = conn.connection.cursor()
            with cur.copy(f"COPY bench_ref ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    first = timed(upsert, clear)
    rerun = timed(upsert, lambda: None)  # rows already there and unchanged
    insert = timed(ref_insert, clear)
    copy = timed(ref_copy, clear)
    clear()

    med = {
        k: statistics.median(v)
        for k, v in {
            "upsert_first": first,
            "upsert_rerun": rerun,
            "ref_executemany": insert,
            "ref_copy": copy,
        }.items()
    }
    print(f"rows per day: {len(rows):,} (simulated market, {DAY})")
    for name, value in med.items():
        print(f"  {name:<16} median {value * 1000:8.1f} ms  ({len(rows) / value:,.0f} rows/s)")
    print(f"ratio upsert_first / ref_copy        = {med['upsert_first'] / med['ref_copy']:.2f}")
    print(
        f"ratio upsert_first / ref_executemany = {med['upsert_first'] / med['ref_executemany']:.2f}"
    )
    print(f"ratio upsert_rerun / upsert_first    = {med['upsert_rerun'] / med['upsert_first']:.2f}")
    print("issue 2 sets no speed goals; these are the baseline for issue 3's COPY upsert")


if __name__ == "__main__":
    main()

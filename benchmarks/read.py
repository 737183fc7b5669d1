"""Reading 1,000,000 daily candles (2,500 instruments × 400 sessions) from PostgreSQL into
NumPy, against the physical floor measured in the same run.

* floor — ``COPY (SELECT instrument_id, trade_date, open … traded_value FROM daily_candles)
  TO STDOUT (FORMAT binary)``: the table's rows, unordered and unfiltered, in the server's
  own binary format, drained from libpq into one buffer, viewed as a NumPy structured array
  and cast to native columns. Nothing reads the same rows into arrays with less work on
  either side; for scale, ``psql`` (libpq's C client) receiving the same COPY and discarding
  the bytes is printed beside it.
* quantbeat — :func:`db.candles.read_daily_bars` (the rows of the instruments and date range
  asked for, ordered by instrument and date, binary COPY into NumPy) and then each of the
  loaders built on it: the backtests' aligned ``sessions × instruments`` matrices
  (:func:`quantbeat.services.backtests.load_market` minus flows), the scans' and indicators'
  per-instrument :class:`Candles` (:func:`db.candles.load_daily_universe`), the track
  record's bars (:func:`db.outcomes.load_bars`).
* for reference, the same rows through SQLAlchemy row by row (the path the loaders had).

Goal (issue 21): the aligned matrices within 1.5× of the floor — ``goal read_vs_copy`` — read
from the rows, before any month is packed. The same reads with the months packed
(:mod:`db.candle_months`, the state a collection leaves) are printed after it, checked equal
to the rows' — they move 56 bytes a bar in one value a month, so they can beat the row floor.

Its own scratch database ``quantbeat_bench_read`` (``QUANTBEAT_BENCH_DATABASE_URL``), dropped
and created by the run.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from _support import (
    CANDLE_COLUMNS,
    candle_read_floor,
    median_of,
    recreate_database,
    simulated_daily,
    use_services,
)

URL, _ = use_services("quantbeat_bench_read")
INSTRUMENTS = 2_500
SESSIONS = 400  # 2,500 x 400 = 1,000,000 rows
END = dt.date(2026, 11, 20)
REPEATS = 5
TARGET = 1.5


def main() -> None:
    recreate_database(URL)
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from db import candle_months
    from db.candles import load_daily_universe, read_daily_bars
    from db.engine import session_scope
    from db.outcomes import load_bars
    from quantbeat.services.backtests import WARMUP_DAYS, load_market

    ids, sessions, rows = simulated_daily(
        URL, seed=42, instruments=INSTRUMENTS, sessions=SESSIONS, end=END
    )
    first, last = sessions[0], sessions[-1]
    members = sorted((int(i), f"{m}:{t}") for (m, t), i in ids.items())
    idents = [i for i, _ in members]
    columns = CANDLE_COLUMNS

    def floor() -> object:
        # the whole table, no filter, no order: the least work that yields these rows
        return candle_read_floor()

    def psql_transfer() -> object:
        # libpq's own C client, the bytes only (no parsing): where the transfer ends
        target = make_url(URL).set(drivername="postgresql").render_as_string(False)
        return subprocess.run(
            ["psql", target, "-c", f"COPY daily_candles ({columns}) TO STDOUT (FORMAT binary)"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def bars() -> object:
        with session_scope() as s:
            return read_daily_bars(s, idents, start=first, end=last)

    def aligned() -> object:
        # from `first` on: its warm-up reaches back WARMUP_DAYS before the start it is given
        return load_market(members, first + dt.timedelta(days=WARMUP_DAYS), last, flows=False)

    def universe() -> object:
        with session_scope() as s:
            return load_daily_universe(s, idents, end=last, bars=SESSIONS)

    def outcomes() -> object:
        with session_scope() as s:
            return load_bars(s, dict.fromkeys(idents, first), last)

    def row_by_row() -> object:
        with session_scope() as s:
            got = s.execute(
                text(
                    f"SELECT {columns} FROM daily_candles WHERE trade_date BETWEEN :a AND :b "
                    "ORDER BY instrument_id, trade_date"
                ),
                {"a": first, "b": last},
            ).all()
            return np.array([r[2:] for r in got], dtype=np.float64)

    t_floor, got = median_of(floor, REPEATS)
    assert isinstance(got, list)
    assert len(got[0]) == rows, (len(got[0]), rows)
    t_bars, got_bars = median_of(bars, REPEATS)
    assert len(got_bars) == rows
    t_aligned, loaded = median_of(aligned, REPEATS)
    shape = loaded.market.close.shape
    assert shape == (SESSIONS, INSTRUMENTS), shape
    assert int(np.isfinite(loaded.market.close).sum()) == rows
    t_universe, got_universe = median_of(universe, REPEATS)
    assert sum(len(c) for c in got_universe.values()) == rows
    t_outcomes, got_outcomes = median_of(outcomes, REPEATS)
    assert sum(len(d) for d, _ in got_outcomes.values()) == rows
    t_rows, _ = median_of(row_by_row, REPEATS)
    t_psql = median_of(psql_transfer, REPEATS)[0] if shutil.which("psql") else float("nan")
    # The same reads once the months are packed (db.candle_months: the state a collection
    # leaves; until a write is packed its months are read as rows, as above).
    packed = candle_months.pack(session_scope)
    t_bars_packed, got_packed = median_of(bars, REPEATS)
    for name, values in got_bars.columns.items():
        assert np.array_equal(got_packed.columns[name], values, equal_nan=True), name
    assert np.array_equal(got_packed.time, got_bars.time)
    t_aligned_packed, loaded_packed = median_of(aligned, REPEATS)
    assert np.array_equal(loaded_packed.market.close, loaded.market.close, equal_nan=True)

    print(
        f"rows: {rows:,} ({INSTRUMENTS:,} instruments x {SESSIONS} sessions), median of {REPEATS}"
    )
    for label, seconds in (
        ("floor: COPY TO binary -> NumPy", t_floor),
        ("read_daily_bars (columns)", t_bars),
        ("load_market (aligned matrices)", t_aligned),
        ("load_daily_universe (Candles)", t_universe),
        ("outcomes.load_bars", t_outcomes),
        ("reference: SQLAlchemy rows", t_rows),
        ("reference: psql C client, bytes only", t_psql),
        ("read_daily_bars, months packed", t_bars_packed),
        ("load_market, months packed", t_aligned_packed),
    ):
        print(
            f"  {label:34s} {seconds * 1000:8.1f} ms  {rows / seconds:>12,.0f} rows/s"
            f"  {seconds / t_floor:5.2f}x floor"
        )
    print(f"  (packing {packed.packed:,} instrument-months took {packed.seconds:.1f} s)")
    ratio = t_aligned / t_floor
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"goal read_vs_copy: {ratio:.2f} (target <= {TARGET:.2f}) {verdict}")


if __name__ == "__main__":
    main()

"""The daily precompute of the scan set: 15 indicators (:data:`quant.indicators.SCAN_SET`)
over the last 300 daily bars of 2,500 instruments — 37,500 series — computed and stored in
the Redis indicator cache where the scans read them, with the universe RS ratings
(:func:`quantbeat.services.precompute.precompute_universe`, the service behind
``quantbeat.indicators.precompute``), against the floor measured in the same run:

* read — the 750,000 candles as ``COPY … TO STDOUT (FORMAT binary)`` drained into NumPy
  (``benchmarks/read.py``'s floor: the whole table, no filter, no order);
* compute — the kernels alone: :func:`quant.indicators.compute` of the 15 indicators on each
  instrument's arrays in this process (TA-Lib for SMA, RSI, ATR and Bollinger bands, numba
  for the 52-week range, RS raw and the volume profile), nothing read or stored.

Goal (issue 21): precompute within 3× of (read floor + compute) — ``goal
precompute_vs_floor``.

Its own scratch database ``quantbeat_bench_precompute`` (``QUANTBEAT_BENCH_DATABASE_URL``),
dropped and created by the run, and Redis ``redis://127.0.0.1:6379/12`` (flushed).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import (  # noqa: E402
    candle_read_floor,
    median_of,
    recreate_database,
    simulated_daily,
    use_services,
)

DB_URL, REDIS_URL = use_services("quantbeat_bench_precompute", 12)
INSTRUMENTS = 2_500
END = dt.date(2026, 11, 20)
REPEATS = 3
TARGET = 3.0


def main() -> None:
    recreate_database(DB_URL)
    import redis

    from db.candles import load_daily_universe, universe
    from db.engine import session_scope
    from quant.indicators import SCAN_BARS, SCAN_SET, compute
    from quantbeat.services.precompute import precompute_universe

    assert REDIS_URL is not None
    flush = redis.Redis.from_url(REDIS_URL).flushdb
    flush()
    _, sessions, rows = simulated_daily(
        DB_URL, seed=11, instruments=INSTRUMENTS, sessions=SCAN_BARS, end=END
    )
    markets = ["KOSPI", "KOSDAQ"]
    t_read, got = median_of(candle_read_floor, REPEATS)
    assert len(got[0]) == rows
    with session_scope() as s:
        members = universe(s, markets)
        candles = load_daily_universe(s, [i for i, _ in members], end=END, bars=SCAN_BARS)

    def compute_floor() -> int:
        n = 0
        for bars in candles.values():
            for name, params in SCAN_SET:
                compute(name, bars, dict(params))
                n += 1
        return n

    t_compute, series = median_of(compute_floor, REPEATS)
    assert series == len(members) * len(SCAN_SET)
    floor = t_read + t_compute

    def precompute() -> Any:
        return precompute_universe(sessions[-1], markets)

    t_ours, summary = median_of(precompute, REPEATS, setup=flush)
    assert summary["failed"] == 0, summary
    assert summary["series"] == series, summary

    print(
        f"precompute of {len(SCAN_SET)} indicators x {len(members):,} instruments "
        f"({series:,} series over {SCAN_BARS} bars, {rows:,} candles), median of {REPEATS}"
    )
    for label, seconds in (
        ("floor: read (binary COPY -> NumPy)", t_read),
        ("floor: compute (the kernels alone)", t_compute),
        ("floor: read + compute", floor),
        ("quantbeat: precompute_universe", t_ours),
    ):
        print(f"  {label:38s} {seconds * 1000:9.1f} ms")
    print(f"  stored {summary['stored']:,} cache entries ({summary['cache']})")
    ratio = t_ours / floor
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"goal precompute_vs_floor: {ratio:.2f} (target <= {TARGET:.1f}) {verdict}")


if __name__ == "__main__":
    main()

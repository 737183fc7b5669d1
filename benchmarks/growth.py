"""Growth: does the intraday table slow down as it grows? Crypto minute bars of 50 UPBIT
markets are upserted through quantbeat's bulk path (:func:`db.store.upsert_intraday_candles`:
a binary COPY into a temporary table, then ``INSERT … ON CONFLICT``) in batches of 500,000
rows (10,000 minutes of every market, oldest first, as a backfill writes them) until the
table holds 50,000,000 rows. At 1M, 10M and 50M rows it measures:

* ingest — the rows/s of the batches that brought the table to that size (the mean of the
  last two batches' rates);
* read — a fixed range read: one market's most recent day of minute bars (1,440 bars) through
  :func:`db.candles.load_candles`, the median of 50 reads of random markets.

The figures go to the log and to ``benchmarks/growth.png`` (two panels: ingest rows/s and read
latency against table size). Both should stay flat; a B-tree's depth grows with the log of its
size, so "flat" means within 2× of the 1M figure — ``goal ingest_flat`` and ``goal
read_flat``.

Batches arrive in time order, as a collector appends them (the index's rightmost pages take
them); a backfill of old data into a big table would touch older pages.

Its own scratch database ``quantbeat_bench_growth`` (``QUANTBEAT_BENCH_DATABASE_URL``),
created by the run and dropped at its end (it needs about 12 GB of disk at 50M rows; a
smaller ``GROWTH_MAX_ROWS`` stops earlier). About 7 minutes on a 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _support import drop_database, recreate_database  # noqa: E402

DB_URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_growth",
)
os.environ["QUANTBEAT_DATABASE_URL"] = DB_URL
os.environ["QUANTBEAT_LOG_LEVEL"] = "WARNING"
MARKETS = 50
BATCH_MINUTES = 10_000  # x 50 markets = 500,000 rows a batch
CHECKPOINTS = (1_000_000, 10_000_000, 50_000_000)
MAX_ROWS = int(os.environ.get("GROWTH_MAX_ROWS", CHECKPOINTS[-1]))
READS = 50
FLAT = 2.0
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def batch(first_minute: int, tickers: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """``BATCH_MINUTES`` minute bars of every ticker from minute ``first_minute`` on (a
    random walk per ticker; SIMULATED data)."""
    n = BATCH_MINUTES
    minutes = np.arange(first_minute, first_minute + n, dtype=np.int64)
    ts = pd.to_datetime(START) + pd.to_timedelta(np.tile(minutes, len(tickers)), unit="min")
    close = 1e6 * np.exp(np.cumsum(rng.normal(0, 1e-3, (len(tickers), n)), axis=1)).ravel()
    volume = rng.uniform(0.1, 10.0, close.size)
    return pd.DataFrame(
        {
            "market": "UPBIT",
            "ticker": np.repeat(tickers, n),
            "interval": "1m",
            "ts": ts,
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": volume,
            "traded_value": close * volume,
        }
    )


def main() -> None:
    recreate_database(DB_URL)
    from db import migrate
    from db.candles import load_candles
    from db.engine import session_scope
    from db.store import upsert_instruments, upsert_intraday_candles
    from quant.market.types import Instrument, Market

    migrate.upgrade(DB_URL)
    tickers = [f"KRW-SIM{k:03d}" for k in range(MARKETS)]
    with session_scope() as s:
        ids = upsert_instruments(
            s, [Instrument(Market.UPBIT, t, t, currency="KRW") for t in tickers], source="sim"
        )
    rng = np.random.default_rng(5)
    rows = 0
    minute = 0
    rates: list[tuple[int, float]] = []  # (table size after the batch, rows/s)
    results: list[tuple[int, float, float]] = []  # (size, ingest rows/s, read ms)
    print(f"SIMULATED minute bars of {MARKETS} markets, batches of {BATCH_MINUTES * MARKETS:,}")
    for checkpoint in (c for c in CHECKPOINTS if c <= MAX_ROWS):
        while rows < checkpoint:
            frame = batch(minute, tickers, rng)
            t0 = time.perf_counter()
            with session_scope() as s:
                upsert_intraday_candles(s, frame, ids, source="sim")
            seconds = time.perf_counter() - t0
            rows += len(frame)
            minute += BATCH_MINUTES
            rates.append((rows, len(frame) / seconds))
        ingest = statistics.mean(rate for _, rate in rates[-2:])
        last = START + dt.timedelta(minutes=minute - 1)
        reads = []
        for _ in range(READS):
            ident = ids[("UPBIT", random.choice(tickers))]
            t0 = time.perf_counter()
            with session_scope() as s:
                got = load_candles(
                    s, ident, "1m", start=last - dt.timedelta(days=1), end=last, limit=1_440
                )
            reads.append(time.perf_counter() - t0)
            assert len(got) == 1_440, len(got)
        read_ms = statistics.median(reads) * 1000
        results.append((rows, ingest, read_ms))
        print(f"  {rows:>12,} rows: ingest {ingest:>10,.0f} rows/s, read 1 day {read_ms:7.2f} ms")

    _chart(results, ROOT / "benchmarks" / "growth.png")
    from db.engine import dispose_engines

    dispose_engines()
    drop_database(DB_URL)  # about 12 GB at 50M rows: not left behind
    base_rate, base_read = results[0][1], results[0][2]
    worst_rate = min(r for _, r, _ in results)
    worst_read = max(ms for _, _, ms in results)
    ingest_ratio = base_rate / worst_rate
    read_ratio = worst_read / base_read
    print(
        f"goal ingest_flat: {ingest_ratio:.2f}x the 1M rate at worst "
        f"(target <= {FLAT:.1f}x) {'met' if ingest_ratio <= FLAT else 'missed'}"
    )
    print(
        f"goal read_flat: {read_ratio:.2f}x the 1M latency at worst "
        f"(target <= {FLAT:.1f}x) {'met' if read_ratio <= FLAT else 'missed'}"
    )


def _chart(results: list[tuple[int, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r[0] / 1e6 for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [r[1] for r in results], marker="o")
    left.set(xscale="log", xlabel="rows in intraday_candles (millions)", ylabel="rows/s")
    left.set_title("upsert of a 500,000-row batch")
    left.set_ylim(bottom=0)
    right.plot(sizes, [r[2] for r in results], marker="o", color="tab:orange")
    right.set(xscale="log", xlabel="rows in intraday_candles (millions)", ylabel="ms")
    right.set_title("one market's last day (1,440 bars)")
    right.set_ylim(bottom=0)
    fig.suptitle("SIMULATED crypto minute bars: quantbeat on PostgreSQL as the table grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"chart: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

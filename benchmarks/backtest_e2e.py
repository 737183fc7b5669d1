"""A whole-universe backtest end to end: 2,500 instruments × 260 sessions of daily candles in
PostgreSQL (and the 200 sessions before them, on which the strategy's indicators warm up),
submitted as a run (:func:`quantbeat.services.backtests.submit_backtest`),
executed by a real prefork ``cpu`` worker — candles loaded, signals built, the portfolio
simulated, trades and equity stored — until its state reads ``completed``.

The floor, measured in the same run on the same rows:

* read — the 1,150,000 candles (260 sessions and 200 of warm-up before them) as
  ``COPY … TO STDOUT (FORMAT binary)`` drained into NumPy
  (``benchmarks/read.py``'s floor: the whole table, no filter, no order);
* kernel — the engine simulating the same portfolio (``quant.backtest.engine.simulate``) from
  signals computed beforehand.

Nothing can run this backtest with less than reading its data and simulating it. Also shown:
each phase of the worker's path timed in this process (load, signals, simulate, store) and the
task round trip of a bare Celery task on the same worker (what any task costs).

Goal (issue 21): end to end within 3× of (read floor + kernel) —
``goal backtest_end_to_end_vs_floor``.

Its own scratch database ``quantbeat_bench_e2e`` (``QUANTBEAT_BENCH_DATABASE_URL``), dropped
and created by the run, and Redis ``redis://127.0.0.1:6379/11`` (flushed).
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
    start_worker,
    stop_worker,
    use_services,
)

DB_URL, REDIS_URL = use_services("quantbeat_bench_e2e", 11)
INSTRUMENTS = 2_500
SESSIONS = 260
#: Sessions stored before the backtest's first day: the strategy's indicators warm up on them.
WARMUP = 200
END = dt.date(2026, 11, 20)
STRATEGY = "vcp_breakout"
REPEATS = 5
TARGET = 3.0


def main() -> None:
    recreate_database(DB_URL)
    import redis

    from quant.backtest.engine import simulate
    from quant.backtest.strategies import get as get_strategy
    from quantbeat.services.backtests import load_market, submit_backtest, wait

    assert REDIS_URL is not None
    redis.Redis.from_url(REDIS_URL).flushdb()
    ids, sessions, rows = simulated_daily(
        DB_URL, seed=7, instruments=INSTRUMENTS, sessions=SESSIONS + WARMUP, end=END
    )
    members = sorted((int(i), f"{m}:{t}") for (m, t), i in ids.items())
    first, last = sessions[WARMUP], sessions[-1]
    spec = {
        "strategy": STRATEGY,
        "instruments": [name for _, name in members],
        "start": first.isoformat(),
        "end": last.isoformat(),
        "execution": {"max_positions": 10},
        "label": "benchmark: whole universe",
    }
    t_read, got = median_of(candle_read_floor, REPEATS)
    assert len(got[0]) == rows
    strategy = get_strategy(STRATEGY)
    params = strategy.params({})
    execution = strategy.execution_with({"max_positions": 10})

    def load() -> Any:
        return load_market(members, first, last, flows=strategy.needs_flows)

    t_load, loaded = median_of(load, REPEATS)

    def build() -> Any:
        return strategy.signals(loaded.market, params, loaded.flows)

    t_signals, signals = median_of(build, REPEATS)

    signals.entries[: loaded.start_index] = False  # as the run does: no trades in warm-up

    def kernel() -> Any:
        return simulate(loaded.market, signals, execution, initial_cash=100_000_000.0)

    t_kernel, _ = median_of(kernel, REPEATS)
    floor = t_read + t_kernel

    # --- end to end through a worker ------------------------------------------------------
    worker = start_worker("bench-e2e", concurrency=1, queues="cpu", pool="prefork")
    try:
        from workers.app import app

        def ping() -> Any:
            return app.control.ping(timeout=5, limit=1)

        t_ping, _ = median_of(ping, REPEATS)

        def end_to_end() -> Any:
            run_id = submit_backtest(spec, origin="benchmark")
            final = wait(run_id, timeout=600, poll=0.02)
            assert final["state"] == "completed", final
            return final

        t_e2e, final = median_of(end_to_end, REPEATS)
    finally:
        stop_worker(worker)

    print(
        f"{STRATEGY} over {INSTRUMENTS:,} instruments x {SESSIONS} sessions "
        f"(+{WARMUP} warm-up; {rows:,} candles), median of {REPEATS} after a warm-up"
    )
    for label, seconds in (
        ("floor: read (binary COPY -> NumPy)", t_read),
        ("floor: kernel (simulate)", t_kernel),
        ("floor: read + kernel", floor),
        ("in process: load_market", t_load),
        ("in process: signals", t_signals),
        ("reference: worker ping round trip", t_ping),
        ("end to end: submit -> completed", t_e2e),
    ):
        print(f"  {label:38s} {seconds * 1000:9.1f} ms")
    trades = final.get("summary", {}).get("closed_trades")
    print(f"  closed trades in the stored run: {trades}")
    ratio = t_e2e / floor
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"goal backtest_end_to_end_vs_floor: {ratio:.2f} (target <= {TARGET:.1f}) {verdict}")


if __name__ == "__main__":
    main()

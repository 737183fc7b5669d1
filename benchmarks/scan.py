"""Universe scans end to end (issue 5): the full simulated universe (2,500 instruments ×
310 sessions) scanned through the ``cpu`` queue — a real prefork worker, PostgreSQL, the
Redis cache and result backend — against the same rules in a straightforward per-instrument
pandas implementation (``benchmarks/pandas_scan.py``), measured in the same run.

quantbeat's scan, per strategy: ``quantbeat.scans.run`` → RS ratings from the cache → a
chord of 250-instrument chunks (cache reads, PostgreSQL for flows and misses, evaluation,
signal writes) → ``finish``; timed from sending ``run`` to the chord's result (the median of
three runs). Measured with the cache warm (the daily pipeline's precompute step ran first, as
in production) and cold (cache cleared: everything read from PostgreSQL). The reference
reads each instrument with its own query and computes with pandas; both must find the same
candidates (checked).

Goals (issue 5): ≥ 20× the straightforward version's instruments/s; the whole universe in
under 10 s on this 2-core machine.

Needs PostgreSQL (``QUANTBEAT_BENCH_DATABASE_URL``, default database ``quantbeat_bench_scan``)
and Redis (``QUANTBEAT_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/5``, flushed).
The first run collects the simulated history (a few minutes); later runs reuse it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import ensure_database, start_worker, stop_worker  # noqa: E402

DB_URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_scan",
)
REDIS_URL = os.environ.get("QUANTBEAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ.update(
    {
        "QUANTBEAT_DATABASE_URL": DB_URL,
        "QUANTBEAT_BROKER_URL": REDIS_URL,
        "QUANTBEAT_RESULT_BACKEND": REDIS_URL,
        "QUANTBEAT_REDIS_URL": REDIS_URL,
        "QUANTBEAT_SIM_UNIVERSE_SIZE": "2500",
        "QUANTBEAT_LOG_LEVEL": "WARNING",
        "QUANTBEAT_MARKET_SOURCE": "simulated",
    }
)

DAY = dt.date(2026, 11, 20)
SESSIONS = 310
FLOW_SESSIONS = 60
STRATEGIES = ("vcp", "closing_bet")


def ensure_history() -> int:
    """SESSIONS sessions of candles (the last FLOW_SESSIONS with flows) for the universe."""
    from sqlalchemy import func, select

    from db import migrate
    from db.engine import session_scope
    from db.models import DailyCandle, InvestorFlow
    from quantbeat.infra.sources import krx_calendar
    from tasks.collect import daily_range

    migrate.upgrade(DB_URL)
    sessions = krx_calendar().sessions(DAY - dt.timedelta(days=SESSIONS * 2), DAY)[-SESSIONS:]
    for model, wanted, dataset in (
        (DailyCandle, sessions, "candles"),
        (InvestorFlow, sessions[-FLOW_SESSIONS:], "flows"),
    ):
        with session_scope() as s:
            have = s.execute(
                select(func.count()).select_from(model).where(model.trade_date >= wanted[0])
            ).scalar_one()
        if have < 2_500 * len(wanted):
            print(f"collecting {len(wanted)} simulated sessions of {dataset} (once) ...")
            for i in range(0, len(wanted), 200):
                part = wanted[i : i + 200]
                daily_range(part[0].isoformat(), part[-1].isoformat(), dataset=dataset)
    with session_scope() as s:
        return int(
            s.execute(
                select(func.count()).select_from(DailyCandle).where(DailyCandle.trade_date == DAY)
            ).scalar_one()
        )


def scan_through_queue(app: Any, strategy: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    started = app.send_task(
        "quantbeat.scans.run", kwargs={"strategy": strategy, "trade_date": DAY.isoformat()}
    ).get(timeout=600)
    summary = app.AsyncResult(started["chord"]).get(timeout=600)
    return time.perf_counter() - t0, summary


def stored_candidates(strategy: str) -> dict[str, tuple[float | None, str | None]]:
    from quantbeat.services.scans import candidates

    return {c.instrument: (c.score, c.grade) for c in candidates(strategy, DAY)}


def main() -> None:
    ensure_database(DB_URL)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    universe = ensure_history()
    from db.engine import get_engine
    from quantbeat.services.indicators import indicator_cache
    from workers.app import app

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pandas_scan import scan_universe_pandas

    worker = start_worker("bench-scan")
    try:
        t0 = time.perf_counter()
        app.send_task(
            "quantbeat.indicators.precompute", kwargs={"trade_date": DAY.isoformat()}
        ).get(timeout=600)
        precompute_s = time.perf_counter() - t0
        scan_through_queue(app, "vcp")  # warm-up: worker children, pools, the backend
        warm: dict[str, float] = {}
        cold: dict[str, float] = {}
        summaries: dict[str, dict[str, Any]] = {}
        for strategy in STRATEGIES:
            # median of three: these runs take about a second each on a noisy machine
            runs = sorted((scan_through_queue(app, strategy) for _ in range(3)), key=lambda r: r[0])
            warm[strategy], summaries[strategy] = runs[1]
        ours = {s: stored_candidates(s) for s in STRATEGIES}
        indicator_cache().clear()
        for strategy in STRATEGIES:
            cold[strategy], _ = scan_through_queue(app, strategy)
            indicator_cache().clear()
    finally:
        stop_worker(worker)

    engine = get_engine(DB_URL)
    reference: dict[str, float] = {}
    agree: dict[str, str] = {}
    for strategy in STRATEGIES:
        t0 = time.perf_counter()
        found = scan_universe_pandas(engine, DAY, strategy)
        reference[strategy] = time.perf_counter() - t0
        same_set = set(found) == set(ours[strategy])
        same_values = same_set and all(
            (found[k][1] == ours[strategy][k][1])
            and (
                (found[k][0] is None and ours[strategy][k][0] is None)
                or abs((found[k][0] or 0.0) - (ours[strategy][k][0] or 0.0)) < 1e-6
            )
            for k in found
        )
        agree[strategy] = (
            f"same {len(found)} candidates, same scores and grades"
            if same_values
            else f"DIFFERENT: reference {len(found)}, quantbeat {len(ours[strategy])} "
            f"(only reference: {sorted(set(found) - set(ours[strategy]))[:5]}, only quantbeat: "
            f"{sorted(set(ours[strategy]) - set(found))[:5]})"
        )

    print(f"universe: {universe:,} instruments x {SESSIONS} sessions (simulated), {DAY}")
    print(f"  precompute of the scan indicators (the pipeline step before): {precompute_s:.2f} s")
    for strategy in STRATEGIES:
        s = summaries[strategy]
        print(
            f"  {strategy:<12} quantbeat warm cache {warm[strategy]:6.2f} s "
            f"({universe / warm[strategy]:8,.0f} instr/s), cold cache {cold[strategy]:6.2f} s "
            f"({universe / cold[strategy]:7,.0f} instr/s), coverage {s['coverage']}, "
            f"{s['candidates']} candidates"
        )
        print(
            f"  {strategy:<12} pandas reference    {reference[strategy]:6.2f} s "
            f"({universe / reference[strategy]:8,.1f} instr/s); {agree[strategy]}"
        )
    worst_ratio = min(reference[s] / warm[s] for s in STRATEGIES)
    worst_cold = min(reference[s] / cold[s] for s in STRATEGIES)
    slowest = max(warm.values())
    for strategy in STRATEGIES:
        ratio = reference[strategy] / warm[strategy]
        print(
            f"ratio {strategy} quantbeat/pandas instr/s = {ratio:.1f} "
            f"(cold cache: {reference[strategy] / cold[strategy]:.1f})"
        )
    consistent = all(a.startswith("same") for a in agree.values())
    print(
        f"goal speedup_vs_pandas: {worst_ratio:.1f}x (cold cache {worst_cold:.1f}x) "
        f"(target >= 20x) {'met' if worst_ratio >= 20 and consistent else 'missed'}"
    )
    print(
        f"goal universe_under_10s: {slowest:.2f} s (target < 10 s) "
        f"{'met' if slowest < 10 else 'missed'}"
    )


if __name__ == "__main__":
    main()

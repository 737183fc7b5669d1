"""The closing bet in the buy window (issue 17): from the 15:10 snapshot of the whole
simulated universe (2,700 instruments) to graded ``preliminary`` signals stored, through real
workers — ``io`` (threads) for the snapshot and the news, ``cpu`` (prefork ×2) for the
decision, ``ai`` (threads, the offline analyzer) for the analyses — PostgreSQL and Redis.

The steps are the buy-window pipeline's (``quantbeat.services.pipeline.window_steps``), sent
one after another from this client and each awaited, as ``quantbeat run`` does: the snapshot,
the news so far, the preliminary decision, the analysis of every candidate (a chord on the
``ai`` queue) whose callback decides again with the news scores. Each step's time is printed.

References measured in the same run: the decision's kernel alone (the closing-bet rules
evaluated in this process over inputs already in memory: what no pipeline can beat) and the
same decision run in this process without Celery (``preliminary_scan`` called directly).

Goal (issue 17): snapshot to signals < 60 s (the decision at 15:10 must be stored well before
15:18, leaving time to order before the 15:20 auction).

Needs PostgreSQL (``QUANTBEAT_BENCH_DATABASE_URL``, default database
``quantbeat_bench_window``) and Redis (``QUANTBEAT_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/4``, flushed). The first run collects the simulated history (a few
minutes); later runs reuse it.
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
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_window",
)
REDIS_URL = os.environ.get("QUANTBEAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
UNIVERSE = 2_700
os.environ.update(
    {
        "QUANTBEAT_DATABASE_URL": DB_URL,
        "QUANTBEAT_BROKER_URL": REDIS_URL,
        "QUANTBEAT_RESULT_BACKEND": REDIS_URL,
        "QUANTBEAT_REDIS_URL": REDIS_URL,
        "QUANTBEAT_SIM_UNIVERSE_SIZE": str(UNIVERSE),
        "QUANTBEAT_LOG_LEVEL": "WARNING",
        "QUANTBEAT_MARKET_SOURCE": "simulated",
        "QUANTBEAT_GEMINI_API_KEY": "",
    }
)

DAY = dt.date(2026, 11, 20)
SESSIONS = 300
FLOW_SESSIONS = 60
STRATEGY = "closing_bet"


def ensure_history() -> int:
    """SESSIONS sessions of candles up to the session before DAY (the last FLOW_SESSIONS
    with flows), the universe listed; returns how many instruments are listed."""
    from sqlalchemy import func, select

    from db import migrate
    from db.engine import session_scope
    from db.models import DailyCandle, Instrument, InvestorFlow
    from quantbeat.infra.sources import krx_calendar
    from tasks.collect import daily_range

    migrate.upgrade(DB_URL)
    previous = krx_calendar().previous_session(DAY - dt.timedelta(days=1))
    sessions = krx_calendar().sessions(previous - dt.timedelta(days=SESSIONS * 2), previous)
    sessions = sessions[-SESSIONS:]
    for model, wanted, dataset in (
        (DailyCandle, sessions, "candles"),
        (InvestorFlow, sessions[-FLOW_SESSIONS:], "flows"),
    ):
        with session_scope() as s:
            have = s.execute(
                select(func.count()).select_from(model).where(model.trade_date >= wanted[0])
            ).scalar_one()
        if have < UNIVERSE * len(wanted) * 0.95:
            print(f"collecting {len(wanted)} simulated sessions of {dataset} (once) ...")
            for i in range(0, len(wanted), 100):
                part = wanted[i : i + 100]
                daily_range(part[0].isoformat(), part[-1].isoformat(), dataset=dataset)
    with session_scope() as s:
        return int(
            s.execute(
                select(func.count())
                .select_from(Instrument)
                .where(Instrument.listing_status == "listed")
            ).scalar_one()
        )


def reset_day() -> None:
    """Forget DAY's snapshots, analyses, news and preliminary signals (each run starts at
    15:10 with nothing decided)."""
    from sqlalchemy import text

    from db.engine import session_scope

    with session_scope() as s:
        for table, column in (
            ("intraday_snapshots", "trade_date"),
            ("ai_analyses", "trade_date"),
            ("signals", "trade_date"),
        ):
            s.execute(text(f"DELETE FROM {table} WHERE {column} = :d"), {"d": DAY})


def through_workers(app: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """The window's steps through the workers, each awaited; (seconds per step, the final
    decision's summary)."""
    from quantbeat.services.pipeline import window_steps

    times: dict[str, float] = {}
    decided: dict[str, Any] = {}
    for step in window_steps(DAY.isoformat()):
        t0 = time.perf_counter()
        result = app.send_task(step.task, kwargs=step.kwargs).get(timeout=600)
        if step.task == "quantbeat.ai.analyze_candidates" and result.get("chord"):
            done = app.AsyncResult(result["chord"]).get(timeout=600)
            times["ai.analyze (chord)"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            decided = app.AsyncResult(done["rescan"]).get(timeout=600)
            times["scans.preliminary (again, with news)"] = time.perf_counter() - t1
            continue
        if step.task == "quantbeat.scans.preliminary":
            decided = result
        times[step.task.removeprefix("quantbeat.")] = time.perf_counter() - t0
    return times, decided


def kernel_alone() -> tuple[float, float, int]:
    """(seconds to load the decision's inputs in this process, seconds to evaluate the
    closing-bet rules over them, candidates) — the kernel is what no pipeline can beat."""
    import numpy as np

    from db.candles import load_daily_universe, universe
    from db.engine import session_scope
    from db.snapshots import snapshot_bars
    from quant.indicators import SCAN_BARS
    from quant.indicators.candles import with_partial_bar
    from quant.scans.inputs import ScanInputs
    from quantbeat.infra.sources import krx_calendar
    from quantbeat.services.closing_window import decision_time
    from quantbeat.services.scans import attach_flows, evaluate
    from quantbeat.services.strategies import configured

    t0 = time.perf_counter()
    previous = krx_calendar().previous_session(DAY - dt.timedelta(days=1))
    with session_scope() as s:
        members = universe(s, ["KOSPI", "KOSDAQ"])
        bars = snapshot_bars(s, DAY, decision_time(DAY))
        history = load_daily_universe(s, [i for i, _ in members], end=previous, bars=SCAN_BARS - 1)
    when = np.datetime64(DAY, "D")
    inputs = {
        i: ScanInputs(instrument=n, candles=with_partial_bar(history[i], when, bars[i][1:]))
        for i, n in members
        if i in bars and i in history
    }
    attach_flows(inputs, list(inputs))
    load_s = time.perf_counter() - t0
    evaluator = configured(STRATEGY, None)
    t1 = time.perf_counter()
    rows, _scanned, _failed = evaluate(evaluator, inputs)
    return load_s, time.perf_counter() - t1, len(rows)


def main() -> None:
    ensure_database(DB_URL)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    listed = ensure_history()
    from quantbeat.services.closing_window import decision_time, preliminary_scan
    from workers.app import app

    workers = [
        start_worker("bench-window-cpu"),
        start_worker("bench-window-io", queues="io", pool="threads", concurrency=4),
        start_worker("bench-window-ai", queues="ai", pool="threads", concurrency=4),
    ]
    try:
        reset_day()
        through_workers(app)  # warm-up: worker children, pools, imports
        runs = []
        for _ in range(3):
            reset_day()
            t0 = time.perf_counter()
            times, decided = through_workers(app)
            runs.append((time.perf_counter() - t0, times, decided))
        runs.sort(key=lambda r: r[0])
        total, times, decided = runs[1]  # the median of three
    finally:
        for proc in workers:
            stop_worker(proc)
    t0 = time.perf_counter()
    direct = preliminary_scan(STRATEGY, DAY, as_of=decision_time(DAY))
    direct_s = time.perf_counter() - t0
    load_s, kernel_s, kernel_candidates = kernel_alone()

    print(f"universe: {listed:,} listed instruments (simulated), {SESSIONS} sessions, {DAY} 15:10")
    for step, seconds in times.items():
        print(f"  {step:<40} {seconds:7.2f} s")
    print(f"  {'snapshot to signals, through the workers':<40} {total:7.2f} s (median of 3)")
    print(
        f"  decided: {decided['candidates']} preliminary candidates of {decided['scanned']:,} "
        f"scanned ({decided['missing']} without a snapshot), gate {decided['gate']}, "
        f"{'before' if decided['tradeable'] else 'after'} the 15:20 auction"
    )
    print(f"reference: the same decision in this process, no Celery: {direct_s:.2f} s "
          f"({direct['candidates']} candidates)")  # fmt: skip
    print(f"reference: the kernel alone (rules over inputs in memory): {kernel_s:.2f} s "
          f"({kernel_candidates} candidates; loading those inputs: {load_s:.2f} s)")  # fmt: skip
    stored_by = dt.datetime.combine(DAY, dt.time(15, 10)) + dt.timedelta(seconds=total)
    print(f"a 15:10 decision is stored by {stored_by:%H:%M:%S} (must be before 15:18)")
    print(
        f"goal snapshot_to_signals: {total:.1f} s (target < 60 s) "
        f"{'met' if total < 60 and decided['candidates'] > 0 else 'missed'}"
    )


if __name__ == "__main__":
    main()

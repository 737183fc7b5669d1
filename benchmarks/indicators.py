"""Indicator requests through the task path (issue 4): a real prefork worker on the ``cpu``
queue, PostgreSQL candles, the Redis cache and result backend.

Every request asks for an indicator over a 1,000-candle daily series. Measured in one run:

* uncached — the instrument's cache entries are invalidated first, so the request misses at
  the client, goes to the worker as ``quantbeat.indicators.compute``, which loads 1,000
  candles from PostgreSQL, computes, caches and answers through the result backend;
* cached — the same requests again, answered from the cache by the Python API
  (``get_indicator``) without a worker; for reference, also the same cached value fetched
  by sending the task anyway (a worker round trip that finds the value in the cache);
* a batch of 3 uncached indicators of one instrument (``get_indicators`` → one
  ``compute_batch`` task) against the single uncached request;
* 50 concurrent requesters (threads, each its own requests) on a realistic mix;
* the hit rate of a realistic request loop: a trading day's traffic after the daily
  pipeline's precompute step — 50 users x 200 requests, 70 % chart views (instruments by
  Zipf popularity, indicators by popularity), 30 % scan-window reads, 2 % non-default
  parameters — with new candles for 10 % of the instruments halfway (invalidating them).

Goals (issue 4): cached p90 ≥ 20× faster than uncached p90; hit rate ≥ 95 %; batch of 3 ≤
1.5× a single uncached request (medians).

Needs PostgreSQL (``QUANTBEAT_BENCH_DATABASE_URL``, default database
``quantbeat_bench_indicators``, its own) and Redis (``QUANTBEAT_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/3``, flushed).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import ensure_database, start_worker, stop_worker  # noqa: E402

DB_URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_indicators",
)
REDIS_URL = os.environ.get("QUANTBEAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
ENV = {
    "QUANTBEAT_DATABASE_URL": DB_URL,
    "QUANTBEAT_BROKER_URL": REDIS_URL,
    "QUANTBEAT_RESULT_BACKEND": REDIS_URL,
    "QUANTBEAT_REDIS_URL": REDIS_URL,
    "QUANTBEAT_SIM_UNIVERSE_SIZE": "120",
    "QUANTBEAT_LOG_LEVEL": "WARNING",
    "QUANTBEAT_MARKET_SOURCE": "simulated",
}
os.environ.update(ENV)

DAY = dt.date(2026, 11, 20)
BARS = 1_000
SAMPLES = 40


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1e3:7.2f} ms  p90 {pct(values, 0.9) * 1e3:7.2f} ms"


def ensure_history() -> list[str]:
    """At least BARS sessions of simulated KOSPI candles up to DAY; the instruments."""
    from sqlalchemy import func, select

    from db import migrate
    from db.candles import universe
    from db.engine import session_scope
    from db.models import DailyCandle
    from quantbeat.infra.sources import krx_calendar
    from tasks.collect import daily_range

    migrate.upgrade(DB_URL)
    sessions = krx_calendar().sessions(DAY - dt.timedelta(days=int(BARS * 1.6)), DAY)[-BARS - 5 :]
    with session_scope() as s:
        have = s.execute(
            select(func.count(func.distinct(DailyCandle.trade_date))).where(
                DailyCandle.trade_date >= sessions[0]
            )
        ).scalar_one()
    if have < len(sessions):
        print(f"collecting {len(sessions)} simulated sessions (once) ...", flush=True)
        for i in range(0, len(sessions), 250):
            chunk = sessions[i : i + 250]
            daily_range(chunk[0].isoformat(), chunk[-1].isoformat(), market="KOSPI")
    with session_scope() as s:
        return [name for _, name in universe(s, ["KOSPI"])]


def main() -> None:
    ensure_database(DB_URL)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    names = ensure_history()
    from quantbeat.services.indicators import get_indicator, get_indicators, indicator_cache
    from workers.app import app

    cache = indicator_cache()
    worker = start_worker("bench-ind")
    try:
        run(names, cache, get_indicator, get_indicators, app)
    finally:
        stop_worker(worker)


def run(names: list[str], cache: Any, get_indicator: Any, get_indicators: Any, app: Any) -> None:
    def one(name: str, indicator: str = "rsi", params: dict[str, object] | None = None) -> float:
        t0 = time.perf_counter()
        result = get_indicator(name, indicator, params, end=DAY, limit=BARS)
        elapsed = time.perf_counter() - t0
        assert len(result.time) == BARS, (name, len(result.time))
        return elapsed

    # Warm-up: worker children, connection pools, the result backend's pub/sub.
    for name in names[:4]:
        cache.invalidate([name])
        one(name)

    sample = names[:SAMPLES]
    uncached = []
    for name in sample:
        cache.invalidate([name])  # indicator and candle entries gone: the full miss path
        uncached.append(one(name))
    cached = [one(name) for name in sample]

    def via_task(name: str) -> float:
        request = {"instrument": name, "indicator": "rsi", "end": DAY.isoformat(), "limit": BARS}
        t0 = time.perf_counter()
        answer = app.send_task("quantbeat.indicators.compute", args=[request]).get(timeout=30)
        elapsed = time.perf_counter() - t0
        assert answer["source"] == "cache"
        return elapsed

    cached_task = [via_task(name) for name in sample]

    batch = []
    for name in sample:
        cache.invalidate([name])
        requests = [
            {"instrument": name, "indicator": ind, "end": DAY.isoformat(), "limit": BARS}
            for ind in ("rsi", "macd", "bbands")
        ]
        t0 = time.perf_counter()
        out = get_indicators(requests)
        batch.append(time.perf_counter() - t0)
        assert all(getattr(o, "source", None) == "computed" for o in out), out
    single_again = []
    for name in sample:
        cache.invalidate([name])
        single_again.append(one(name, "macd"))

    # -- the realistic loop: hit rate ----------------------------------------------------------
    # A trading day's traffic after the daily pipeline (collection -> precompute): 50 users x
    # 200 requests. 70 % chart views (1,000 bars, popular indicators, Zipf-popular
    # instruments), 30 % screener/scan reads of the scan indicators over the scan window
    # (what the precompute step warmed), 2 % a user's own parameters (always new keys), and
    # new candles for 10 % of the instruments halfway (their entries are invalidated).
    from quant.indicators import SCAN_BARS, SCAN_SET

    cache.invalidate(names)
    app.send_task(
        "quantbeat.indicators.precompute",
        kwargs={"trade_date": DAY.isoformat(), "market": "KOSPI"},
    ).get(timeout=300)
    rng = random.Random(7)
    weights = [1 / (rank + 1) ** 1.2 for rank in range(len(names))]
    popular: list[tuple[str, dict[str, object] | None, int]] = [
        ("rsi", None, 30),
        ("macd", None, 20),
        ("bbands", None, 15),
        ("sma", {"period": 20}, 10),
        ("sma", {"period": 60}, 8),
        ("ema", {"period": 20}, 7),
        ("atr", None, 5),
        ("obv", None, 5),
    ]

    def draw() -> tuple[str, str, dict[str, object] | None, int]:
        name = rng.choices(names, weights)[0]
        roll = rng.random()
        if roll < 0.02:  # the long tail: someone tries their own period
            return name, "rsi", {"period": rng.randint(5, 40)}, BARS
        if roll < 0.32:
            indicator, params = rng.choice(SCAN_SET)
            return name, indicator, dict(params), SCAN_BARS
        indicator, chart_params, _ = rng.choices(popular, [w for *_, w in popular])[0]
        return name, indicator, chart_params, BARS

    loop = [draw() for _ in range(50 * 200)]
    before = cache.stats()
    for i, (name, indicator, params, bars) in enumerate(loop):
        if i == len(loop) // 2:  # new candles for 10 % of the instruments
            cache.invalidate(rng.sample(names, len(names) // 10))
        get_indicator(name, indicator, params, end=DAY, limit=bars)
    after = cache.stats()
    hits, misses = after.hits - before.hits, after.misses - before.misses
    hit_rate = hits / (hits + misses)

    # -- 50 concurrent requesters ------------------------------------------------------------
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = 40

    def client(seed: int) -> None:
        local = random.Random(seed)
        mine = []
        for _ in range(per_client):
            name = local.choices(names, weights)[0]
            indicator, params, _ = local.choices(popular, [w for *_, w in popular])[0]
            t0 = time.perf_counter()
            try:
                get_indicator(name, indicator, params, end=DAY, limit=BARS, timeout=60)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    cache.invalidate(names)  # start cold: the concurrent phase includes misses
    before = cache.stats()
    threads = [threading.Thread(target=client, args=(s,)) for s in range(50)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = cache.stats()
    c_hits, c_misses = after.hits - before.hits, after.misses - before.misses

    # -- report -------------------------------------------------------------------------------
    u50, u90 = pct(uncached, 0.5), pct(uncached, 0.9)
    _c50, c90 = pct(cached, 0.5), pct(cached, 0.9)
    b50 = pct(batch, 0.5)
    s50 = pct(single_again, 0.5)
    print(f"series: {BARS} daily candles per request; {SAMPLES} instruments; prefork cpu worker x2")
    print(f"  uncached (client miss -> cpu task -> PostgreSQL -> compute)  {ms(uncached)}")
    print(f"  cached   (client hit, Python API)                          {ms(cached)}")
    print(f"  cached   (sent as a task anyway; worker finds it cached)   {ms(cached_task)}")
    print(f"  batch of 3 uncached (rsi, macd, bbands; one task)          {ms(batch)}")
    print(f"  single uncached (macd), same run                           {ms(single_again)}")
    print(
        f"  50 concurrent requesters x {per_client}: {len(latencies)} answered, "
        f"{len(errors)} errors, {ms(latencies)}, {len(latencies) / wall:,.0f} req/s "
        f"(hit rate {c_hits / max(1, c_hits + c_misses):.1%} from cold)"
    )
    if errors:
        print(f"    first error: {errors[0]}")
    print(
        f"  realistic loop (a day after the pipeline's precompute): {len(loop)} requests, "
        f"{hits} hits, {misses} misses (new candles for 10 % of instruments halfway)"
    )
    print(f"ratio uncached p90 / cached p90          = {u90 / c90:.1f}")
    print(f"ratio uncached p90 / cached-via-task p90 = {u90 / pct(cached_task, 0.9):.1f}")
    print(f"ratio batch-of-3 p50 / single uncached p50 = {b50 / s50:.2f} (vs rsi: {b50 / u50:.2f})")
    speedup = u90 / c90
    print(
        f"goal cached_p90_speedup: {speedup:.1f}x (target >= 20x) "
        f"{'met' if speedup >= 20 else 'missed'}"
    )
    print(
        f"goal hit_rate: {hit_rate:.1%} (target >= 95%) {'met' if hit_rate >= 0.95 else 'missed'}"
    )
    ratio = b50 / s50
    print(
        f"goal batch_of_3: {ratio:.2f}x a single uncached request (target <= 1.5x) "
        f"{'met' if ratio <= 1.5 else 'missed'}"
    )
    if errors:
        print(f"goal no_errors_under_concurrency: {len(errors)} errors (target 0) missed")


if __name__ == "__main__":
    main()

"""The HTTP API's speed (issue 20 item 7): ``quantbeat api`` (uvicorn, one process) on its own
scratch PostgreSQL database and Redis, driven by an open-loop load client on loopback.

Data (SIMULATED): the main job (``quantbeat run --embedded --database-url …``) once, against
the scratch database — 2,500 instruments, a year of sessions, the day's scans, the signal
history, the track record, a paper portfolio and two backtests; later runs reuse it.

Measured (latency from each request's *scheduled* send time, so a slow answer delays no
later request's clock — no coordinated omission):

1. ``GET /api/v1/signals/latest`` at 300 requests/s for 20 s (6,000 requests, keep-alive, one
   API key with a rate high enough not to refuse): p50/p95/p99.
2. ``POST /api/v1/backtests`` at 10/s for 20 s: each a small backtest recorded, mirrored to
   Redis and published to the broker (no worker consumes it: the queue is flushed at the end).
3. The dashboard's overview ``GET /``: 50 requests one after another; the server's own time
   until its answer starts (``Server-Timing: app;dur=``).

References in the same run: ``GET /health/live`` at the same 300/s on the same server — the
HTTP stack alone (uvicorn, FastAPI, the middleware, no key, no database); the service call
behind ``signals/latest`` in this process (the work under the HTTP layer); a bare Celery
``send_task`` to the same broker (the floor of a submission).

Goals: ``signals_latest_p99`` < 25 ms at 300 req/s; ``submit_p99`` < 50 ms;
``overview_server_ms`` (p95) < 300 ms.

Run: ``.venv/bin/python benchmarks/api.py`` (``QUANTBEAT_BENCH_DATABASE_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_api``;
``QUANTBEAT_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/8``, flushed). The first run
builds the data (about two minutes).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_api",
)
REDIS = os.environ.get("QUANTBEAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
ENV = {
    "QUANTBEAT_DATABASE_URL": URL,
    "QUANTBEAT_BROKER_URL": REDIS,
    "QUANTBEAT_RESULT_BACKEND": REDIS,
    "QUANTBEAT_REDIS_URL": REDIS,
    "QUANTBEAT_CACHE_URL": REDIS,
    "QUANTBEAT_MODE": "distributed",
}
os.environ.update(ENV)

import httpx  # noqa: E402
import redis  # noqa: E402
from _support import ROOT, ensure_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))
RATE, SECONDS = 300, 20
SUBMIT_RATE, SUBMIT_SECONDS = 10, 20
OVERVIEW_REQUESTS = 50


def build() -> None:
    """The simulated main job into the scratch database, unless it ran there already."""
    from db import migrate
    from db.engine import session_scope

    ensure_database(URL)
    migrate.upgrade(URL)
    with session_scope() as session:
        runs = session.execute(text("SELECT count(*) FROM scan_runs")).scalar_one()
    if runs:
        return
    print("building the data: quantbeat run --embedded against the scratch database …")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    t0 = time.perf_counter()
    done = subprocess.run(
        [QUANTBEAT, "run", "--embedded", "--database-url", URL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"quantbeat run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"  built in {time.perf_counter() - t0:.0f} s")


def api_key() -> str:
    from quantbeat.services import api_keys

    name = f"bench-{os.getpid()}"
    token, _ = api_keys.create(name, ["run"], rate_per_minute=10_000_000)
    return token


@contextmanager
def server(log: Path) -> Iterator[str]:
    """``quantbeat api`` on a free loopback port; yields its base URL."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        [QUANTBEAT, "api", "--port", "0"],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=handle,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if " on http://" not in line:
            raise SystemExit(f"quantbeat api did not start: {line!r} {log.read_text()[-2000:]}")
        yield line.split(" on ", 1)[1].split()[0].rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        handle.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def open_loop(
    base: str,
    method: str,
    path: str,
    *,
    rate: float,
    seconds: float,
    headers: dict[str, str],
    body: Any = None,
    expect: int = 200,
) -> dict[str, Any]:
    """Send ``rate`` requests a second for ``seconds``, each at its scheduled time; returns
    latencies (ms, from the scheduled time to the last byte) and the unexpected answers."""
    total = int(rate * seconds)
    latencies: list[float] = []
    unexpected: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as c:
        # Warm the connections and the server's caches before the clock starts.
        await asyncio.gather(*(c.request(method, path, json=body) for _ in range(8)))

        async def one(at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await c.request(method, path, json=body)
            latencies.append((time.perf_counter() - at) * 1000)
            if response.status_code != expect:
                key = f"{response.status_code} {response.text[:120]}"
                unexpected[key] = unexpected.get(key, 0) + 1

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(start + i / rate) for i in range(total)))
    return {"latencies": latencies, "unexpected": unexpected, "sent": total}


def summary(name: str, result: dict[str, Any]) -> str:
    lat = result["latencies"]
    bad = sum(result["unexpected"].values())
    return (
        f"{name}: {result['sent']} requests, p50 {percentile(lat, 50):.2f} ms, "
        f"p95 {percentile(lat, 95):.2f} ms, p99 {percentile(lat, 99):.2f} ms, "
        f"max {max(lat):.1f} ms, unexpected answers {bad}"
        + (f" {result['unexpected']}" if bad else "")
    )


def service_floor(repeat: int = 200) -> float:
    """Median ms of the service call behind ``signals/latest``, in this process."""
    # The service the route calls (by name: the benchmark follows the route's module).
    latest_signals = importlib.import_module("quantbeat.services.signal_reads").latest_signals
    latest_signals()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        latest_signals()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def send_floor(repeat: int = 200) -> float:
    """p99 ms of a bare Celery ``send_task`` to the same broker."""
    from workers.app import app

    app.send_task("quantbeat.ops.test_once", args=["warm"], queue="io")
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        app.send_task("quantbeat.ops.test_once", args=[f"m{i}"], queue="io")
        times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 99)


def backtest_spec() -> dict[str, Any]:
    from db.engine import session_scope

    with session_scope() as session:
        rows = session.execute(
            text("SELECT market, ticker FROM instruments ORDER BY id LIMIT 5")
        ).all()
        last = session.execute(text("SELECT max(trade_date) FROM daily_candles")).scalar_one()
    end = last.date() if hasattr(last, "date") else last
    return {
        "strategy": "sma_crossover",
        "instruments": [f"{m}:{t}" for m, t in rows],
        "start": (end.replace(year=end.year - 1)).isoformat(),
        "end": end.isoformat(),
        "label": "benchmark (SIMULATED data)",
    }


def overview(base: str, headers: dict[str, str]) -> list[float]:
    """Server-side ms of ``GET /`` over :data:`OVERVIEW_REQUESTS` sequential requests."""
    took = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.get("/")
        for _ in range(OVERVIEW_REQUESTS):
            response = client.get("/")
            if response.status_code != 200:
                raise SystemExit(f"GET / answered {response.status_code}: {response.text[:300]}")
            timing = response.headers["server-timing"]
            took.append(float(timing.split("dur=", 1)[1]))
    return took


def goal(name: str, measured: float, target: float, unit: str, extra: str = "") -> str:
    verdict = "met" if measured < target else "missed"
    return f"goal {name}: {measured:.1f}{unit} (target < {target:g}{unit}{extra}) {verdict}"


def main() -> None:
    build()
    redis.Redis.from_url(REDIS).flushdb()
    token = api_key()
    headers = {"Authorization": f"Bearer {token}"}
    log = ROOT / "var" / "benchmarks" / "api-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"server: quantbeat api, one uvicorn process; its log: {log}")
    with server(log) as base:
        floor = asyncio.run(
            open_loop(base, "GET", "/health/live", rate=RATE, seconds=SECONDS, headers={})
        )
        print(summary(f"floor GET /health/live at {RATE}/s", floor))
        latest = asyncio.run(
            open_loop(
                base, "GET", "/api/v1/signals/latest", rate=RATE, seconds=SECONDS, headers=headers
            )
        )
        print(summary(f"GET /api/v1/signals/latest at {RATE}/s", latest))
        spec = backtest_spec()
        submit = asyncio.run(
            open_loop(
                base,
                "POST",
                "/api/v1/backtests",
                rate=SUBMIT_RATE,
                seconds=SUBMIT_SECONDS,
                headers=headers,
                body=spec,
                expect=202,
            )
        )
        print(summary(f"POST /api/v1/backtests at {SUBMIT_RATE}/s", submit))
        page = overview(base, headers)
        print(
            f"GET / (overview): {len(page)} requests, server time p50 "
            f"{percentile(page, 50):.1f} ms, p95 {percentile(page, 95):.1f} ms, "
            f"max {max(page):.1f} ms"
        )
    service_ms = service_floor()
    send_ms = send_floor()
    latest_p99 = percentile(latest["latencies"], 99)
    floor_p99 = percentile(floor["latencies"], 99)
    submit_p99 = percentile(submit["latencies"], 99)
    print(f"floor: the signals/latest service call in-process, median {service_ms:.2f} ms")
    print(f"floor: bare Celery send_task to the same broker, p99 {send_ms:.2f} ms")
    print(
        f"ratios: signals/latest p99 is {latest_p99 / floor_p99:.1f}x the HTTP stack's p99; "
        f"submit p99 is {submit_p99 / send_ms:.1f}x a bare send_task's p99"
    )
    redis.Redis.from_url(REDIS).flushdb()
    failed = sum(latest["unexpected"].values()) + sum(submit["unexpected"].values())
    if failed:
        print(f"{failed} unexpected answers: the goals below count as missed")
    measured = latest_p99 if not failed else float("inf")
    print(goal("signals_latest_p99", measured, 25, " ms", f" at {RATE} req/s"))
    print(goal("submit_p99", submit_p99 if not failed else float("inf"), 50, " ms"))
    print(goal("overview_server_ms", percentile(page, 95), 300, ""))
    figures = {
        "signals_latest_p99_ms": latest_p99,
        "submit_p99_ms": submit_p99,
        "overview_p95_ms": percentile(page, 95),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

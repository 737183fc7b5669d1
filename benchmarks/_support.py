"""What the benchmarks share: a scratch database and a real ``cpu`` worker process."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist."""
    import psycopg

    admin, name = url.replace("+psycopg", "").rsplit("/", 1)
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_worker(
    name: str,
    *,
    concurrency: int = 2,
    queues: str = "cpu",
    pool: str = "prefork",
    app_module: str = "workers.app",
) -> subprocess.Popen[bytes]:
    """A worker (default: prefork on the ``cpu`` queue) of the Celery app in ``app_module``
    (one that builds on :mod:`workers.app`) with this process's environment, once it answers
    ping (exits the benchmark if it does not start within 60 s)."""
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "worker",
            f"--queues={queues}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--hostname={hostname}",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from workers.app import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(destination=[hostname], timeout=1.0):
            return proc
    proc.kill()
    raise SystemExit("the benchmark worker did not start")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, then kill if it takes more than 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def recreate_database(url: str) -> None:
    """Drop (if it exists) and create the PostgreSQL database of ``url``: a benchmark that
    calls this starts from nothing, whatever ran before it."""
    import psycopg

    admin, name = url.replace("+psycopg", "").rsplit("/", 1)
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def use_services(database: str, redis_db: int | None = None) -> tuple[str, str | None]:
    """Point this process (and the workers it starts) at the benchmark's own PostgreSQL
    database ``database`` and, when given, Redis database ``redis_db`` as broker, result
    backend and cache — unless ``QUANTBEAT_BENCH_DATABASE_URL`` / ``QUANTBEAT_BENCH_REDIS_URL``
    say otherwise. Returns ``(database URL, Redis URL)``."""
    db_url = os.environ.get(
        "QUANTBEAT_BENCH_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    )
    os.environ.update({"QUANTBEAT_DATABASE_URL": db_url, "QUANTBEAT_LOG_LEVEL": "WARNING"})
    redis_url = None
    if redis_db is not None:
        redis_url = os.environ.get(
            "QUANTBEAT_BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}"
        )
        for name in ("BROKER_URL", "RESULT_BACKEND", "REDIS_URL"):
            os.environ[f"QUANTBEAT_{name}"] = redis_url
    return db_url, redis_url


def median_of(
    fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] = lambda: None
) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls of ``fn`` (each after ``setup``; one warm-up call
    first, untimed) and its last result."""
    setup()
    result = fn()
    times = []
    for _ in range(repeats):
        setup()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


#: The columns of a daily bar as the candle loaders read them, and their binary COPY types.
CANDLE_COLUMNS = "instrument_id, trade_date, open, high, low, close, volume, traded_value"
CANDLE_TYPES = ("int8", "date", *("float8",) * 6)


def candle_read_floor() -> list[Any]:
    """The read floor: every row of ``daily_candles`` (no filter, no order) as
    ``COPY … TO STDOUT (FORMAT binary)`` drained from libpq into NumPy columns."""
    from db.bulk import copy_out
    from db.engine import session_scope

    with session_scope() as s:
        return copy_out(s, f"SELECT {CANDLE_COLUMNS} FROM daily_candles", {}, CANDLE_TYPES)


def simulated_daily(
    url: str, *, seed: int, instruments: int, sessions: int, end: dt.date
) -> tuple[dict[tuple[str, str], int], list[dt.date], int]:
    """Store ``sessions`` SIMULATED daily sessions up to ``end`` of ``instruments``
    instruments in the (migrated) database at ``url``, then settle the table (``VACUUM
    ANALYZE``, as autovacuum would). Returns ``(ids by (market, ticker), the sessions, the
    rows stored)``."""
    from sqlalchemy import text

    from db import migrate
    from db.engine import get_engine, session_scope
    from db.store import upsert_daily_candles, upsert_instruments
    from quant.calendar import krx_approximate_calendar
    from quant.market.simulated import SimulatedMarket

    migrate.upgrade(url)
    calendar = krx_approximate_calendar()
    days = calendar.sessions(end - dt.timedelta(days=sessions * 2), end)[-sessions:]
    market = SimulatedMarket(seed=seed, universe_size=instruments, calendar=calendar)
    frame = market.daily_candles(days[0], days[-1])
    with session_scope() as s:
        ids = upsert_instruments(s, market.list_instruments(end), source="simulated")
        upsert_daily_candles(s, frame, ids, source="simulated")
    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE daily_candles"))
    return ids, list(days), len(frame)


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of ``url`` (a benchmark whose data is large cleans up)."""
    import psycopg

    admin, name = url.replace("+psycopg", "").rsplit("/", 1)
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

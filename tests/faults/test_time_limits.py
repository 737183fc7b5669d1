"""Time limits on a threads pool (issue 16): a provider that never answers, and a row lock held
elsewhere, on a real ``io`` worker (threads pool, ONE thread, so "the next task ran" proves the
thread was freed), real PostgreSQL and a throwaway Redis broker.

The worker collects crypto candles from "Upbit" at a local TCP port that accepts connections
and never answers (the kernel completes the handshake; nothing reads or writes), with
``QUANTBEAT_HTTP_TIMEOUT=5`` and ``QUANTBEAT_PROVIDER_RETRY_MAX=5`` (one attempt per call:
the next would start after 5 s), two Celery retries, and daily candles from the simulated
market with an ``io`` ``lock_timeout`` of 1 s.

Upper bounds on time are generous: they prove "ended within its limits", not speed.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.result import AsyncResult
from sqlalchemy import Connection, text

from db.engine import create_engine_for
from quantbeat.services.reaper import reap
from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import dead_letter, eventually, job_run
from tests.support.services import WorkerProcess
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

DAY = "2026-11-20"  # a Friday, a KRX session
HTTP_TIMEOUT = 5
MAX_RETRIES = 2
LOCK_TIMEOUT = 1
CRYPTO = {
    "interval": "60m",
    "start": "2026-11-20T00:00:00+00:00",
    "end": "2026-11-20T03:00:00+00:00",
    "tickers": ["KRW-BTC"],
}


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections (the kernel's backlog) and never
    sends a byte: an HTTP request to it waits until the client's read timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield int(server.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis(tmp_path_factory.mktemp("time-limits-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def client(broker: ThrowawayRedis) -> Celery:
    app = Celery("time-limits-client")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker.url(0), result_backend=broker.url(1))
    return app


@pytest.fixture(scope="module")
def worker(
    database: str,
    broker: ThrowawayRedis,
    client: Celery,
    silent_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """One ``io`` worker: threads pool with a single thread."""
    hostname = f"timelimits-{uuid.uuid4().hex[:8]}@localhost"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.support.worker_app",
        "worker",
        "--queues=io",
        "--pool=threads",
        "--concurrency=1",
        f"--hostname={hostname}",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
    ]
    env = {
        **os.environ,
        "QUANTBEAT_BROKER_URL": broker.url(0),
        "QUANTBEAT_RESULT_BACKEND": broker.url(1),
        "QUANTBEAT_CRYPTO_SOURCE": "upbit",
        "QUANTBEAT_UPBIT_BASE_URL": f"http://127.0.0.1:{silent_port}",
        "QUANTBEAT_HTTP_TIMEOUT": str(HTTP_TIMEOUT),
        "QUANTBEAT_PROVIDER_RETRY_MAX": str(HTTP_TIMEOUT),
        "QUANTBEAT_MAX_RETRIES": str(MAX_RETRIES),
        "QUANTBEAT_IO_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    }
    log_dir = tmp_path_factory.mktemp("time-limits-worker")
    proc = WorkerProcess(argv, hostname, Path(log_dir) / "worker.log", env)
    try:
        proc.wait_ready(client)
        yield proc
    finally:
        proc.stop()


def _quick_task_runs(client: Celery, worker: WorkerProcess) -> None:
    """The worker's only thread is free: a trivial task sent now completes."""
    marker = uuid.uuid4().hex
    result = client.send_task("quantbeat.ops.test_once", args=[marker])
    assert result.get(timeout=30) == {"marker": marker}, worker.log()


def _ping_while_busy(client: Celery, worker: WorkerProcess, task_id: str) -> float:
    """Once ``task_id`` has started (its thread is busy), ping the worker; return seconds
    until it answered (``inf``: no answer within 1 s)."""
    eventually(_ended(task_id), lambda s: s != "none", timeout=30)
    started = time.monotonic()
    replies = client.control.ping(destination=[worker.hostname], timeout=1.0)
    return time.monotonic() - started if replies else float("inf")


def _ended(task_id: str) -> Callable[[], str]:
    def state() -> str:
        try:
            return job_run(task_id).state
        except Exception:  # no row yet
            return "none"

    return state


def test_hung_provider_is_retried_then_dead_lettered_and_frees_the_thread(
    client: Celery,
    worker: WorkerProcess,
    clean_db: str,
    outcome: Callable[[Outcome], None],
) -> None:
    t0 = time.monotonic()
    result = client.send_task("quantbeat.collect.crypto_candles", kwargs=CRYPTO)
    ping_s = _ping_while_busy(client, worker, result.id)  # its only thread waits on the call
    assert ping_s < 1.0, worker.log()
    state = eventually(
        _ended(result.id), lambda s: s in ("failed", "timed_out", "succeeded"), timeout=90
    )
    ended_after = time.monotonic() - t0

    run = job_run(result.id)
    assert state == "failed", worker.log()
    # Every attempt waited one read timeout and was retried by Celery; the last dead-lettered.
    assert run.attempts == MAX_RETRIES + 1
    assert f"timed out after {HTTP_TIMEOUT} s" in (run.error or "")
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "retries_exhausted"
    # Within its limits: 3 attempts x 5 s plus short backoffs, far below the io soft limit.
    assert ended_after < 60
    with pytest.raises(Exception, match="timed out"):
        AsyncResult(result.id, app=client).get(timeout=10)
    _quick_task_runs(client, worker)
    outcome(
        Outcome(
            number=12,
            scenario="Hung provider on a threads worker (Upbit never answers)",
            sent=1,
            completed=1,
            duplicates=0,
            lost=0,
            recovery_s=round(ended_after, 1),
            notes=(
                f"each attempt ended at the {HTTP_TIMEOUT} s HTTP timeout; "
                f"{run.attempts} attempts, then dead-lettered retries_exhausted; the worker's "
                "single thread then ran the next task; with a 1 s soft limit the task ended "
                "timed_out when the call returned, and the reaper left it alone meanwhile; "
                f"ping answered in {ping_s * 1000:.0f} ms while the call hung"
            ),
        )
    )


def test_a_task_past_its_soft_limit_ends_timed_out_and_is_not_reaped(
    client: Celery, worker: WorkerProcess, clean_db: str
) -> None:
    # A soft limit (1 s) below the provider's timeout (5 s): the threads pool cannot
    # interrupt the call, so the task ends timed_out when the call returns.
    result = client.send_task("quantbeat.collect.crypto_candles", kwargs=CRYPTO, soft_time_limit=1)
    assert eventually(_ended(result.id), lambda s: s == "started", timeout=30) == "started"
    # While it runs, the reaper sees it in the worker's active list and leaves it alone.
    report = reap(client, grace=0.0, inspect_timeout=1.0)
    assert report.checked == 1, report
    assert report.running == 1, report
    assert report.requeued == []
    assert report.lost == []

    state = eventually(_ended(result.id), lambda s: s not in ("none", "started"), timeout=60)
    run = job_run(result.id)
    assert state == "timed_out", worker.log()
    assert run.attempts == 1  # not retried
    assert "soft time limit of 1 s" in (run.error or "")
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "timed_out"
    _quick_task_runs(client, worker)


@pytest.fixture
def lock_holder(database: str) -> Iterator[Connection]:
    """A second connection (no time limits) whose transaction the test uses to hold row locks;
    rolled back at the end whatever happens."""
    engine = create_engine_for(database, pool_size=1)
    conn = engine.connect()
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def _collect_day(client: Celery) -> AsyncResult:
    return client.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": DAY, "market": "KOSPI"}
    )


def _lock_one_candle(conn: Connection) -> int:
    """``SELECT … FOR UPDATE`` one stored candle of the day in ``conn``'s open transaction."""
    return int(
        conn.execute(
            text(
                "SELECT id FROM daily_candles WHERE trade_date = :d ORDER BY id LIMIT 1 FOR UPDATE"
            ),
            {"d": DAY},
        ).scalar_one()
    )


def test_held_row_lock_times_out_is_retried_and_succeeds_once_released(
    client: Celery,
    worker: WorkerProcess,
    clean_db: str,
    lock_holder: Connection,
    outcome: Callable[[Outcome], None],
) -> None:
    first = _collect_day(client).get(timeout=60)
    stored = first["candles"]["inserted"]
    assert stored > 0
    _lock_one_candle(lock_holder)

    t0 = time.monotonic()
    result = _collect_day(client)
    ping_s = _ping_while_busy(client, worker, result.id)
    assert ping_s < 1.0, worker.log()
    # The upsert waits for the locked row, lock_timeout (1 s) cancels it, the task retries.
    state = eventually(_ended(result.id), lambda s: s not in ("none", "started"), timeout=30)
    assert state == "retrying", worker.log()
    run = job_run(result.id)
    assert "canceling statement due to lock timeout" in (run.error or "")
    lock_holder.rollback()  # release the lock: the next attempt gets it

    summary = result.get(timeout=60)
    ended_after = time.monotonic() - t0
    run = job_run(result.id)
    assert run.state == "succeeded"
    assert 2 <= run.attempts <= MAX_RETRIES + 1
    # Nothing lost or doubled: the re-run found every candle unchanged.
    assert summary["candles"] == {"inserted": 0, "updated": 0, "unchanged": stored}
    assert dead_letter(result.id) is None
    assert ended_after < 60
    _quick_task_runs(client, worker)
    outcome(
        Outcome(
            number=13,
            scenario="Row lock held elsewhere during an upsert",
            sent=1,
            completed=1,
            duplicates=0,
            lost=0,
            recovery_s=round(ended_after, 1),
            notes=(
                f"SELECT … FOR UPDATE on one candle: lock_timeout ({LOCK_TIMEOUT} s) cancelled "
                f"the upsert, retried; released after the first failure, attempt "
                f"{run.attempts} succeeded with {stored} rows unchanged; a lock held "
                "throughout dead-letters after the retries (retries_exhausted); ping "
                f"answered in {ping_s * 1000:.0f} ms while the upsert waited"
            ),
        )
    )


def test_row_lock_held_throughout_dead_letters_after_the_retries(
    client: Celery, worker: WorkerProcess, clean_db: str, lock_holder: Connection
) -> None:
    _collect_day(client).get(timeout=60)
    _lock_one_candle(lock_holder)

    t0 = time.monotonic()
    result = _collect_day(client)
    state = eventually(
        _ended(result.id), lambda s: s in ("failed", "succeeded", "timed_out"), timeout=60
    )
    assert state == "failed", worker.log()
    assert time.monotonic() - t0 < 60
    run = job_run(result.id)
    assert run.attempts == MAX_RETRIES + 1
    assert "canceling statement due to lock timeout" in (run.error or "")
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "retries_exhausted"
    lock_holder.rollback()
    _quick_task_runs(client, worker)

"""Tasks that run out of memory, on a real prefork ``cpu`` worker whose children may add at
most 512 MiB of address space (``QUANTBEAT_CHILD_MAX_BYTES``):

* an allocation beyond the cap raises MemoryError in the task: it fails at once (one
  attempt), dead letter ``out_of_memory``, the client gets the error, the worker goes on;
* a child killed by SIGKILL (as the kernel's OOM killer does) is requeued once; the second
  kill of the same task dead-letters it ``worker_killed`` — 2 executions, not
  ``QUANTBEAT_MAX_ATTEMPTS`` (8);
* the same for a backtest run: the run ends ``failed`` with the reason.

The worker consumes a throwaway redis-server (broker db 0, results db 1)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

import tests.support.memory_app  # noqa: F401  (the test strategies, for spec validation)
from quantbeat.infra.settings import get_settings
from quantbeat.services import backtests
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import (
    backtest_row,
    dead_letter,
    eventually,
    job_run,
    small_kospi_history,
)
from tests.support.services import WorkerProcess, start_worker

pytestmark = pytest.mark.integration

CAP = 512 * 2**20
DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis(tmp_path_factory.mktemp("memory-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def client(broker: ThrowawayRedis) -> Celery:
    app = Celery("memory-client")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker.url(0), result_backend=broker.url(1))
    return app


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    found = small_kospi_history(database, "2026-09-01", DAY.isoformat())
    assert len(found) >= 4
    return found


@pytest.fixture(scope="module")
def capped_worker(
    names: list[str],
    broker: ThrowawayRedis,
    client: Celery,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    proc = start_worker(
        "tests.support.memory_app",
        queues="cpu",
        tmp_dir=tmp_path_factory.mktemp("memory-worker"),
        env={
            "QUANTBEAT_BROKER_URL": broker.url(0),
            "QUANTBEAT_RESULT_BACKEND": broker.url(1),
            "QUANTBEAT_CHILD_MAX_BYTES": str(CAP),
        },
        pool="prefork",
    )
    try:
        proc.wait_ready(client)
        yield proc
    finally:
        proc.stop()


def _failure(result: object, timeout: float = 120) -> BaseException:
    try:
        result.get(timeout=timeout)  # type: ignore[attr-defined]
    except CeleryTimeout:
        pytest.fail("the task never finished")
    except Exception as exc:
        return exc
    pytest.fail("the task succeeded")


def _copies_in_broker(broker: ThrowawayRedis, task_id: str) -> list[str]:
    """Where copies of ``task_id``'s message are still in the broker (queued or unacked)."""
    client = redis.Redis.from_url(broker.url(0))
    try:
        found = []
        for key in client.scan_iter("cpu*"):
            if client.type(key) == b"list":
                found += [
                    key.decode()
                    for raw in client.lrange(key, 0, -1)
                    if json.loads(raw)["headers"]["id"] == task_id
                ]
        found += [
            "unacked"
            for raw in client.hvals("unacked")
            if json.loads(raw)[0]["headers"]["id"] == task_id
        ]
        return found
    finally:
        client.close()


def _alive(worker: WorkerProcess, client: Celery) -> None:
    assert worker.proc.poll() is None, worker.log()
    assert client.control.ping(destination=[worker.hostname], timeout=10), worker.log()
    small = client.send_task("quantbeat.backtest.test_allocate", args=[16])
    assert small.get(timeout=60) == 16 * 2**20


def test_an_allocation_beyond_the_childs_cap_fails_at_once_as_out_of_memory(
    capped_worker: WorkerProcess, client: Celery, broker: ThrowawayRedis
):
    fits = client.send_task("quantbeat.backtest.test_allocate", args=[64])
    assert fits.get(timeout=60) == 64 * 2**20  # under the cap: allowed

    result = client.send_task("quantbeat.backtest.test_allocate", args=[2 * CAP // 2**20])
    error = _failure(result)
    assert type(error).__name__ == "OutOfMemory", repr(error)
    assert "ran out of memory" in str(error)
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("failed", 1)  # not retried, not redelivered
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "out_of_memory"
    assert "QUANTBEAT_CHILD_MAX_BYTES" in (letter.error or "")
    copies = eventually(lambda: _copies_in_broker(broker, result.id), lambda c: c == [], 20)
    assert copies == []
    _alive(capped_worker, client)


def test_a_task_whose_child_is_sigkilled_twice_is_dead_lettered_worker_killed(
    capped_worker: WorkerProcess, client: Celery, broker: ThrowawayRedis
):
    marker = uuid.uuid4().hex
    result = client.send_task("quantbeat.backtest.test_kill_self", args=[marker])
    error = _failure(result)
    assert type(error).__name__ == "WorkerKilled", repr(error)
    assert "out of memory" in str(error).lower() or "OOM" in str(error)
    counter = redis.Redis.from_url(get_settings().redis_url)
    executions = int(counter.get(f"test:kill-self:{marker}") or 0)
    limit = get_settings().max_child_kills
    assert limit == 2
    assert executions == limit  # killed once and requeued, killed again and dead-lettered
    letter = eventually(lambda: dead_letter(result.id), lambda found: found is not None, timeout=30)
    assert letter is not None, capped_worker.log()
    assert letter.reason == "worker_killed"
    assert "SIGKILL" in (letter.error or "")
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("failed", limit)
    # acknowledged, not requeued (the main process acks from its event loop: allow a moment)
    copies = eventually(lambda: _copies_in_broker(broker, result.id), lambda c: c == [], 20)
    assert copies == []
    _alive(capped_worker, client)


def test_backtests_that_run_out_of_memory_end_failed_with_the_reason(
    capped_worker: WorkerProcess, client: Celery, names: list[str]
):
    base = {"instruments": names[:3], "start": "2026-10-01", "end": DAY.isoformat()}
    greedy = backtests.submit_backtest(
        {**base, "strategy": "test_allocate", "params": {"mib": 2 * CAP // 2**20}}, app=client
    )
    killed = backtests.submit_backtest({**base, "strategy": "test_oom_killed"}, app=client)

    final = backtests.wait(greedy, timeout=120)
    assert final["state"] == "failed", final
    assert "MemoryError" in (final["error"] or ""), final
    letter = eventually(
        lambda: dead_letter(f"backtest-{greedy}"), lambda found: found is not None, 30
    )
    assert letter is not None
    assert letter.reason == "out_of_memory"
    assert backtest_row(greedy).attempts == 1

    final = backtests.wait(killed, timeout=120)
    assert final["state"] == "failed", final
    assert "out of memory" in (final["error"] or ""), final
    letter = eventually(
        lambda: dead_letter(f"backtest-{killed}"), lambda found: found is not None, 30
    )
    assert letter is not None
    assert letter.reason == "worker_killed"
    assert backtest_row(killed).attempts == 2
    _alive(capped_worker, client)

"""Prometheus metrics of a real prefork worker (concurrency 2), scraped over HTTP: counts from
both pool children summed, a hard time limit counted by the main process, queue lengths read
from the broker (priorities included), the worker up."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.exceptions import TimeLimitExceeded
from prometheus_client.parser import text_string_to_metric_families

from quant.errors import PermanentError
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

# Redis databases no other test uses.
BROKER, BACKEND = f"{TEST_REDIS_URL}/1", f"{TEST_REDIS_URL}/2"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client() -> Celery:
    client = Celery("client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=BROKER, result_backend=BACKEND)
    return client


class MetricsWorker:
    def __init__(self, proc: WorkerProcess, port: int, directory: Path) -> None:
        self.proc = proc
        self.port = port
        self.directory = directory

    def scrape(self) -> Samples:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def metrics_worker(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsWorker]:
    """``quantbeat worker`` (prefork, 2 children) with its metrics on a free port."""
    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()
    tmp = tmp_path_factory.mktemp("metrics")
    port = _free_port()
    hostname = f"metrics-{uuid.uuid4().hex[:8]}@localhost"
    argv = [
        sys.executable,
        "-c",
        "import sys; import tests.support.worker_app; from quantbeat.cli.main import main; "
        "sys.exit(main(sys.argv[1:]))",
        "worker",
        "--queues=io,cpu",
        "--pool=prefork",
        "--concurrency=2",
        f"--hostname={hostname}",
        f"--metrics-port={port}",
    ]
    env = {
        **os.environ,
        "QUANTBEAT_BROKER_URL": BROKER,
        "QUANTBEAT_RESULT_BACKEND": BACKEND,
        "QUANTBEAT_METRICS_DIR": str(tmp / "prometheus"),
    }
    proc = WorkerProcess(argv, hostname, tmp / "worker.log", env)
    worker = MetricsWorker(proc, port, tmp / "prometheus" / hostname)
    try:
        proc.wait_ready(_client())
        yield worker
    finally:
        proc.stop()
        for url in (BROKER, BACKEND):
            redis.Redis.from_url(url).flushdb()


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _scrape_until(worker: MetricsWorker, expected: Samples) -> Samples:
    """Scrape until every expected sample has its value (postrun, and the main process's
    record of a killed child, may land just after the client sees the result)."""

    def matches(samples: Samples) -> bool:
        return all(samples.get(key, 0.0) == want for key, want in expected.items())

    samples = eventually(worker.scrape, matches, timeout=15)
    got = {key: samples.get(key, 0.0) for key in expected}
    assert got == expected, worker.proc.log()
    return samples


SLEEP = {"task": "quantbeat.backtest.test_sleep", "queue": "cpu"}


def test_counts_from_every_child_are_summed(metrics_worker: MetricsWorker):
    client = _client()
    # Four half-second tasks on two children: both children run some.
    sleeps = [client.send_task("quantbeat.backtest.test_sleep", args=[0.5]) for _ in range(4)]
    permanent = client.send_task("quantbeat.ops.test_permanent", args=["metrics test"])
    flaky = client.send_task("quantbeat.ops.test_flaky", args=[1])
    # Waiting in a queue this worker does not consume, one with a priority (Redis keeps those
    # in a list of their own).
    client.send_task("quantbeat.ai.test_parked", queue="ai")
    client.send_task("quantbeat.ai.test_parked", queue="ai", priority=5)

    assert [r.get(timeout=60) for r in sleeps] == [{"slept": 0.5}] * 4
    with pytest.raises(PermanentError):
        permanent.get(timeout=60)
    assert flaky.get(timeout=60) == {"retries": 1}

    flaky_io = {"task": "quantbeat.ops.test_flaky", "queue": "io"}
    permanent_io = {"task": "quantbeat.ops.test_permanent", "queue": "io"}
    samples = _scrape_until(
        metrics_worker,
        {
            _key("quantbeat_task_total", state="success", **SLEEP): 4,
            _key("quantbeat_task_duration_seconds_count", **SLEEP): 4,
            _key("quantbeat_task_total", state="failure", **permanent_io): 1,
            _key(
                "quantbeat_task_failures_total", task=permanent_io["task"], reason="permanent_error"
            ): 1,
            _key("quantbeat_task_total", state="retry", **flaky_io): 1,
            _key("quantbeat_task_total", state="success", **flaky_io): 1,
            _key("quantbeat_task_retries_total", task=flaky_io["task"]): 1,
        },
    )
    assert value(samples, "quantbeat_task_duration_seconds_sum", **SLEEP) >= 2.0
    assert value(samples, "quantbeat_task_duration_seconds_bucket", le="0.25", **SLEEP) == 0
    assert value(samples, "quantbeat_tasks_running", queue="cpu") == 0
    # The counts came from both children's files (the main process ran no task).
    main_pid = str(metrics_worker.proc.proc.pid)
    children = {
        path.name[: -len(".db")].rsplit("_", 1)[-1]
        for path in metrics_worker.directory.glob("counter_*.db")
    } - {main_pid, "archive"}
    assert len(children) == 2, sorted(children)

    assert value(samples, "quantbeat_queue_length", queue="ai") == 2
    assert value(samples, "quantbeat_queue_length", queue="io") == 0
    assert value(samples, "quantbeat_queue_length", queue="cpu") == 0
    assert value(samples, "quantbeat_broker_up") == 1
    assert value(samples, "quantbeat_worker_up", worker=metrics_worker.proc.hostname) == 1
    # the operational state the alert rules read (quantbeat.services.ops_metrics)
    for component in ("beat", "data_freshness", "ai", "outbox"):
        assert ("quantbeat_health_status", frozenset({("component", component)})) in samples
    assert value(samples, "quantbeat_dead_letters_open") >= 0
    assert ("quantbeat_dead_letters_open", frozenset()) in samples
    assert value(samples, "quantbeat_candle_months_stale") >= 0


def test_a_child_killed_by_the_hard_time_limit_is_counted(metrics_worker: MetricsWorker):
    before = metrics_worker.scrape()
    succeeded = value(before, "quantbeat_task_total", state="success", **SLEEP)
    killed = _client().send_task(
        "quantbeat.backtest.test_sleep",
        args=[30],
        kwargs={"ignore_soft_limit": True},
        soft_time_limit=1,
        time_limit=2,
    )
    with pytest.raises(TimeLimitExceeded):
        killed.get(timeout=60)
    samples = _scrape_until(
        metrics_worker,
        {
            _key("quantbeat_task_total", state="failure", **SLEEP): 1,
            _key("quantbeat_task_failures_total", task=SLEEP["task"], reason="hard_time_limit"): 1,
            # The dead child's counts are kept (archived), its "running" task is not.
            _key("quantbeat_task_total", state="success", **SLEEP): succeeded,
            _key("quantbeat_tasks_running", queue="cpu"): 0,
        },
    )
    assert value(samples, "quantbeat_worker_up", worker=metrics_worker.proc.hostname) == 1


def test_the_metrics_directory_is_removed_at_shutdown(metrics_worker: MetricsWorker):
    assert metrics_worker.directory.is_dir()
    metrics_worker.proc.stop()
    assert metrics_worker.proc.proc.returncode == 0, metrics_worker.proc.log()
    assert not metrics_worker.directory.exists()

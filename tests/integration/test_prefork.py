"""A prefork worker, as the cpu queue runs: children must not share the parent's database
connections. (Soft and hard time limits on prefork are fault scenario 9:
tests/faults/test_worker_faults.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.helpers import job_run

pytestmark = pytest.mark.integration

DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
BROKER, BACKEND = f"{TEST_REDIS_URL}/9", f"{TEST_REDIS_URL}/10"


@pytest.fixture(scope="module")
def prefork(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A prefork worker whose parent held a pooled database connection before forking."""
    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()
    proc = start_worker(
        "tests.support.prefork_app",
        queues="io,cpu",
        tmp_dir=tmp_path_factory.mktemp("prefork"),
        env={"QUANTBEAT_BROKER_URL": BROKER, "QUANTBEAT_RESULT_BACKEND": BACKEND},
        pool="prefork",
    )
    try:
        proc.wait_ready(_client())
        yield proc
    finally:
        proc.stop()


def _client() -> Celery:
    client = Celery("client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=BROKER, result_backend=BACKEND)
    return client


def test_children_write_concurrently_after_the_parent_used_the_pool(prefork, clean_db):
    client = _client()
    results = [
        client.send_task(name, kwargs={"trade_date": day})
        for day in DAYS
        for name in ("quantbeat.collect.daily_candles", "quantbeat.collect.investor_flows")
    ]
    summaries = [r.get(timeout=120) for r in results]
    assert all(s["session"] for s in summaries)
    for r in results:
        run = job_run(r.id)
        assert (run.state, run.attempts) == ("succeeded", 1), prefork.log()
    errors = [line for line in prefork.json_lines() if line.get("level") in ("error", "critical")]
    assert errors == []

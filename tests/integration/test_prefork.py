"""A prefork worker, as the cpu queue runs: children must not share the parent's database
connections, and soft/hard time limits must end in recorded, dead-lettered failures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.helpers import dead_letter, eventually, job_run

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


def test_soft_time_limit_marks_the_run_timed_out(prefork, clean_db):
    result = _client().send_task(
        "quantbeat.backtest.test_sleep", args=[30], soft_time_limit=1, time_limit=20
    )
    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=60)
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("timed_out", 1)
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "timed_out"


def test_hard_time_limit_kills_the_child_and_is_recorded_by_the_parent(prefork, clean_db):
    client = _client()
    result = client.send_task(
        "quantbeat.backtest.test_sleep",
        args=[30],
        kwargs={"ignore_soft_limit": True},
        soft_time_limit=1,
        time_limit=2,
    )
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=60)
    # The parent records it after marking the result failed: poll briefly.
    run = eventually(lambda: job_run(result.id), lambda r: r.state != "started")
    assert run.state == "timed_out"
    assert "hard time limit" in (run.error or "")
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "hard_time_limit"
    # The pool replaced the killed child: work goes on.
    after = client.send_task("quantbeat.backtest.test_sleep", args=[0.1])
    assert after.get(timeout=60) == {"slept": 0.1}

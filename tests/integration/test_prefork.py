"""Prefork children must not share the parent's database connections: the parent here holds
a pooled connection before forking, and four children then write concurrently."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import start_worker
from tests.integration.helpers import job_run

pytestmark = pytest.mark.integration

DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]


def test_prefork_children_write_concurrently_after_the_parent_used_the_pool(
    clean_db, tmp_path: Path
):
    broker, backend = f"{TEST_REDIS_URL}/9", f"{TEST_REDIS_URL}/10"
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    env = {"QUANTBEAT_BROKER_URL": broker, "QUANTBEAT_RESULT_BACKEND": backend}
    proc = start_worker(
        "tests.support.prefork_app", queues="io", tmp_dir=tmp_path, env=env, pool="prefork"
    )
    try:
        from celery import Celery

        client = Celery("client")
        client.config_from_object("celeryconfig")
        client.conf.update(broker_url=broker, result_backend=backend)
        proc.wait_ready(client)
        results = [
            client.send_task(name, kwargs={"trade_date": day})
            for day in DAYS
            for name in ("quantbeat.collect.daily_candles", "quantbeat.collect.investor_flows")
        ]
        summaries = [r.get(timeout=120) for r in results]
    finally:
        proc.stop()
    assert all(s["session"] for s in summaries)
    for r in results:
        run = job_run(r.id)
        assert (run.state, run.attempts) == ("succeeded", 1), proc.log()
    errors = [line for line in proc.json_lines() if line.get("level") in ("error", "critical")]
    assert errors == []

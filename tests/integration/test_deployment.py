"""The foundation's acceptance scenarios, run the way an operator would: ``quantbeat worker``
as a process, tasks sent by name from another process, ``celery inspect``, and RabbitMQ as an
alternative broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import DailyCandle
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import start_worker
from tests.integration.helpers import candle_snapshot, job_run

pytestmark = pytest.mark.integration
DAY = "2026-11-19"


def _send_from_another_process(env: dict[str, str]) -> str:
    code = (
        "from workers.app import app\n"
        "r = app.send_task('quantbeat.collect.daily_candles', "
        f"kwargs={{'trade_date': '{DAY}', 'market': 'KOSDAQ'}})\n"
        "print(r.id)\n"
        "print(r.get(timeout=90)['candles'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()[0]


def _isolated_env(broker: str, backend: str) -> dict[str, str]:
    env = dict(os.environ)
    env["QUANTBEAT_BROKER_URL"] = broker
    env["QUANTBEAT_RESULT_BACKEND"] = backend
    return env


def test_quantbeat_worker_runs_a_task_sent_by_name(clean_db, tmp_path: Path):
    # Own Redis databases: this worker only knows production tasks.
    broker, backend = f"{TEST_REDIS_URL}/12", f"{TEST_REDIS_URL}/13"
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    env = _isolated_env(broker, backend)
    proc = start_worker("workers.app", queues="io", tmp_dir=tmp_path, env=env, cli=True)
    try:
        from celery import Celery

        probe = Celery(broker=broker, backend=backend)
        proc.wait_ready(probe)

        task_id = _send_from_another_process(env)
        run = job_run(task_id)
        assert (run.state, run.attempts, run.queue) == ("succeeded", 1, "io")
        with session_scope() as session:
            n = session.execute(select(func.count()).select_from(DailyCandle)).scalar_one()
        assert n > 0
        before = candle_snapshot(DAY)

        second = _send_from_another_process(env)
        assert job_run(second).state == "succeeded"
        assert candle_snapshot(DAY) == before

        registered = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "inspect",
                "registered",
                "-d",
                proc.hostname,
                "--timeout",
                "10",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert registered.returncode == 0, registered.stderr
        for name in ("quantbeat.collect.daily_candles", "quantbeat.collect.investor_flows"):
            assert name in registered.stdout
    finally:
        proc.stop()


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_rabbitmq_broker_works(clean_db, tmp_path: Path):
    from celery import Celery

    broker = "amqp://guest:guest@127.0.0.1:5672//"
    backend = f"{TEST_REDIS_URL}/11"
    redis.Redis.from_url(backend).flushdb()
    probe = Celery("probe")
    probe.config_from_object("celeryconfig")
    probe.conf.update(broker_url=broker, result_backend=backend)
    probe.control.purge()  # io, cpu and ai: leftovers of an earlier run must not execute
    env = _isolated_env(broker, backend)
    proc = start_worker("workers.app", queues="io", tmp_dir=tmp_path, env=env)
    try:
        proc.wait_ready(probe)
        task_id = _send_from_another_process(env)
        assert job_run(task_id).state == "succeeded"
    finally:
        proc.stop()

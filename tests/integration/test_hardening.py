"""Bad inputs and a database that refuses history writes, through real workers, PostgreSQL and
Redis (issue 16, items 1–2):

* an oversized message sent by name with the client-side check bypassed (a kombu producer) is
  dead-lettered ``oversized`` unread; the worker answers ping within 1 s and runs the next task;
  the client's own publish of such a message raises and queues nothing;
* a NUL in a task's arguments leaves a job run and a dead letter, the NUL escaped;
* with PostgreSQL unreachable for a worker's history writes, the records land in the local
  spool, ``health`` warns, and the reaper's housekeeping replays them once — twice changes
  nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.exceptions import NotRegistered
from sqlalchemy import select

from db.engine import session_scope
from db.models import DeadLetter, JobRun
from quant.errors import PermanentError, ValidationError
from quantbeat.infra import spool
from quantbeat.infra.settings import reset_settings
from quantbeat.services.health import Status, assess_spool
from quantbeat.services.reaper import housekeeping
from tests.conftest import TEST_BROKER_URL, TEST_REDIS_URL, TEST_RESULT_BACKEND
from tests.integration.helpers import dead_letter, eventually
from tests.support.messages import publish_task
from tests.support.services import WorkerProcess, start_worker

pytestmark = pytest.mark.integration

FIVE_MB = 5 * 1024 * 1024


def _job_run(task_id: str) -> JobRun | None:
    with session_scope() as session:
        row = session.execute(select(JobRun).where(JobRun.task_id == task_id)).scalar_one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def test_an_oversized_message_is_dead_lettered_unread_and_the_worker_keeps_serving(
    celery_app: Any, worker: WorkerProcess, clean_db: str
) -> None:
    task_id = str(uuid.uuid4())
    secret = "api_key=AIzaSyOversizedSecret "
    size = publish_task(
        TEST_BROKER_URL, "quantbeat.ops.test_flaky", task_id, [0], {"note": secret + "m" * FIVE_MB}
    )
    # The worker received a 5 MB message: it answers ping within a second.
    started = time.monotonic()
    pong = celery_app.control.ping(destination=[worker.hostname], timeout=1.0)
    assert pong, worker.log()
    assert time.monotonic() - started < 1.5

    letter = eventually(lambda: dead_letter(task_id), lambda row: row is not None, timeout=10)
    assert letter is not None, worker.log()
    assert letter.reason == "oversized"
    assert letter.task_name == "quantbeat.ops.test_flaky"
    assert letter.payload["body_bytes"] == size
    assert letter.payload["limit_bytes"] == 262_144
    assert letter.payload["args"] is None
    assert len(letter.payload["body_sample"]) <= 400
    assert len(json.dumps(letter.payload)) < 4_000  # never stored whole
    assert "AIzaSyOversizedSecret" not in json.dumps(letter.payload)
    assert f"{size:,} bytes" in (letter.error or "")
    # never started, never counted
    assert _job_run(task_id) is None
    # the client waiting on it learns why
    with pytest.raises(ValidationError, match="exceeds QUANTBEAT_MAX_MESSAGE_BYTES"):
        celery_app.AsyncResult(task_id).get(timeout=10)
    # acknowledged: not delivered again, the queue is empty
    assert redis.Redis.from_url(TEST_BROKER_URL).llen("io") == 0
    # and the next task runs
    started = time.monotonic()
    pong = celery_app.control.ping(destination=[worker.hostname], timeout=1.0)
    assert pong
    assert celery_app.send_task("quantbeat.ops.test_flaky", args=[0]).get(timeout=15) == {
        "retries": 0
    }


def test_the_client_refuses_to_publish_an_oversized_message(
    celery_app: Any, worker: WorkerProcess, clean_db: str
) -> None:
    task_id = str(uuid.uuid4())
    with pytest.raises(ValidationError) as caught:
        celery_app.send_task(
            "quantbeat.ops.test_flaky", args=[0], kwargs={"note": "x" * 300_000}, task_id=task_id
        )
    assert "'quantbeat.ops.test_flaky'" in str(caught.value)
    assert "(262,144 bytes)" in str(caught.value)
    # nothing was queued: no run, no letter, and a task sent after it runs at once
    assert celery_app.send_task("quantbeat.ops.test_flaky", args=[0]).get(timeout=15)
    assert _job_run(task_id) is None
    assert dead_letter(task_id) is None


def test_a_nul_in_the_arguments_leaves_a_job_run_and_a_dead_letter_escaped(
    celery_app: Any, worker: WorkerProcess, clean_db: str
) -> None:
    failed = celery_app.send_task("quantbeat.ops.test_permanent", args=["bad\x00input"])
    with pytest.raises(PermanentError):
        failed.get(timeout=15)
    succeeded = celery_app.send_task(
        "quantbeat.ops.test_flaky", args=[0], kwargs={"note\x00": "a\x00b"}
    )
    assert succeeded.get(timeout=15) == {"retries": 0}

    run = eventually(
        lambda: _job_run(failed.id), lambda r: r is not None and r.state == "failed", timeout=10
    )
    assert run is not None, worker.log()
    assert (run.state, run.attempts) == ("failed", 1)
    assert run.args == ["bad\\u0000input"]
    assert "bad\\u0000input" in (run.error or "")
    letter = eventually(lambda: dead_letter(failed.id), lambda r: r is not None, timeout=10)
    assert letter is not None
    assert letter.reason == "permanent_error"
    assert letter.payload["args"] == ["bad\\u0000input"]
    assert "bad\\u0000input" in (letter.error or "")
    ok = eventually(
        lambda: _job_run(succeeded.id),
        lambda r: r is not None and r.state == "succeeded",
        timeout=10,
    )
    assert ok is not None
    assert ok.kwargs == {"note\\u0000": "a\\u0000b"}
    assert "not_recorded" not in worker.full_log()


# --- the spool --------------------------------------------------------------------------------
SPOOL_BROKER = f"{TEST_REDIS_URL}/12"
CLOSED_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"


@pytest.fixture
def cut_off_worker(database: str, tmp_path: Path) -> Iterator[tuple[WorkerProcess, Celery, Path]]:
    """A worker on a broker of its own whose database URL points at a closed port (every
    history write fails), its spool under ``tmp_path``; and an app to reach it."""
    redis.Redis.from_url(SPOOL_BROKER).flushdb()
    data_dir = tmp_path / "data"
    app = Celery("h5-spool", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = SPOOL_BROKER
    app.conf.result_backend = TEST_RESULT_BACKEND
    proc = start_worker(
        "tests.support.worker_app",
        queues="io",
        tmp_dir=tmp_path,
        env={
            "QUANTBEAT_DATABASE_URL": CLOSED_DATABASE,
            "QUANTBEAT_BROKER_URL": SPOOL_BROKER,
            "QUANTBEAT_DATA_DIR": str(data_dir),
            "QUANTBEAT_DB_POOL_TIMEOUT": "1",
        },
    )
    try:
        proc.wait_ready(app)
        yield proc, app, data_dir / "spool"
    finally:
        proc.stop()
        redis.Redis.from_url(SPOOL_BROKER).flushdb()


def test_records_the_database_refused_wait_in_the_spool_and_the_reaper_replays_them_once(
    cut_off_worker: tuple[WorkerProcess, Celery, Path],
    clean_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, app, where = cut_off_worker
    failed = app.send_task("quantbeat.ops.test_permanent", args=["spool\x00me"])
    unknown = app.send_task("quantbeat.ops.no_such_task", kwargs={"password": "hunter2"})
    with pytest.raises(PermanentError):
        failed.get(timeout=20)
    with pytest.raises(NotRegistered):
        unknown.get(timeout=20)

    # job run + dead letter of the failed task, dead letter of the unknown one
    files = eventually(lambda: spool.pending(where), lambda found: len(found) == 3, timeout=10)
    assert len(files) == 3, proc.log()
    kinds = sorted(json.loads(p.read_text())["kind"] for p in files)
    assert kinds == ["dead_letter", "dead_letter", "job_run"]
    assert all("hunter2" not in p.read_text() for p in files)
    events = [line.get("event") for line in proc.json_lines()]
    assert "job_run.end_not_recorded" in events
    assert events.count("dead_letter.not_recorded") == 2
    assert _job_run(failed.id) is None
    saved = {p.name: p.read_bytes() for p in files}

    # health on this host warns, naming how many wait
    found = assess_spool(spool.status(where), dt.datetime.now(dt.UTC))
    assert found.status is Status.WARNING
    assert found.message.startswith("3 history record(s) wait in the spool")

    # PostgreSQL is reachable from here: the reaper's housekeeping replays the spool
    monkeypatch.setenv("QUANTBEAT_DATA_DIR", str(where.parent))
    reset_settings()
    try:
        first = housekeeping(300.0)
        second = housekeeping(300.0)
        # a copy of the same records (a replay that died before deleting its files) again
        for name, content in saved.items():
            (where / name).write_bytes(content)
        third = housekeeping(300.0)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert first["spool"]["replayed"] == 3, first
    assert first["spool"]["remaining"] == 0
    assert second["spool"]["replayed"] + second["spool"]["already"] == 0
    assert third["spool"]["replayed"] == 0, third
    assert third["spool"]["already"] == 3
    assert spool.pending(where) == []

    run = _job_run(failed.id)
    assert run is not None
    assert (run.state, run.attempts, run.worker) == ("failed", 1, proc.hostname)
    assert run.args == ["spool\\u0000me"]
    with session_scope() as session:
        letters = {
            row.task_id: (row.reason, row.occurrences, row.payload)
            for row in session.execute(select(DeadLetter)).scalars()
        }
    assert set(letters) == {failed.id, unknown.id}
    assert letters[failed.id][:2] == ("permanent_error", 1)
    assert letters[failed.id][2]["args"] == ["spool\\u0000me"]
    assert letters[unknown.id][:2] == ("unknown_task", 1)
    assert letters[unknown.id][2]["kwargs"] == {"password": "***"}

"""The reaper through a real worker: job runs left "started" by a dead worker are requeued
(idempotent tasks) or marked lost with a dead letter; a run a live worker is executing is
left alone; a late redelivery of a lost run's message is not executed."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from db.engine import get_engine

pytestmark = pytest.mark.integration


def _orphan(database: str, task_name: str, args: list[Any], minutes_ago: float = 10) -> str:
    task_id = str(uuid.uuid4())
    with get_engine(database).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_runs (task_id, task_name, queue, args, kwargs, state, "
                "attempts, retries, worker, started_at) VALUES (:id, :name, 'io', "
                "CAST(:args AS jsonb), '{}'::jsonb, 'started', 1, 0, 'gone@dead-host', :at)"
            ),
            {
                "id": task_id,
                "name": task_name,
                "args": __import__("json").dumps(args),
                "at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago),
            },
        )
    return task_id


def _job(database: str, task_id: str) -> dict[str, Any]:
    with get_engine(database).connect() as conn:
        row = conn.execute(
            text("SELECT state, attempts, error FROM job_runs WHERE task_id = :id"),
            {"id": task_id},
        ).one_or_none()
    return dict(row._mapping) if row is not None else {"state": None}


def _wait_state(database: str, task_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = _job(database, task_id)
        if job["state"] == state or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _wait_heartbeat(database: str, task_id: str, timeout: float = 30) -> None:
    """Until the worker running ``task_id`` has a heartbeat row (the table may just have
    been emptied; workers beat every QUANTBEAT_HEARTBEAT_INTERVAL, 10 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_engine(database).connect() as conn:
            found = conn.execute(
                text(
                    "SELECT 1 FROM worker_heartbeats h JOIN job_runs j ON j.worker = h.worker "
                    "WHERE j.task_id = :i"
                ),
                {"i": task_id},
            ).first()
        if found is not None:
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker running {task_id} wrote no heartbeat in {timeout} s")


def test_orphans_are_requeued_or_marked_lost(celery_app: Any, clean_db: str) -> None:
    idempotent = _orphan(clean_db, "quantbeat.ops.test_flaky", [0])
    not_idempotent = _orphan(clean_db, "quantbeat.ops.test_once", ["x"])
    masked = _orphan(clean_db, "quantbeat.ops.test_flaky", [0, "password=***"])
    recent = _orphan(clean_db, "quantbeat.ops.test_flaky", [0], minutes_ago=0.1)
    # A run that a live worker is executing right now stays "started".
    running = celery_app.send_task("quantbeat.backtest.test_sleep", args=[20])
    _wait_state(clean_db, running.id, "started")
    # Backdated, with its worker's start (the heartbeat): a run cannot start before its
    # worker, and one that did would belong to an earlier incarnation (dead at once).
    _wait_heartbeat(clean_db, running.id)
    with get_engine(clean_db).begin() as conn:
        conn.execute(
            text(
                "UPDATE job_runs SET started_at = now() - interval '10 minutes' WHERE task_id = :i"
            ),
            {"i": running.id},
        )
        conn.execute(
            text(
                "UPDATE worker_heartbeats SET started_at = started_at - interval '1 day' "
                "WHERE worker = (SELECT worker FROM job_runs WHERE task_id = :i)"
            ),
            {"i": running.id},
        )

    report = celery_app.send_task("quantbeat.ops.reap", kwargs={"grace": 60}).get(timeout=30)

    assert report["requeued"] == [idempotent], report
    assert sorted(report["lost"]) == sorted([not_idempotent, masked]), report
    assert report["running"] == 1
    done = _wait_state(clean_db, idempotent, "succeeded")
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2, done
    lost = _job(clean_db, not_idempotent)
    assert lost["state"] == "lost"
    assert "not idempotent" in lost["error"]
    assert "masked" in _job(clean_db, masked)["error"]
    assert _job(clean_db, recent)["state"] == "started"  # inside the grace period
    assert running.get(timeout=60) == {"slept": 20}
    with get_engine(clean_db).connect() as conn:
        reasons: dict[str, str] = dict(
            conn.execute(
                text("SELECT task_id, reason FROM dead_letters WHERE task_id = ANY(:ids)"),
                {"ids": [not_idempotent, masked]},
            ).all()
        )
    assert reasons == {not_idempotent: "worker_lost", masked: "worker_lost"}

    # The lost run's original message, redelivered late, is not executed.
    late = celery_app.send_task("quantbeat.ops.test_once", args=["x"], task_id=not_idempotent)
    with pytest.raises(Exception, match="marked lost by the reaper"):
        late.get(timeout=30)
    assert _job(clean_db, not_idempotent)["state"] == "lost"

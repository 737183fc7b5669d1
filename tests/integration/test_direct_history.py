"""The worker's direct history writes (db.jobs.DirectHistory) on PostgreSQL: the same rows the
session path (record_job_start / record_job_end) writes, attempts counted on redelivery, a run
the reaper marked lost left untouched and reported, NUL escaped, and a forked child that
writes on a connection of its own while the parent's keeps working."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update

from db.engine import session_scope
from db.jobs import DirectHistory, record_job_end, record_job_start
from db.models import JobAttempt, JobRun

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=2)


def _start(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_name": "quantbeat.ops.test_flaky",
        "queue": "io",
        "args": ["a\x00b", 1],
        "kwargs": {"note\x00": "x"},
        "worker": "w1@host",
        "retries": 0,
        "started_at": T0,
    }


def _end(task_id: str, result: Any = None) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "state": "succeeded",
        "finished_at": T1,
        "duration_ms": 12.5,
        "error": None,
        "result": result,
    }


def _rows(task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    skip = {"id", "task_id", "created_at", "updated_at"}
    with session_scope() as session:
        run = session.execute(select(JobRun).where(JobRun.task_id == task_id)).scalar_one()
        attempts = session.execute(
            select(JobAttempt).where(JobAttempt.task_id == task_id).order_by(JobAttempt.attempt)
        ).scalars()
        run_row = {
            c: getattr(run, c) for c in (col.name for col in JobRun.__table__.c) if c not in skip
        }
        attempt_rows = [
            {
                c: getattr(a, c)
                for c in (col.name for col in JobAttempt.__table__.c)
                if c not in skip
            }
            for a in attempts
        ]
    return run_row, attempt_rows


@pytest.fixture
def direct(clean_db: str) -> Iterator[DirectHistory]:
    writer = DirectHistory(clean_db)
    yield writer
    writer.drop()


def test_the_same_rows_as_the_session_path(direct: DirectHistory):
    for _ in range(2):  # a first execution and a redelivery
        with session_scope() as session:
            attempt = record_job_start(session, **_start("by-session"))
            record_job_end(session, **_end("by-session", {"n": 1}), attempt=attempt)
        direct.end(**_end("direct", {"n": 1}), attempt=direct.start(**_start("direct")) or 0)
    assert _rows("direct") == _rows("by-session")
    run, attempts = _rows("direct")
    assert run["attempts"] == 2
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert run["args"] == ["a\\u0000b", 1]  # NUL escaped, as the session path stores it
    assert run["kwargs"] == {"note\\u0000": "x"}
    assert run["state"] == "succeeded"


def test_a_missing_result_is_stored_as_the_session_path_stores_it(direct: DirectHistory):
    with session_scope() as session:
        attempt = record_job_start(session, **_start("by-session"))
        record_job_end(session, **_end("by-session"), attempt=attempt)
    direct.end(**_end("direct"), attempt=direct.start(**_start("direct")) or 0)
    assert _rows("direct") == _rows("by-session")


def test_a_run_marked_lost_is_not_started_again(direct: DirectHistory):
    assert direct.start(**_start("gone")) == 1
    with session_scope() as session:
        session.execute(update(JobRun).where(JobRun.task_id == "gone").values(state="lost"))
    before = _rows("gone")
    assert direct.start(**_start("gone")) is None
    assert _rows("gone") == before  # nothing written


def test_a_forked_child_writes_on_its_own_connection(direct: DirectHistory):
    assert direct.start(**_start("parent")) == 1  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: its own connection, then leave without cleanup
        code = 0
        try:
            direct.start(**_start("child"))
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    direct.end(**_end("parent"), attempt=1)  # still usable after the child's exit
    assert _rows("parent")[0]["state"] == "succeeded"
    assert _rows("child")[0]["state"] == "started"


def test_a_connection_the_server_ended_while_idle_is_replaced_without_an_error(
    direct: DirectHistory,
):
    assert direct.start(**_start("before")) == 1
    with session_scope() as session:  # an administrator (or a restart) ends the connection
        ended = session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = '' AND pid <> pg_backend_pid() "
                "AND query LIKE '%job_runs%'"
            )
        ).scalars()
        assert any(ended)
    time.sleep(0.2)  # the termination reaches the idle socket
    assert direct.start(**_start("after")) == 1  # no error: a new connection

"""The reaper never overrides a run that ended while it asked the workers (a race found by the
time-limit fault test): it reads orphan candidates, spends seconds inspecting the workers, and
only then requeues or marks them lost — through one conditional UPDATE per run. On an SQLite
file (db functions and the service's flow); against PostgreSQL and real workers see
tests/integration/test_reaper.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from db.engine import session_scope
from db.jobs import end_if_still_started, record_job_end, record_job_start
from db.models import JobRun
from quantbeat.services.reaper import reap
from workers.base import on_worker_lost

LONG_AGO = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _start(task_id: str, name: str = "quantbeat.collect.daily_candles") -> None:
    with session_scope() as session:
        record_job_start(
            session,
            task_id=task_id,
            task_name=name,
            queue="io",
            args=[],
            kwargs={"trade_date": "2026-03-02"},
            worker="gone@host",
            retries=0,
            started_at=LONG_AGO,
        )


def _state(task_id: str) -> str:
    with session_scope() as session:
        return session.execute(select(JobRun.state).where(JobRun.task_id == task_id)).scalar_one()


def test_only_the_run_that_was_read_is_ended(sqlite_url):
    _start("t-1")
    with session_scope() as session:
        assert not end_if_still_started(
            session, task_id="t-1", attempts=2, state="lost", error="x", finished_at=LONG_AGO
        )  # another attempt than the one read
        assert end_if_still_started(
            session, task_id="t-1", attempts=1, state="lost", error="x", finished_at=LONG_AGO
        )
        assert not end_if_still_started(
            session, task_id="t-1", attempts=1, state="requeued", error="x", finished_at=LONG_AGO
        )  # already ended
    assert _state("t-1") == "lost"


class _Task:
    idempotent = True


class _App:
    """What the reaper asks of the Celery app; the workers answer nothing (all gone). While
    it is asked, the task finishes — as a slow ping would let it."""

    def __init__(self, finish: str | None) -> None:
        self.finish = finish
        self.sent: list[str] = []
        self.tasks = {"quantbeat.collect.daily_candles": _Task()}
        self.control = self

    def inspect(self, timeout: float) -> Any:
        return self

    def ping(self, timeout: float) -> list[Any]:
        if self.finish:
            with session_scope() as session:
                record_job_end(
                    session,
                    task_id=self.finish,
                    state="succeeded",
                    finished_at=dt.datetime.now(dt.UTC),
                    duration_ms=5.0,
                )
        return []

    def active(self) -> dict[str, Any]:
        return {}

    def reserved(self) -> dict[str, Any]:
        return {}

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, task_id: str = "") -> None:
        self.sent.append(task_id)


def test_a_run_that_ends_while_the_workers_are_asked_is_left_alone(sqlite_url):
    _start("finishes")
    _start("orphan")
    app = _App(finish="finishes")
    report = reap(app, grace=60)
    assert report.finished == 1
    assert _state("finishes") == "succeeded"  # its real end stands
    assert app.sent == ["orphan"]  # the real orphan is still requeued
    assert report.requeued == ["orphan"]


def test_without_the_race_every_orphan_is_requeued(sqlite_url):
    _start("a")
    _start("b")
    app = _App(finish=None)
    report = reap(app, grace=60)
    assert sorted(app.sent) == ["a", "b"]
    assert report.finished == 0


HOOKED = "quantbeat.test.reaper_hooked"


def _hooked_app() -> _App:
    app = _App(finish=None)
    app.tasks[HOOKED] = _Task()
    return app


def test_the_worker_lost_hook_writes_in_the_claims_transaction_and_publishes_after_commit(
    sqlite_url,
):
    """The task's hook sees the job run already given up in its own transaction, its write
    commits with the claim, and its after-commit action runs once the claim is visible to
    another session (a reader never sees the job given up while the run says running)."""
    seen: list[tuple[str, ...]] = []

    @on_worker_lost(HOOKED)
    def hook(session: Any, args: Any, kwargs: Any, outcome: str, reason: str) -> Any:
        own = session.execute(select(JobRun.state).where(JobRun.task_id == "h-1")).scalar_one()
        session.execute(
            update(JobRun).where(JobRun.task_id == "h-1").values(error=f"hook: {outcome}")
        )
        seen.append(("in transaction", own))
        return lambda: seen.append(("after commit", _state("h-1")))

    _start("h-1", name=HOOKED)
    app = _hooked_app()
    report = reap(app, grace=60)
    assert report.requeued == ["h-1"]
    assert seen == [("in transaction", "requeued"), ("after commit", "requeued")]
    with session_scope() as session:
        error = session.execute(select(JobRun.error).where(JobRun.task_id == "h-1")).scalar_one()
    assert error == "hook: requeued"


def test_a_failing_hook_is_rolled_back_and_the_run_is_still_given_up(sqlite_url):
    calls: list[str] = []

    @on_worker_lost(HOOKED)
    def hook(session: Any, args: Any, kwargs: Any, outcome: str, reason: str) -> Any:
        session.execute(update(JobRun).where(JobRun.task_id == "h-2").values(error="half"))
        calls.append(outcome)
        raise RuntimeError("hook broke")

    _start("h-2", name=HOOKED)
    app = _hooked_app()
    report = reap(app, grace=60)
    assert calls == ["requeued"]
    assert report.requeued == ["h-2"]
    assert app.sent == ["h-2"]
    assert _state("h-2") == "requeued"
    with session_scope() as session:
        error = session.execute(select(JobRun.error).where(JobRun.task_id == "h-2")).scalar_one()
    assert error is not None
    assert error != "half"  # the hook's write went with its savepoint
    assert error.startswith("reaped: ")

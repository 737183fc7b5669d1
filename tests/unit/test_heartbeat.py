"""Worker heartbeats (workers.heartbeat) and the dead-worker rule (db.heartbeats.dead_reason):
the pure parts. The real workers, database and reaper are in
tests/integration/test_heartbeats.py and fault scenario 1."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from db.heartbeats import dead_reason
from quant.errors import ValidationError
from quantbeat.infra.settings import Settings
from quantbeat.services.reaper import parse_dead_after
from workers.base import on_worker_lost, worker_lost_handler
from workers.heartbeat import Beater, heartbeats_enabled, pool_name

T0 = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)


def _reason(**changes: Any) -> str | None:
    values: dict[str, Any] = {
        "seen_at": T0,
        "stopped_at": None,
        "worker_started_at": T0 - dt.timedelta(hours=1),
        "run_started_at": T0 - dt.timedelta(minutes=5),
        "now": T0 + dt.timedelta(seconds=5),
        "dead_after": 30.0,
    }
    values.update(changes)
    return dead_reason(**values)


def test_a_worker_seen_recently_may_be_running_its_run():
    assert _reason() is None
    assert _reason(now=T0 + dt.timedelta(seconds=30)) is None  # exactly at the limit: alive


def test_a_worker_not_seen_for_longer_than_dead_after_is_dead():
    reason = _reason(now=T0 + dt.timedelta(seconds=31))
    assert reason is not None
    assert "no heartbeat for 31 s" in reason


def test_a_worker_that_stopped_cleanly_runs_nothing_any_more():
    reason = _reason(stopped_at=T0)
    assert reason is not None
    assert reason.startswith("stopped at")


def test_a_worker_restarted_under_the_same_name_after_the_run_started_is_another_incarnation():
    reason = _reason(worker_started_at=T0 - dt.timedelta(minutes=1))
    assert reason is not None
    assert "restarted" in reason
    # A run started by the current incarnation is its own.
    assert _reason(worker_started_at=T0 - dt.timedelta(minutes=6)) is None


def test_heartbeats_are_off_on_sqlite_and_with_interval_zero():
    assert heartbeats_enabled("postgresql+psycopg://h/db", 10)
    assert not heartbeats_enabled("postgresql+psycopg://h/db", 0)
    assert not heartbeats_enabled("sqlite:////tmp/x.sqlite", 10)


def test_pool_names():
    class TaskPool:
        pass

    TaskPool.__module__ = "celery.concurrency.prefork"
    assert pool_name(TaskPool) == "prefork"
    assert pool_name("celery.concurrency.thread:TaskPool") == "TaskPool"
    assert pool_name(None) is None


def test_a_failing_write_never_stops_the_beats_and_is_logged_once_per_outage():
    calls: list[dict[str, Any]] = []
    failing = threading.Event()
    failing.set()

    def write(**fields: Any) -> None:
        calls.append(fields)
        if failing.is_set():
            raise ConnectionError("database down")

    stopped: list[tuple[str, int]] = []
    beater = Beater(
        worker="w1@h",
        queues=["cpu"],
        pool="prefork",
        interval=0.05,
        write=write,
        stop=lambda *, worker, incarnation: stopped.append((worker, incarnation)),
    )
    beater.start()
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 3  # it kept trying through the failures
    assert beater.beats == 0
    failing.clear()
    while beater.beats < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert beater.beats >= 2  # recovered without a restart
    beater.stop()
    assert stopped == [("w1@h", beater.fields["incarnation"])]
    assert calls[0]["queues"] == ["cpu"]
    assert calls[0]["started_at"].tzinfo is not None
    seen = len(calls)
    time.sleep(0.2)
    assert len(calls) == seen  # no beat after stop
    beater.stop()  # twice: once
    assert len(stopped) == 1


def test_a_failing_stop_record_does_not_raise():
    def fail(**_: Any) -> None:
        raise ConnectionError("down")

    beater = Beater(worker="w@h", queues=[], pool=None, interval=60, write=fail, stop=fail)
    beater.start()
    beater.stop()  # logged, not raised


def test_dead_after_must_leave_room_for_a_late_heartbeat():
    with pytest.raises(ValueError, match="QUANTBEAT_WORKER_DEAD_AFTER=15 must be at least twice"):
        Settings(heartbeat_interval=10, worker_dead_after=15)
    Settings(heartbeat_interval=10, worker_dead_after=20)
    Settings(heartbeat_interval=0, worker_dead_after=5)  # heartbeats off: no constraint


@pytest.mark.parametrize("bad", [True, "30", float("nan"), 1, -5])
def test_bad_dead_after_is_refused_naming_the_value(bad: object):
    with pytest.raises(ValidationError, match="dead_after"):
        parse_dead_after(bad)


def test_dead_after_defaults_to_the_setting():
    assert parse_dead_after(None) is None
    assert parse_dead_after(45) == 45.0


def test_worker_lost_hooks_are_registered_per_task_name():
    seen: list[tuple[Any, ...]] = []

    @on_worker_lost("quantbeat.test.lost_hook")
    def hook(session: Any, args: Any, kwargs: Any, outcome: str, reason: str) -> None:
        seen.append((args, kwargs, outcome, reason))

    handler = worker_lost_handler("quantbeat.test.lost_hook")
    assert handler is hook
    assert worker_lost_handler("quantbeat.test.no_such_task") is None
    # The backtest task registers its hook with the tasks module.
    import tasks.backtests  # noqa: F401

    assert worker_lost_handler("quantbeat.backtest.run") is not None

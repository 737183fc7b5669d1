"""Worker heartbeats through real worker processes (prefork ``cpu``, threads ``io``), the
test PostgreSQL and a throwaway Redis broker (issue 16, item 8):

* every worker's main process records its heartbeat, and a warm shutdown marks it stopped;
* a whole prefork worker SIGKILLed mid-backtest, with the default 2 h visibility timeout (so
  only heartbeats can bring the run back): the reaper's frequent pass (the task of the beat
  entry ``reap-dead-workers``, sent here every 2 s as beat would every 15 s) requeues it once;
  ``backtest status`` says ``queued`` (re-queued, naming the dead worker), never ``running``;
  the run completes on a new worker, and the attempts history keeps both executions;
* ``backtest cancel`` of a run whose worker is dead ends it ``cancelled`` at once (exit 0),
  and the reaper then leaves it alone.

The workers beat every second and count as dead after 3 s (the test process, which reads
the same setting in ``backtest cancel``, too).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select, update

import tests.support.backtest_app  # noqa: F401  (the test strategies, for spec validation)
from db.backtests import claim, create_run, get_run
from db.engine import session_scope
from db.heartbeats import beat, list_heartbeats, prune_heartbeats
from db.jobs import list_attempts
from db.models import WorkerHeartbeat
from quantbeat.cli import main as cli
from quantbeat.infra.settings import reset_settings
from quantbeat.services import backtests
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import (
    backtest_row,
    eventually,
    job_run,
    small_kospi_history,
)
from tests.support.services import WorkerProcess, start_worker

pytestmark = pytest.mark.integration

DAY = "2026-11-20"
FIRST = "2026-05-04"
START = "2026-07-01"
INTERVAL, DEAD_AFTER = 1, 3
WORKER_ENV = {
    "QUANTBEAT_HEARTBEAT_INTERVAL": str(INTERVAL),
    "QUANTBEAT_WORKER_DEAD_AFTER": str(DEAD_AFTER),
}


# --- processes ----------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (a prefork worker's pool children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = data[data.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def _kill_whole(worker: WorkerProcess) -> None:
    """SIGKILL a worker's main process, then its pool children: nothing is acked, requeued
    or recorded."""
    children = _children(worker.proc.pid)
    os.kill(worker.proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    worker.proc.wait(10)


class Pool:
    """This module's workers on the throwaway broker."""

    def __init__(self, broker: ThrowawayRedis, client: Celery, tmp_dir: Path) -> None:
        self.broker, self.client, self.tmp_dir = broker, client, tmp_dir
        self.all: list[WorkerProcess] = []

    def start(self, queues: str, pool: str) -> WorkerProcess:
        worker = start_worker(
            "tests.support.worker_faults_app",
            queues=queues,
            tmp_dir=self.tmp_dir,
            env={
                "QUANTBEAT_BROKER_URL": self.broker.url(0),
                "QUANTBEAT_RESULT_BACKEND": self.broker.url(1),
                **WORKER_ENV,
            },
            pool=pool,
        )
        self.all.append(worker)
        worker.wait_ready(self.client)
        return worker

    def log(self) -> str:
        return "\n".join(f"--- {w.hostname}\n{w.log()}" for w in self.all)

    def stop(self) -> None:
        for worker in self.all:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.all:
            worker.stop()


@contextlib.contextmanager
def _beat_ticks(client: Celery, every: float = 2.0) -> Iterator[list[Any]]:
    """Send ``quantbeat.ops.reap_dead_workers`` every ``every`` seconds (as beat's entry
    ``reap-dead-workers`` does every 15 s) until the block ends; yields the sent results."""
    sent: list[Any] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            sent.append(client.send_task("quantbeat.ops.reap_dead_workers", expires=every * 5))
            stop.wait(every)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(10)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis(tmp_path_factory.mktemp("heartbeat-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def client(broker: ThrowawayRedis) -> Celery:
    app = Celery("heartbeat-client")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker.url(0), result_backend=broker.url(1))
    return app


@pytest.fixture(scope="module")
def dead_after_setting() -> Iterator[None]:
    """This process reads QUANTBEAT_WORKER_DEAD_AFTER like the workers (backtest cancel)."""
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    reset_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    found = small_kospi_history(database, FIRST, DAY)
    assert len(found) >= 6
    return found


@pytest.fixture
def pool(
    broker: ThrowawayRedis,
    client: Celery,
    names: list[str],
    dead_after_setting: None,
    tmp_path: Path,
) -> Iterator[Pool]:
    workers = Pool(broker, client, tmp_path)
    try:
        yield workers
    finally:
        workers.stop()


def _heartbeat(worker: str) -> WorkerHeartbeat | None:
    with session_scope() as session:
        row = session.get(WorkerHeartbeat, worker)
        if row is not None:
            session.expunge(row)
        return row


def _seen_after(instant: dt.datetime, row: WorkerHeartbeat | None) -> bool:
    return row is not None and row.seen_at > instant


def _slow_spec(names: list[str], sleep: float) -> dict[str, Any]:
    return {
        "strategy": "test_slow",
        "instruments": names,
        "start": START,
        "end": DAY,
        "params": {"sleep": sleep},
    }


def _running(run_id: str, timeout: float = 60.0) -> dict[str, str]:
    store = backtests.state_store()
    seen = eventually(
        lambda: store.read(run_id),
        lambda s: s.get("state") == "running" and "pid" in s and int(s.get("done", "0")) >= 1,
        timeout=timeout,
    )
    assert seen.get("state") == "running", seen
    return seen


# --- tests --------------------------------------------------------------------------------------


def test_workers_beat_from_their_main_process_and_a_warm_shutdown_marks_them_stopped(
    pool: Pool,
) -> None:
    cpu = pool.start("cpu", "prefork")
    io = pool.start("io", "threads")
    for worker, kind, queue in ((cpu, "prefork", "cpu"), (io, "thread", "io")):
        name = worker.hostname
        first = eventually(partial(_heartbeat, name), lambda r: r is not None, 30)
        assert first is not None, pool.log()
        assert first.pid == worker.proc.pid  # the main process, not a pool child
        assert first.pool == kind
        assert first.queues == [queue]
        assert first.stopped_at is None
        later = eventually(partial(_heartbeat, name), partial(_seen_after, first.seen_at), 30)
        assert later is not None
        assert later.seen_at > first.seen_at
        assert later.started_at == first.started_at  # one incarnation
    cpu.proc.terminate()
    assert cpu.proc.wait(60) == 0
    stopped = _heartbeat(cpu.hostname)
    assert stopped is not None
    assert stopped.stopped_at is not None, cpu.log()


def test_a_whole_worker_killed_mid_backtest_is_requeued_once_by_heartbeat_and_completes_elsewhere(
    pool: Pool, client: Celery, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Default visibility timeout (2 h): without heartbeats the run would say "running" for
    two hours."""
    pool.start("io", "threads")  # runs the reaper's pass
    victim = pool.start("cpu", "prefork")
    run_id = backtests.submit_backtest(_slow_spec(names[:6], 0.5), app=client)
    task_id = f"backtest-{run_id}"
    _running(run_id)
    _kill_whole(victim)
    killed_at = time.monotonic()
    with _beat_ticks(client):
        job = eventually(lambda: job_run(task_id), lambda j: j.state != "started", 90)
        assert job.state == "requeued", pool.log()
        detected = time.monotonic() - killed_at
        assert f"worker {victim.hostname} is dead: no heartbeat" in (job.error or "")
        # No cpu worker is alive: the run waits, re-queued, and says so. (The reaper claims
        # the job run first, then tells the backtest's hook, in its own transaction: the run's
        # state follows the job's within moments.)
        status = eventually(lambda: backtests.status(run_id), lambda s: s["state"] != "running", 10)
        assert status["state"] == "queued", status
        assert status["phase"].startswith(f"re-queued: worker {victim.hostname} is dead")
        assert cli.main(["backtest", "status", run_id]) == 0
        assert "running" not in capsys.readouterr().out
        time.sleep(3 * 2.0)  # more passes: requeued once, not again
        assert job_run(task_id).attempts == 1
        replacement = pool.start("cpu", "prefork")
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen.append(backtests.status(run_id))
            if seen[-1]["state"] in ("completed", "failed", "cancelled", "timed_out"):
                break
            time.sleep(0.2)
    final = seen[-1]
    recovered = time.monotonic() - killed_at
    assert final["state"] == "completed", (final, pool.log())
    # After detection the dead worker's execution never shows as running again.
    assert all(not (row["state"] == "running" and row["attempts"] < 2) for row in seen), seen
    assert cli.main(["backtest", "cancel", run_id]) == 5  # nothing to cancel: it completed
    assert "had already ended completed" in capsys.readouterr().err
    run = backtest_row(run_id)
    assert run.attempts == 2
    job = job_run(task_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert job.worker == replacement.hostname
    with session_scope() as session:
        executions = [(a.attempt, a.worker, a.state) for a in list_attempts(session, task_id)]
    assert executions == [(1, victim.hostname, "requeued"), (2, job.worker, "succeeded")]
    print(f"detected {detected:.1f} s, completed {recovered:.1f} s after the kill")


def test_cancel_of_a_run_whose_worker_is_dead_cancels_it_at_once(
    pool: Pool, client: Celery, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    victim = pool.start("cpu", "prefork")
    run_id = backtests.submit_backtest(_slow_spec(names[:6], 1.0), app=client)
    task_id = f"backtest-{run_id}"
    _running(run_id)
    _kill_whole(victim)
    # No reaper runs here: the run stays "started" on a worker whose heartbeat goes stale.
    time.sleep(DEAD_AFTER + 2 * INTERVAL)
    assert job_run(task_id).state == "started"

    code = cli.main(["backtest", "cancel", run_id, "--wait", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"run {run_id}: cancelled" in out
    run = backtest_row(run_id)
    assert run.state == "cancelled"
    assert f"worker {victim.hostname} is dead" in (run.error or "")
    assert backtests.status(run_id)["state"] == "cancelled"
    job = job_run(task_id)
    assert job.state == "cancelled"
    # The reaper's pass leaves it alone: nothing started on a dead worker any more.
    pool.start("io", "threads")
    report = client.send_task("quantbeat.ops.reap_dead_workers").get(timeout=60)
    assert task_id not in report["requeued"] + report["lost"], report
    assert job_run(task_id).state == "cancelled"
    assert cli.main(["backtest", "cancel", run_id]) == 0  # cancelled it stays
    assert f"run {run_id}: cancelled" in capsys.readouterr().out


def test_the_backtest_hook_marks_a_lost_run_failed_and_leaves_finished_runs_alone(
    database: str,
) -> None:
    """What the reaper calls for ``quantbeat.backtest.run`` (workers.base.on_worker_lost)."""
    run_id = uuid.uuid4().hex
    with session_scope() as session:
        create_run(session, run_id, strategy="test_slow", spec={}, total=2, origin="test")
    with session_scope() as session:
        assert claim(session, run_id) is not None  # running, as if a worker took it
    reason = "worker w@h is dead: no heartbeat for 40 s"
    with session_scope() as session:
        publish = backtests.on_worker_lost(session, [run_id], {}, "lost", reason)
        # The row changes in the caller's transaction: not committed yet.
        with session_scope() as other:
            assert get_run(other, run_id).state == "running"
    assert publish is not None
    status = backtests.status(run_id)
    assert status["state"] == "failed"
    assert "worker lost: worker w@h is dead" in status["error"]
    publish()
    assert backtests.state_store().read(run_id)["state"] == "failed"
    with session_scope() as session:  # a final run stays final
        assert backtests.on_worker_lost(session, [run_id], {}, "requeued", "late") is None
    assert backtests.status(run_id)["state"] == "failed"
    with session_scope() as session:  # ignored
        assert backtests.on_worker_lost(session, [42], None, "lost", "not a run id") is None


def test_heartbeat_rows_are_listed_newest_first(pool: Pool) -> None:
    worker = pool.start("io", "threads")
    eventually(lambda: _heartbeat(worker.hostname), lambda r: r is not None, 30)
    with session_scope() as session:
        rows = list_heartbeats(session)
        names = [r.worker for r in rows]
        seen = [r.seen_at for r in rows]
    assert worker.hostname in names
    assert seen == sorted(seen, reverse=True)
    with session_scope() as session:
        now = session.execute(select(WorkerHeartbeat.seen_at)).scalars().first()
    assert now is not None
    assert now.tzinfo is not None
    assert dt.datetime.now(dt.UTC) - now < dt.timedelta(minutes=5)


def test_heartbeats_of_workers_gone_for_a_week_are_pruned(database: str) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    with session_scope() as session:
        beat(
            session,
            worker="gone-for-a-week@h",
            host="h",
            pid=1,
            incarnation="x",
            pool="prefork",
            queues=["cpu"],
            started_at=old,
        )
    with session_scope() as session:
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.worker == "gone-for-a-week@h")
            .values(seen_at=old)
        )
    with session_scope() as session:
        assert prune_heartbeats(session, before=old + dt.timedelta(days=1)) == 1
    assert _heartbeat("gone-for-a-week@h") is None

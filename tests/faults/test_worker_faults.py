"""Fault scenarios 1, 2, 3, 9 and 10 of issue 9: workers killed (whole, or one pool child),
stopped with SIGTERM, timed out and cancelled mid-backtest, on real prefork ``cpu`` workers,
PostgreSQL and a throwaway Redis broker.

The workers (tests.support.worker_faults_app, prefork, 4 children each) share one broker: a
throwaway redis-server (db 0 broker, db 1 results; scenario 1's own workers use db 2/3).
The runs' live state (progress, the pid running them, the cancel flag) is in the shared test
Redis (QUANTBEAT_REDIS_URL), keyed by run id. The workers run with a 12 s visibility timeout
and time limits to match (soft 8 s, hard 9 s for every family and for backtests: 9 s + the
2 s longest retry delay < 12 s, as Settings demands) and sweep Redis' unacked messages every
second. Every task here ends well inside its limits, and every spec names its limits (the
client's defaults are an hour).

Scenario 1 (a whole worker SIGKILLed) runs on workers of its own with a one-hour visibility
timeout and default heartbeats (every 10 s, dead after 30 s): only the heartbeat-based reaper
pass (``quantbeat.ops.reap_dead_workers``, sent every 15 s as beat does) can bring its run
back.

The business rows are a run's ``backtest_runs`` row, its trades and its equity curve (one
row per session). The other tests share the module's workers and run in file order:
scenario 3 stops one with SIGTERM; a test run alone starts what it needs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.result import AsyncResult
from sqlalchemy import func, select

import tests.support.backtest_app  # noqa: F401  (the test strategies, for spec validation)
from db.engine import session_scope
from db.jobs import list_attempts
from db.models import BacktestEquity
from quantbeat.infra.settings import get_settings
from quantbeat.services import backtests
from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import (
    backtest_row,
    backtest_rows_stored,
    dead_letter,
    eventually,
    job_run,
    sessions_since,
    small_kospi_history,
)
from tests.support.services import WorkerProcess, start_worker
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 5, 4)
START = "2026-07-01"
#: Deliveries after which the workers dead-letter a message (the least Settings allows with
#: the tests' QUANTBEAT_MAX_RETRIES=3).
MAX_ATTEMPTS = 5
#: SIGKILLed children after which a message is dead-lettered (the default).
MAX_CHILD_KILLS = 2
VISIBILITY_TIMEOUT = 12
SOFT, HARD = 8, 9
FAMILIES = ("IO", "CPU", "AI", "BACKTEST")
WORKER_ENV = {
    "QUANTBEAT_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "QUANTBEAT_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    **{f"QUANTBEAT_{family}_SOFT_TIME_LIMIT": str(SOFT) for family in FAMILIES},
    **{f"QUANTBEAT_{family}_TIME_LIMIT": str(HARD) for family in FAMILIES},
}


# --- processes ----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process, from /proc; ``None`` if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = data[data.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def _children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``: a prefork worker's pool children."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.add(int(entry.name))
    return found


class Workers:
    """The module's prefork ``cpu`` workers, all consuming the throwaway broker (its
    databases ``db`` and ``db + 1``), started with ``env`` (default :data:`WORKER_ENV`)."""

    def __init__(
        self,
        broker: ThrowawayRedis,
        client: Celery,
        tmp_dir: Path,
        *,
        db: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.client = client
        self.tmp_dir = tmp_dir
        self.db = db
        self.env = WORKER_ENV if env is None else env
        self.all: list[WorkerProcess] = []

    def start(self, queues: str = "cpu", pool: str = "prefork") -> WorkerProcess:
        """Start one more worker (returns at once; :meth:`ready` waits for it)."""
        worker = start_worker(
            "tests.support.worker_faults_app",
            queues=queues,
            tmp_dir=self.tmp_dir,
            env={
                "QUANTBEAT_BROKER_URL": self.broker.url(self.db),
                "QUANTBEAT_RESULT_BACKEND": self.broker.url(self.db + 1),
                **self.env,
            },
            pool=pool,
        )
        self.all.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.all if w.proc.poll() is None]

    def ready(self) -> None:
        for worker in self.alive():
            worker.wait_ready(self.client)

    def ensure(self, count: int) -> None:
        """At least ``count`` workers running and answering ping."""
        while len(self.alive()) < count:
            self.start()
        self.ready()

    def owner_of(self, child: int) -> WorkerProcess:
        """The worker whose pool child ``child`` is."""
        stat = _stat(child)
        assert stat is not None, f"process {child} is gone"
        owners = [w for w in self.all if w.proc.pid == stat[1]]
        assert owners, f"process {child} (parent {stat[1]}) is no pool child of a test worker"
        return owners[0]

    def log(self) -> str:
        return "\n".join(f"--- {w.hostname}\n{w.log()}" for w in self.all)

    def stop(self) -> None:
        for worker in self.alive():
            worker.proc.terminate()  # all at once; stop() then waits for each
        for worker in self.all:
            worker.stop()


def _kill_whole(worker: WorkerProcess) -> None:
    """SIGKILL a worker's main process and its pool children, as a crashed host or a
    container's OOM kill would: nothing gets to ack, requeue or record anything. The main
    process first, so it cannot react to its children's deaths."""
    children = _children(worker.proc.pid)
    os.kill(worker.proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    worker.proc.wait(10)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis(tmp_path_factory.mktemp("worker-faults-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def client(broker: ThrowawayRedis) -> Celery:
    """A client of the workers' broker (the session's production app is left alone)."""
    app = Celery("worker-faults-client")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker.url(0), result_backend=broker.url(1))
    return app


@pytest.fixture(scope="module")
def workers(
    database: str, broker: ThrowawayRedis, client: Celery, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two workers, started at once (their start-up overlaps the history collection in
    ``names``)."""
    pool = Workers(broker, client, tmp_path_factory.mktemp("worker-faults"))
    pool.start()
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


#: Scenario 1's workers: a visibility timeout of an hour, so only heartbeats can bring a
#: killed worker's run back; heartbeats and the dead-worker limit at their defaults.
LONG_VISIBILITY_TIMEOUT = 3_600
#: Beat's entry reap-dead-workers sends its pass this often (seconds).
REAP_EVERY = 15.0


@pytest.fixture
def long_visibility(
    broker: ThrowawayRedis, names: list[str], tmp_path: Path
) -> Iterator[tuple[Workers, Celery]]:
    """Two prefork ``cpu`` workers and one threads ``io`` worker (it runs the reaper's
    pass) on the broker's databases 2/3, with a one-hour visibility timeout; and a client."""
    client = Celery("worker-faults-long-visibility")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=broker.url(2), result_backend=broker.url(3))
    env = {**WORKER_ENV, "QUANTBEAT_VISIBILITY_TIMEOUT": str(LONG_VISIBILITY_TIMEOUT)}
    env.pop("QUANTBEAT_HEARTBEAT_INTERVAL", None)
    env.pop("QUANTBEAT_WORKER_DEAD_AFTER", None)
    pool = Workers(broker, client, tmp_path, db=2, env=env)
    pool.start()
    pool.start()
    pool.start("io", "threads")
    try:
        pool.ready()
        yield pool, client
    finally:
        pool.stop()


@contextlib.contextmanager
def _reaper_ticks(client: Celery, every: float = REAP_EVERY) -> Iterator[None]:
    """Send ``quantbeat.ops.reap_dead_workers`` every ``every`` seconds until the block ends,
    as beat's entry ``reap-dead-workers`` does."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            client.send_task("quantbeat.ops.reap_dead_workers", expires=every)
            stop.wait(every)

    thread = threading.Thread(target=tick, name="reaper-ticks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture(scope="module")
def names(workers: Workers, database: str) -> list[str]:
    """About 140 sessions of simulated KOSPI candles for a 40-instrument universe (its KOSPI
    part: a dozen or more instruments); the workers are ready when it returns."""
    found = small_kospi_history(database, FIRST.isoformat(), DAY.isoformat())
    assert len(found) >= 12
    workers.ready()
    return found


# --- runs and rows ------------------------------------------------------------------------------


def _spec(names: list[str], strategy: str, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "instruments": names,
        "start": START,
        "end": DAY.isoformat(),
        "soft_time_limit": SOFT,
        "time_limit": HARD,
        **extra,
    }


def _slow_spec(names: list[str], sleep: float, **extra: Any) -> dict[str, Any]:
    """SMA-crossover signals that take ``sleep`` seconds per instrument."""
    return _spec(names, "test_slow", params={"sleep": sleep}, **extra)


def _submit_slow(client: Celery, names: list[str], sleep: float) -> str:
    return backtests.submit_backtest(_slow_spec(names, sleep), app=client)


def _duplicate_rows(run_id: str) -> int:
    """Business rows of the run beyond one result: equity rows beyond one per session, trade
    rows beyond the trades its summary counts."""
    run = backtest_row(run_id)
    trades, days = backtest_rows_stored(run_id)
    with session_scope() as session:
        distinct_days = session.execute(
            select(func.count(func.distinct(BacktestEquity.day))).where(
                BacktestEquity.run_id == run_id
            )
        ).scalar_one()
    extra = days - int(distinct_days)
    if run.summary is not None:
        extra += max(0, trades - run.summary["closed_trades"] - run.summary["open_trades"])
    return extra


def _assert_one_result(run_id: str, final: dict[str, Any]) -> None:
    """The run completed and its result is stored once: one equity row per session, its
    trades as counted in its summary."""
    assert final["state"] == "completed", final
    trades, days = backtest_rows_stored(run_id)
    assert days == sessions_since(START)
    assert trades == final["summary"]["closed_trades"] + final["summary"]["open_trades"]
    assert _duplicate_rows(run_id) == 0


def _running(run_id: str, done: int = 0, timeout: float = 30.0) -> dict[str, str]:
    """The run's live state once it is running with ``done`` instruments built."""
    store = backtests.state_store()
    seen = eventually(
        lambda: store.read(run_id),
        lambda s: s.get("state") == "running" and "pid" in s and int(s.get("done", "0")) >= done,
        timeout=timeout,
    )
    assert seen.get("state") == "running", seen
    return seen


def _copies_in_broker(broker: ThrowawayRedis, task_id: str, db: int = 0) -> int:
    """Copies of ``task_id``'s message left in the broker (database ``db``) — waiting in a
    ``cpu`` queue or delivered and unacknowledged — i.e. what Redis could still hand out
    (again)."""
    client = redis.Redis.from_url(broker.url(db))
    try:
        found = 0
        for key in client.scan_iter("cpu*"):
            if client.type(key) == b"list":
                messages = [json.loads(raw) for raw in client.lrange(key, 0, -1)]
                found += sum(m["headers"]["id"] == task_id for m in messages)
        for raw in client.hvals("unacked"):
            message = json.loads(raw)[0]
            found += message["headers"]["id"] == task_id
        return found
    finally:
        client.close()


def _kill_count(marker: str) -> int:
    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        return int(client.get(f"test:kill-child:{marker}") or 0)
    finally:
        client.close()


# --- scenarios ----------------------------------------------------------------------------------


def test_1_a_worker_killed_whole_mid_backtest_is_noticed_by_heartbeat_and_requeued_once(
    long_visibility: tuple[Workers, Celery],
    names: list[str],
    outcome: Callable[[Outcome], None],
):
    """SIGKILL of a whole worker, with a one-hour visibility timeout: its heartbeat stops, the
    reaper's pass (every 15 s) finds the run ``started`` on a worker silent for 30 s and
    requeues it once; the other worker runs it and stores one result, on attempt 2. After
    detection ``backtest status`` never shows the dead worker's execution as running, and
    the attempts history keeps both executions."""
    pool, client = long_visibility
    run_id = backtests.submit_backtest(_slow_spec(names[:6], 0.3), app=client)
    task_id = f"backtest-{run_id}"
    child = int(_running(run_id, done=2)["pid"])
    victim = pool.owner_of(child)
    _kill_whole(victim)
    killed_at = time.monotonic()
    seen: list[dict[str, Any]] = []
    detected: float | None = None
    with _reaper_ticks(client):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if detected is None and job_run(task_id).state != "started":
                detected = time.monotonic() - killed_at
            if detected is not None:
                seen.append(backtests.status(run_id))
                if seen[-1]["state"] in ("completed", "failed", "cancelled", "timed_out"):
                    break
            time.sleep(0.2)
    recovery = time.monotonic() - killed_at
    assert detected is not None, ("never detected", pool.log())
    final = seen[-1]
    assert final["state"] == "completed", (final, pool.log())
    _assert_one_result(run_id, final)
    # Once detected, the dead worker's execution (attempt 1) never shows as running.
    assert all(not (row["state"] == "running" and row["attempts"] < 2) for row in seen), seen
    run = backtest_row(run_id)
    assert run.attempts == 2
    job = job_run(task_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert job.worker != victim.hostname  # the second execution ran elsewhere
    with session_scope() as session:
        executions = [(a.worker, a.state, a.error) for a in list_attempts(session, task_id)]
    assert [(w, st) for w, st, _ in executions] == [
        (victim.hostname, "requeued"),
        (job.worker, "succeeded"),
    ]
    assert f"worker {victim.hostname} is dead: no heartbeat" in (executions[0][2] or "")
    # The dead worker's original message is still unacknowledged in Redis (handed out again
    # only after the hour); the requeued copy was consumed.
    assert _copies_in_broker(pool.broker, task_id, db=2) == 1
    outcome(
        Outcome(
            number=1,
            scenario="SIGKILL a whole cpu worker mid-backtest",
            sent=1,
            completed=int(run.state == "completed"),
            duplicates=_duplicate_rows(run_id),
            lost=int(run.state != "completed"),
            recovery_s=round(recovery, 1),
            notes=(
                f"noticed by heartbeat {detected:.0f} s after the kill (dead after 30 s, "
                f"reaper pass every {REAP_EVERY:.0f} s; visibility timeout "
                f"{LONG_VISIBILITY_TIMEOUT} s), requeued once, completed on attempt "
                f"{run.attempts} on the other worker; both executions in job_attempts"
            ),
        )
    )


def test_2_a_killed_pool_child_requeues_its_task_and_a_task_that_always_kills_it_is_dead_lettered(
    workers: Workers, names: list[str], client: Celery, outcome: Callable[[Outcome], None]
):
    """SIGKILL of one pool child: task_reject_on_worker_lost requeues the message at once and
    a new child runs it. A message that kills its child every time (as a task the OOM killer
    takes would) is dead-lettered ``worker_killed`` at its QUANTBEAT_MAX_CHILD_KILLS-th (2nd)
    kill, not run QUANTBEAT_MAX_ATTEMPTS times."""
    workers.ensure(1)
    marker = uuid.uuid4().hex
    poison = client.send_task("quantbeat.backtest.test_kill_child", args=[marker])
    run_id = backtests.submit_backtest(_slow_spec(names[:8], 0.3), app=client)
    pid = int(_running(run_id, done=2)["pid"])
    assert pid not in {w.proc.pid for w in workers.all}  # a pool child, not a worker
    owner = workers.owner_of(pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    final = backtests.wait(run_id, timeout=60)
    recovery = time.monotonic() - killed_at
    assert owner.proc.poll() is None  # the worker itself lives on
    _assert_one_result(run_id, final)
    run = backtest_row(run_id)
    assert run.attempts == 2
    # the run's row is final when the task stores its result; its job record a moment later,
    # when the task has returned
    job = eventually(lambda: job_run(f"backtest-{run_id}"), lambda r: r.state != "started")
    assert (job.state, job.attempts) == ("succeeded", 2)

    letter = eventually(lambda: dead_letter(poison.id), lambda found: found is not None, 60)
    assert letter is not None, workers.log()
    assert letter.reason == "worker_killed"
    executions = _kill_count(marker)
    assert executions == MAX_CHILD_KILLS  # it ran (and killed its child) exactly that often
    poisoned = job_run(poison.id)
    assert (poisoned.state, poisoned.attempts) == ("failed", MAX_CHILD_KILLS)
    assert poison.get(timeout=30, propagate=False) is not None
    assert poison.state == "FAILURE"
    for task_id in (poison.id, f"backtest-{run_id}"):
        # no endless loop; the main process acks a lost child's message from the pool's
        # result thread, which can trail the stored result by a moment
        copies = eventually(
            functools.partial(_copies_in_broker, workers.broker, task_id), lambda n: n == 0, 20
        )
        assert copies == 0
    outcome(
        Outcome(
            number=2,
            scenario="SIGKILL only the pool child",
            sent=2,
            completed=int(run.state == "completed") + int(letter is not None),
            duplicates=_duplicate_rows(run_id) + max(0, executions - MAX_CHILD_KILLS),
            lost=2 - int(run.state == "completed") - int(letter is not None),
            recovery_s=round(recovery, 1),
            notes=(
                f"requeued at once, run completed on attempt {run.attempts}; a task killing "
                f"its child every time ran {executions}× and was dead-lettered "
                f"({letter.reason}) on delivery {poisoned.attempts}"
            ),
        )
    )


def test_3_a_warm_shutdown_finishes_its_running_tasks_and_leaves_the_rest_to_other_workers(
    workers: Workers, names: list[str], client: Celery, outcome: Callable[[Outcome], None]
):
    """SIGTERM (warm shutdown) while a worker runs backtests: the worker takes no new message,
    finishes the runs it has, then exits; the others' messages run on the other worker. Every
    run completes once, on its first attempt."""
    workers.ensure(2)
    # More runs than two workers have pool children: some wait in the queue.
    ids = [_submit_slow(client, names[i : i + 2], 0.5) for i in range(10)]
    first = _running(ids[0])
    target = workers.owner_of(int(first["pid"]))
    store = backtests.state_store()
    children = {str(c) for c in _children(target.proc.pid)}
    live = {i: store.read(i) for i in ids}
    in_flight = [i for i, s in live.items() if s.get("state") == "running" and s["pid"] in children]
    target.proc.terminate()
    stopped_at = time.monotonic()
    assert target.proc.wait(30) == 0, target.log()  # a clean exit after its tasks finished
    finals = {i: backtests.wait(i, timeout=60) for i in ids}
    recovery = time.monotonic() - stopped_at
    for run_id, final in finals.items():
        _assert_one_result(run_id, final)
    runs = [backtest_row(i) for i in ids]
    assert [r.attempts for r in runs] == [1] * len(ids)  # none restarted
    jobs = {i: job_run(f"backtest-{i}") for i in ids}
    assert all(j.attempts == 1 for j in jobs.values())
    assert in_flight
    for run_id in in_flight:  # the runs it held finished there, during the shutdown
        assert jobs[run_id].worker == target.hostname
    assert any(j.worker != target.hostname for j in jobs.values())
    assert all(_copies_in_broker(workers.broker, f"backtest-{i}") == 0 for i in ids)
    completed = sum(r.state == "completed" for r in runs)
    duplicates = sum(_duplicate_rows(i) + r.attempts - 1 for i, r in zip(ids, runs, strict=True))
    outcome(
        Outcome(
            number=3,
            scenario="SIGTERM (warm shutdown) during a task",
            sent=len(ids),
            completed=completed,
            duplicates=duplicates,
            lost=len(ids) - completed,
            recovery_s=round(recovery, 1),
            notes=(
                f"{len(in_flight)} running runs finished before the worker exited; the rest "
                "ran on the other worker; all on attempt 1"
            ),
        )
    )


def test_9_an_endless_backtest_is_timed_out_by_the_soft_limit_and_the_hard_limit_replaces_the_child(
    workers: Workers, names: list[str], client: Celery, outcome: Callable[[Outcome], None]
):
    """An endless backtest: the soft limit ends it ``timed_out`` (nothing stored); one that
    ignores the soft limit is killed by the hard limit, recorded by the worker's main process
    (run and job ``timed_out``, dead letter), and a new pool child takes the dead one's place
    and serves the next task. A plain task past its soft limit is ``timed_out`` and
    dead-lettered too."""
    workers.ensure(1)
    soft_run = backtests.submit_backtest(
        _spec(names[:2], "test_endless", soft_time_limit=2, time_limit=4), app=client
    )
    hard_run = backtests.submit_backtest(
        _spec(names[:2], "test_stubborn", soft_time_limit=1, time_limit=3), app=client
    )
    sleeper = client.send_task(
        "quantbeat.backtest.test_sleep", args=[30], soft_time_limit=1, time_limit=HARD
    )
    killed = int(_running(hard_run)["pid"])
    owner = workers.owner_of(killed)
    before = _children(owner.proc.pid)

    with pytest.raises(TimeLimitExceeded):
        AsyncResult(f"backtest-{hard_run}", app=client).get(timeout=60)
    killed_at = time.monotonic()
    # The main process records it after marking the result failed: poll briefly.
    job = eventually(lambda: job_run(f"backtest-{hard_run}"), lambda r: r.state != "started")
    assert job.state == "timed_out"
    assert "hard time limit" in (job.error or "")
    letter = dead_letter(f"backtest-{hard_run}")
    assert letter is not None
    assert letter.reason == "hard_time_limit"
    hard = backtests.wait(hard_run, timeout=30)
    assert hard["state"] == "timed_out", hard
    assert "hard time limit" in (hard["error"] or "")
    assert backtest_rows_stored(hard_run) == (0, 0)

    soft = backtests.wait(soft_run, timeout=30)
    assert soft["state"] == "timed_out", soft
    assert "soft time limit" in (soft["error"] or "")
    assert backtest_rows_stored(soft_run) == (0, 0)
    with pytest.raises(SoftTimeLimitExceeded):
        sleeper.get(timeout=60)
    slept = job_run(sleeper.id)
    assert (slept.state, slept.attempts) == ("timed_out", 1)
    sleeper_letter = dead_letter(sleeper.id)
    assert sleeper_letter is not None
    assert sleeper_letter.reason == "timed_out"

    # The pool replaced the killed child, and the new child serves tasks.
    after = eventually(
        lambda: _children(owner.proc.pid),
        lambda found: killed not in found and len(found) == len(before),
        timeout=30,
    )
    assert killed not in after
    assert len(after) == len(before)
    fresh = after - before
    assert len(fresh) == 1
    served: set[int] = set()
    for _ in range(3):  # one task per pool child of every worker, until the new one served
        size = sum(len(_children(w.proc.pid)) for w in workers.alive())
        sent = [client.send_task("quantbeat.backtest.test_pid", args=[1.0]) for _ in range(size)]
        served |= {r.get(timeout=60)["pid"] for r in sent}
        if fresh & served:
            break
    assert fresh & served, (fresh, served)
    replaced = time.monotonic() - killed_at
    runs = [backtest_row(soft_run), backtest_row(hard_run)]
    timed_out = sum(r.state == "timed_out" for r in runs) + int(slept.state == "timed_out")
    outcome(
        Outcome(
            number=9,
            scenario="Endless backtest: soft and hard time limits",
            sent=3,
            completed=timed_out,
            duplicates=sum(r.attempts - 1 for r in runs) + slept.attempts - 1,
            lost=3 - timed_out,
            recovery_s=round(replaced, 1),
            notes=(
                "soft limit → run timed_out, nothing stored; hard limit killed the child → run "
                "timed_out and dead-lettered, a new child served the next task"
            ),
        )
    )


def test_10_a_run_cancelled_while_running_ends_cancelled_and_is_never_redelivered(
    workers: Workers, names: list[str], client: Celery, outcome: Callable[[Outcome], None]
):
    """Progress with an ETA while running; a cooperative cancel within 2 s; the run ends
    ``cancelled`` with nothing stored, its message is acknowledged (nothing left for Redis
    to redeliver) and it never runs again."""
    workers.ensure(1)
    run_id = backtests.submit_backtest(_slow_spec(names, 0.5), app=client)
    seen = eventually(
        lambda: backtests.status(run_id),
        lambda s: s["state"] == "running" and s["done"] >= 3,
        timeout=30,
    )
    assert seen["state"] == "running", seen
    assert 0.3 < seen["progress"] < 0.9
    assert seen["instruments"] == f"{seen['done']}/{len(names)}"
    assert seen["eta_seconds"] is not None
    assert seen["eta_seconds"] > 0
    asked = time.monotonic()
    state = backtests.cancel(run_id, wait=2.0, app=client)
    took = time.monotonic() - asked
    assert state == "cancelled", backtests.status(run_id)
    assert took <= 2.0
    # no partial result, and it is never redelivered or run again
    time.sleep(1.0)
    run = backtest_row(run_id)
    assert run.state == "cancelled"
    assert run.attempts == 1
    assert run.metrics is None
    assert run.summary is None
    assert backtest_rows_stored(run_id) == (0, 0)
    final = backtests.status(run_id)
    assert final["state"] == "cancelled"
    assert final["progress"] < 1.0
    job = eventually(lambda: job_run(f"backtest-{run_id}"), lambda r: r.state != "started")
    assert (job.state, job.attempts) == ("succeeded", 1)
    assert _copies_in_broker(workers.broker, f"backtest-{run_id}") == 0
    trades, days = backtest_rows_stored(run_id)
    outcome(
        Outcome(
            number=10,
            scenario="Cancel during a run",
            sent=1,
            completed=int(run.state == "cancelled"),
            duplicates=(run.attempts - 1) + (job.attempts - 1),
            lost=int(run.state != "cancelled"),
            recovery_s=None,
            notes=(
                f"cancelled {took:.1f} s after the request, at {run.done}/{run.total} "
                f"instruments; {trades + days} partial rows stored; attempts {run.attempts}"
            ),
        )
    )

"""Fault scenarios 4 and 5 of issue 9: the broker's Redis and the database go away while
collection tasks run, on throwaway servers (the shared PostgreSQL and Redis are never touched).

The collection tasks are the production ``quantbeat.collect.crypto_candles`` over the
SIMULATED crypto market, one task per hour (``start``/``end`` given), so every task has its
own business rows — ``intraday_candles``, unique on (instrument, interval, ts) — and the rows
each task must write are known in advance: the simulated market is deterministic, and the
test computes them from the same source (:func:`expected_rows`).

Scenario 5 spends most of its time waiting out a 30 s database outage, so it runs in a
background thread (the ``postgres_outage`` fixture, started by whichever of the two tests
comes first) while scenario 4 runs in the foreground; its own test waits for it and checks
what it measured.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from quantbeat.infra.settings import Settings
from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.services import WorkerProcess, start_worker
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

TASK = "quantbeat.collect.crypto_candles"
Rows = Counter[tuple[str, dt.datetime]]


# --- helpers ----------------------------------------------------------------------------------


def hours(first: dt.datetime, count: int) -> list[dt.datetime]:
    return [first + dt.timedelta(hours=i) for i in range(count)]


def task_kwargs(hour: dt.datetime, interval: str, tickers: list[str]) -> dict[str, Any]:
    """One collection task: the bars of ``interval`` that start within ``hour``."""
    end = hour + dt.timedelta(hours=1)
    return {
        "interval": interval,
        "start": hour.isoformat(),
        "end": end.isoformat(),
        "tickers": tickers,
    }


def expected_rows(first: dt.datetime, count: int, interval: str, tickers: list[str]) -> Rows:
    """The (ticker, bar start) keys the tasks over ``count`` hours from ``first`` must store,
    from the simulated market the worker uses (same seed; a bar depends neither on the range
    it was requested with nor on the other tickers)."""
    from quant.market.simulated_crypto import SimulatedCrypto

    frame = SimulatedCrypto(seed=42).intraday_candles(
        first, first + dt.timedelta(hours=count), interval, tickers=tickers
    )
    return Counter(
        (str(t), ts.to_pydatetime()) for t, ts in zip(frame["ticker"], frame["ts"], strict=True)
    )


def stored_rows(engine: Engine, interval: str) -> Rows:
    """How many rows the database holds per (ticker, bar start) of ``interval``."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT i.ticker, c.ts, count(*) FROM intraday_candles c "
                "JOIN instruments i ON i.id = c.instrument_id "
                "WHERE i.market = 'UPBIT' AND c.interval = :interval GROUP BY i.ticker, c.ts"
            ),
            {"interval": interval},
        ).all()
    return Counter({(t, ts.astimezone(dt.UTC)): n for t, ts, n in found})


def rewritten_rows(engine: Engine, interval: str) -> int:
    """Rows updated after their insert: an upsert rewrites a row only when a value changed,
    so a task that ran twice over the same data leaves ``updated_at == created_at``."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM intraday_candles "
                    "WHERE interval = :i AND updated_at <> created_at"
                ),
                {"i": interval},
            ).scalar_one()
        )


def row_count(engine: Engine, interval: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM intraday_candles WHERE interval = :i"), {"i": interval}
            ).scalar_one()
        )


def job_runs(engine: Engine, prefix: str) -> dict[str, tuple[str, int, int]]:
    """``task_id -> (state, attempts, retries)`` of the job runs whose id starts ``prefix``."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT task_id, state, attempts, retries FROM job_runs WHERE task_id LIKE :p"),
            {"p": f"{prefix}%"},
        ).all()
    return {task_id: (state, attempts, retries) for task_id, state, attempts, retries in found}


def first_start_after(engine: Engine, prefix: str, moment: dt.datetime) -> dt.datetime:
    """When the first execution of a ``prefix`` task after ``moment`` started."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT min(started_at) FROM job_runs WHERE task_id LIKE :p AND started_at > :m"),
            {"p": f"{prefix}%", "m": moment},
        ).scalar_one()
    assert found is not None, f"no {prefix}* task started after {moment}"
    return found  # type: ignore[no-any-return]


def dead_letters(engine: Engine, prefix: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM dead_letters WHERE task_id LIKE :p"),
                {"p": f"{prefix}%"},
            ).scalar_one()
        )


def compare(expected: Rows, stored: Rows) -> tuple[int, int, int]:
    """``(lost, duplicates, unexpected)``: expected rows missing, extra copies of a business
    key, rows no task should have written."""
    lost = sum(1 for key in expected if stored[key] == 0)
    duplicates = sum(n - 1 for n in stored.values() if n > 1)
    unexpected = sum(1 for key in stored if key not in expected)
    return lost, duplicates, unexpected


def per_task(expected: Rows, stored: Rows) -> tuple[int, int]:
    """``(complete, partial)``: tasks (hours) all of whose rows are stored, and tasks some but
    not all of whose rows are (a task writes its rows in one transaction: never partial)."""
    wanted: Counter[dt.datetime] = Counter()
    present: Counter[dt.datetime] = Counter()
    for ticker, ts in expected:
        hour = ts.replace(minute=0)
        wanted[hour] += 1
        present[hour] += 1 if stored[(ticker, ts)] else 0
    complete = sum(1 for hour, n in wanted.items() if present[hour] == n)
    partial = sum(1 for hour, n in wanted.items() if 0 < present[hour] < n)
    return complete, partial


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    log: Callable[[], str],
    status: Callable[[], object] | None = None,
) -> None:
    """Poll ``check`` every 0.2 s; on time-out fail with ``status()`` and the worker log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    shown = f" ({status()})" if status is not None else ""
    raise AssertionError(f"{what} not reached within {timeout} s{shown}; worker log:\n{log()}")


def client_for(server: ThrowawayRedis) -> Celery:
    client = Celery("fault-client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=server.url(0), result_backend=server.url(1))
    return client


def send_all(client: Celery, ids: list[str], kwargs_list: list[dict[str, Any]]) -> None:
    """Publish one task per kwargs over one connection."""
    with client.producer_or_acquire() as producer:
        for task_id, kwargs in zip(ids, kwargs_list, strict=True):
            client.send_task(TASK, kwargs=kwargs, task_id=task_id, producer=producer)


def visibility_floor() -> int:
    """The smallest visibility timeout settings accept."""
    for constraint in Settings.model_fields["visibility_timeout"].metadata:
        floor = getattr(constraint, "ge", None)
        if floor is not None:
            return int(floor)
    return 1


def short_limits_env(visibility: int) -> dict[str, str]:
    """A visibility timeout of ``visibility`` s, with time limits and retry cap small enough
    for settings to accept it (they refuse one below the longest hard limit plus the cap)."""
    env = {"QUANTBEAT_VISIBILITY_TIMEOUT": str(visibility), "QUANTBEAT_RETRY_BACKOFF_MAX": "2"}
    for family in ("IO", "CPU", "AI", "BACKTEST"):
        env[f"QUANTBEAT_{family}_SOFT_TIME_LIMIT"] = "4"
        env[f"QUANTBEAT_{family}_TIME_LIMIT"] = "5"
    return env


# --- scenario 5, run in the background: PostgreSQL stopped for 30 s ---------------------------

S5_TASKS = 50
S5_AFTER_RESTART = 8
S5_TICKERS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]
S5_FIRST_HOUR = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
S5_OUTAGE_S = 30.0
#: Enough retries to outlast the outage: backoff 1·2ⁿ s with equal jitter, capped at 4 s,
#: waits at least 0.5 + 1 + 2 + 2·17 = 37.5 s over 20 retries.
RETRY_BASE_S, RETRY_CAP_S = 1, 4
S5_ENV = {
    "QUANTBEAT_RETRY_BACKOFF_BASE": str(RETRY_BASE_S),
    "QUANTBEAT_RETRY_BACKOFF_MAX": str(RETRY_CAP_S),
    "QUANTBEAT_MAX_RETRIES": "20",
    "QUANTBEAT_MAX_ATTEMPTS": "25",
}


@dataclass
class OutageResult:
    """What scenario 5 measured (filled in by :class:`PostgresOutage`)."""

    ids: list[str] = field(default_factory=list)
    done_at_stop: int = 0
    snapshots: int = 0
    partial_seen: int = 0
    runs: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    #: task id -> [(retry number, countdown s)] from the worker's ``task.retry`` lines
    countdowns: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    dead_letters: int = 0
    #: job runs not "succeeded" once every task had completed; how many the reaper requeued;
    #: how many ends its housekeeping replayed from the spool (written there while PostgreSQL
    #: was down); stale runs neither requeued nor recovered from the spool
    stale_runs: int = 0
    reaped: int = 0
    spooled: int = 0
    left_stale: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    rewritten: int = 0
    recovery_s: float = 0.0
    after_restart_ids: list[str] = field(default_factory=list)
    after_restart_results: list[dict[str, Any]] = field(default_factory=list)
    after_restart_warnings: list[str] = field(default_factory=list)


class PostgresOutage:
    """Scenario 5's timeline, in a thread: a throwaway PostgreSQL (migrated) and Redis, a
    prefork ``io`` worker on them; collection tasks are published and PostgreSQL is stopped
    (``pg_ctl stop -m fast``) once the first of them are stored, kept down 30 s and started
    again; then, once everything completed, restarted once more and new tasks sent."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.result = OutageResult()
        self.error: str | None = None
        self.worker_log = ""
        self._thread = threading.Thread(target=self._main, name="postgres-outage", daemon=True)

    def start(self) -> PostgresOutage:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wait(self, timeout: float) -> OutageResult:
        """The measurements, once the timeline has run.

        Raises:
            AssertionError: it failed (with the traceback and the worker log), or is still
                running after ``timeout`` s.
        """
        self.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"scenario 5 still running after {timeout} s")
        if self.error is not None:
            raise AssertionError(
                f"scenario 5 failed:\n{self.error}\nworker log:\n{self.worker_log}"
            )
        return self.result

    def _main(self) -> None:
        server = pg = worker = None
        try:
            server = ThrowawayRedis(self.workdir / "redis").start()
            pg = ThrowawayPostgres(dbname="quantbeat_outage").start()
            pg.migrate()
            env = {
                "QUANTBEAT_DATABASE_URL": pg.url(),
                "QUANTBEAT_BROKER_URL": server.url(0),
                "QUANTBEAT_RESULT_BACKEND": server.url(1),
                "QUANTBEAT_REDIS_URL": server.url(2),
                **S5_ENV,
            }
            worker = start_worker(
                "workers.app", queues="io", tmp_dir=self.workdir, env=env, pool="prefork"
            )
            self._timeline(pg, server, worker)
        except BaseException:
            self.error = traceback.format_exc()
        finally:
            if worker is not None:
                worker.stop()
                self.worker_log = worker.log()
            if pg is not None:
                pg.cleanup()
            if server is not None:
                server.stop()

    def _timeline(
        self, pg: ThrowawayPostgres, server: ThrowawayRedis, worker: WorkerProcess
    ) -> None:
        from db.engine import create_engine_for

        r = self.result
        engine = create_engine_for(pg.url(), pool_size=2, max_overflow=0)
        client = client_for(server)
        worker.wait_ready(client)
        batch = hours(S5_FIRST_HOUR, S5_TASKS + S5_AFTER_RESTART)
        expected = expected_rows(S5_FIRST_HOUR, S5_TASKS, "1m", S5_TICKERS)
        prefix = f"f5-{uuid.uuid4().hex[:6]}-"
        ids = [f"{prefix}{i:04d}" for i in range(S5_TASKS)]

        def snapshot() -> int:
            complete, partial = per_task(expected, stored_rows(engine, "1m"))
            r.snapshots += 1
            r.partial_seen += partial
            return complete

        send_all(client, ids, [task_kwargs(h, "1m", S5_TICKERS) for h in batch[:S5_TASKS]])
        r.ids = ids
        wait_until(lambda: snapshot() >= 1, 60, "first task stored", worker.log)
        pg.stop("fast")  # every session is disconnected, running transactions abort
        time.sleep(S5_OUTAGE_S)
        pg.start()
        back = time.monotonic()
        r.done_at_stop = snapshot()  # nothing could commit while it was down

        def states() -> Counter[str]:
            return Counter(state for state, _, _ in job_runs(engine, prefix).values())

        def results() -> Counter[str]:
            return Counter(client.AsyncResult(i).state for i in ids)

        # Complete: every task's rows stored and its result SUCCESS (the results live in Redis,
        # which stayed up).
        wait_until(
            lambda: snapshot() == S5_TASKS and results()["SUCCESS"] == S5_TASKS,
            60,
            "every task completed",
            worker.log,
            lambda: f"tasks stored {snapshot()}, results {dict(results())}",
        )
        r.recovery_s = time.monotonic() - back
        # A task that committed its rows just before the stop could not record its end in
        # job_runs: its run stays "started". The reaper (every 5 min in production, here one
        # pass with a 10 s grace) requeues it; the re-run changes no row and records success.
        r.stale_runs = sum(
            1 for state, _, _ in job_runs(engine, prefix).values() if state != "succeeded"
        )
        if r.stale_runs:
            report = client.send_task("quantbeat.ops.reap", kwargs={"grace": 10}).get(timeout=60)
            r.reaped = len(report["requeued"])
            r.spooled = int(report["spool"]["replayed"])
            r.left_stale = sum(
                1
                for task_id, (state, _, _) in job_runs(engine, prefix).items()
                if state == "started" and task_id not in report["requeued"]
            )
            wait_until(
                lambda: states()["succeeded"] == S5_TASKS,
                60,
                "every job run succeeded",
                worker.log,
                lambda: f"job runs {dict(states())}, reaper {report}",
            )
        r.runs = job_runs(engine, prefix)
        r.dead_letters = dead_letters(engine, prefix)
        for line in worker.json_lines():
            if line.get("event") == "task.retry" and str(line.get("task_id")).startswith(prefix):
                retry = (int(line["retries"]), float(line["countdown_s"]))
                r.countdowns.setdefault(line["task_id"], []).append(retry)

        # A second restart while the worker idles: its pooled connections are all dead now.
        pg.stop("fast")
        pg.start()
        seen = len(worker.json_lines())
        after = [f"{prefix}after-{i}" for i in range(S5_AFTER_RESTART)]
        send_all(client, after, [task_kwargs(h, "1m", S5_TICKERS) for h in batch[S5_TASKS:]])
        r.after_restart_ids = after
        r.after_restart_results = [client.AsyncResult(i).get(timeout=30) for i in after]
        r.after_restart_warnings = [
            f"{line.get('event')}: {line.get('error')}"
            for line in worker.json_lines()[seen:]
            if line.get("level") in ("warning", "error", "critical")
        ]
        r.runs.update(job_runs(engine, f"{prefix}after-"))

        everything = expected_rows(S5_FIRST_HOUR, len(batch), "1m", S5_TICKERS)
        r.lost, r.duplicates, r.unexpected = compare(everything, stored_rows(engine, "1m"))
        r.rewritten = rewritten_rows(engine, "1m")
        engine.dispose()


S5_TEST = "test_postgres_stopped_for_30_s_during_collection"


@pytest.fixture(scope="module")
def postgres_outage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresOutage | None]:
    """Scenario 5, started in the background at the first test that asks for it — if its
    test is selected at all (``None`` otherwise). Its test reports its failures."""
    if not any(item.name == S5_TEST for item in request.session.items):
        yield None
        return
    outage = PostgresOutage(tmp_path_factory.mktemp("postgres-outage")).start()
    yield outage
    outage.join(240)


# --- scenario 4: Redis (AOF) killed and restarted under 1,000 collection tasks ----------------

S4_TASKS = 1_000
S4_TICKERS = ["KRW-BTC", "KRW-ETH"]
S4_FIRST_HOUR = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
S4_WORKERS = 2
#: Kill Redis once this fraction of the tasks' rows is stored: well inside the run.
S4_KILL_AT = 0.25
#: How long Redis stays down.
S4_OUTAGE_S = 2.0


def test_redis_killed_and_restarted_with_1000_tasks_in_flight(
    clean_db: str,
    tmp_path: Path,
    outcome: Callable[[Outcome], None],
    postgres_outage: PostgresOutage | None,  # only so that scenario 5 overlaps this test
) -> None:
    """Scenario 4. Redis runs with AOF and ``appendfsync always``, as broker, result backend
    and shared state; 1,000 collection tasks are queued for two ``io`` workers; Redis is
    SIGKILLed while they consume them and restarted on the same port and data directory.
    Every queued message survives (each publish returned after its fsync), the workers
    reconnect by themselves, messages whose acknowledgement was lost come back after the
    visibility timeout and re-run without changing a row. A message being fetched at the
    instant of the kill can vanish (kombu pops, then records it as unacknowledged): the test
    counts those, re-sends them and reports them. Every business row exists exactly once and
    a task sent after the restart is consumed."""
    from db.engine import get_engine

    engine = get_engine(clean_db)
    visibility = max(10, visibility_floor())
    all_hours = hours(S4_FIRST_HOUR, S4_TASKS + 1)
    expected = expected_rows(S4_FIRST_HOUR, S4_TASKS + 1, "60m", S4_TICKERS)
    batch_expected = expected_rows(S4_FIRST_HOUR, S4_TASKS, "60m", S4_TICKERS)
    prefix = f"f4-{uuid.uuid4().hex[:6]}-"
    ids = [f"{prefix}{i:04d}" for i in range(S4_TASKS)]

    server = ThrowawayRedis(tmp_path / "redis", aof=True).start()
    workers: list[WorkerProcess] = []
    try:
        env = {
            "QUANTBEAT_BROKER_URL": server.url(0),
            "QUANTBEAT_RESULT_BACKEND": server.url(1),
            "QUANTBEAT_REDIS_URL": server.url(2),
            **short_limits_env(visibility),
        }
        workers = [
            start_worker("tests.faults.broker_restart_app", queues="io", tmp_dir=tmp_path, env=env)
            for _ in range(S4_WORKERS)
        ]

        def logs() -> str:
            return "\n".join(w.log() for w in workers)

        client = client_for(server)
        for w in workers:
            w.wait_ready(client)

        send_all(client, ids, [task_kwargs(h, "60m", S4_TICKERS) for h in all_hours[:S4_TASKS]])
        kill_at = int(sum(batch_expected.values()) * S4_KILL_AT)
        wait_until(lambda: row_count(engine, "60m") >= kill_at, 120, "first rows stored", logs)
        server.kill()
        killed, killed_at = time.monotonic(), dt.datetime.now(dt.UTC)
        stored_at_kill = row_count(engine, "60m")
        time.sleep(S4_OUTAGE_S)
        server.start()  # same port, same data directory: the AOF is replayed
        restarted_at = dt.datetime.now(dt.UTC)

        broker = redis.Redis.from_url(server.url(0))
        in_redis_after_restart = int(broker.llen("io")) + int(broker.hlen("unacked"))
        # Every message delivered before the kill whose ack was lost comes back after the
        # visibility timeout; once nothing is queued or unacknowledged, every message Redis
        # still had has run (acks are late: a message is acked after its task finished).
        wait_until(
            lambda: broker.llen("io") == 0 and broker.hlen("unacked") == 0,
            120 + 2 * visibility,
            "queue and unacknowledged messages drained",
            logs,
            lambda: f"queued {broker.llen('io')}, unacknowledged {broker.hlen('unacked')}",
        )
        # A message a worker was fetching at the kill (BRPOP already applied and persisted,
        # the reply or the worker's "unacked" record never made it) is gone from Redis
        # without having run: kombu's Redis transport pops before it records. The client
        # finds those — no job run at all — and sends them again, as the next incremental
        # collection would.
        ran = job_runs(engine, prefix)
        vanished = [task_id for task_id in ids if task_id not in ran]
        send_all(
            client,
            vanished,
            [task_kwargs(all_hours[ids.index(task_id)], "60m", S4_TICKERS) for task_id in vanished],
        )
        for task_id in vanished:
            client.AsyncResult(task_id).get(timeout=60)
        missing = compare(batch_expected, stored_rows(engine, "60m"))[0]
        recovery_s = time.monotonic() - killed

        # A task sent after the restart is consumed.
        new = client.send_task(
            TASK, kwargs=task_kwargs(all_hours[-1], "60m", S4_TICKERS), task_id=f"{prefix}new"
        )
        summary = new.get(timeout=30)
        assert summary["candles"]["inserted"] == len(S4_TICKERS), summary
        broker.close()
        runs = job_runs(engine, prefix)
        stored = stored_rows(engine, "60m")
        rewritten = rewritten_rows(engine, "60m")
        resumed_s = (first_start_after(engine, prefix, restarted_at) - killed_at).total_seconds()
    finally:
        for w in workers:
            w.stop()
        server.stop()

    lost, duplicates, unexpected = compare(expected, stored)
    succeeded = sum(1 for task_id in ids if runs.get(task_id, ("",))[0] == "succeeded")
    ran_twice = sum(1 for task_id in ids if task_id in runs and runs[task_id][1] > 1)
    total = sum(batch_expected.values())
    outcome(
        Outcome(
            number=4,
            scenario="Redis (AOF) killed and restarted under collection load",
            sent=len(ids),
            completed=succeeded,
            duplicates=duplicates,
            lost=lost,
            recovery_s=round(recovery_s, 1),
            notes=(
                f"SIGKILL at {stored_at_kill:,}/{total:,} rows, down {S4_OUTAGE_S:.0f} s, "
                f"consuming again {resumed_s:.1f} s after the kill; "
                f"{in_redis_after_restart} messages back from the AOF; {ran_twice} tasks ran "
                f"twice (ack lost), {rewritten} rows rewritten; {len(vanished)} message(s) "
                f"popped at the kill and never delivered, re-sent by the client; "
                f"visibility timeout {visibility} s"
            ),
        )
    )
    assert missing == 0, f"{missing} rows missing once everything had run"
    assert lost == 0, f"{lost} rows missing"
    assert duplicates == 0, f"{duplicates} rows stored twice"
    assert unexpected == 0, f"{unexpected} rows no task should have written"
    assert rewritten == 0, f"{rewritten} rows were written twice"
    assert succeeded == len(ids), Counter(state for state, _, _ in runs.values())
    # Only a fetch in progress at the kill can vanish: at most one per worker connection.
    assert len(vanished) <= S4_WORKERS, vanished
    assert 0 < stored_at_kill < total, "Redis was not killed mid-run"
    assert dead_letters(engine, prefix) == 0


# --- scenario 5: the checks ----------------------------------------------------------------------


def test_postgres_stopped_for_30_s_during_collection(
    postgres_outage: PostgresOutage | None, outcome: Callable[[Outcome], None]
) -> None:
    """Scenario 5. PostgreSQL stops (fast shutdown: sessions killed, open transactions
    aborted) while collection tasks run, and stays down 30 s. Tasks retry with backoff
    (increasing countdowns up to the cap), no task's rows are ever partly stored, all complete
    after it returns, exactly once. After a second restart, the very first query of each new
    task succeeds: pooled connections are pre-pinged and replaced (no retry, no warning)."""
    assert postgres_outage is not None
    r = postgres_outage.wait(240)
    succeeded = sum(1 for task_id in r.ids if r.runs.get(task_id, ("",))[0] == "succeeded")
    retried = {task_id: c for task_id, c in r.countdowns.items() if c}
    outcome(
        Outcome(
            number=5,
            scenario="PostgreSQL stopped for 30 s during collection",
            sent=len(r.ids),
            completed=succeeded,
            duplicates=r.duplicates,
            lost=r.lost,
            recovery_s=round(r.recovery_s, 1),
            notes=(
                f"{r.done_at_stop}/{len(r.ids)} tasks stored at the stop; {len(retried)} retried "
                f"(up to {max((len(c) for c in retried.values()), default=0)} times, backoff "
                f"{RETRY_BASE_S}·2ⁿ s capped at {RETRY_CAP_S} s); {r.partial_seen} partial "
                f"tasks in {r.snapshots} snapshots; {r.stale_runs} job run(s) left 'started' "
                f"(end not recorded), {r.reaped} requeued by the reaper, {r.spooled} end(s) "
                f"replayed from the spool; after a 2nd restart "
                f"{len(r.after_restart_results)}/{S5_AFTER_RESTART} new tasks succeeded first try"
            ),
        )
    )
    assert r.lost == 0, f"{r.lost} rows missing"
    assert r.duplicates == 0, f"{r.duplicates} rows stored twice"
    assert r.unexpected == 0, f"{r.unexpected} rows no task should have written"
    assert r.rewritten == 0, f"{r.rewritten} rows were written twice"
    assert r.partial_seen == 0, f"{r.partial_seen} partly stored tasks seen"
    assert succeeded == len(r.ids), Counter(state for state, _, _ in r.runs.values())
    assert r.dead_letters == 0
    # each stale run is recovered: its end replayed from the spool, or requeued by the reaper
    assert r.left_stale == 0, "the reaper left a stale job run"
    assert r.reaped <= r.stale_runs
    assert r.done_at_stop < len(r.ids), "every task finished before PostgreSQL stopped"
    assert retried, "no task retried during the outage"
    assert any(r.runs[task_id][2] > 0 for task_id in r.ids), "job_runs show no retries"
    for task_id, countdowns in retried.items():
        # Retry n waits a draw from [step/2, step], step = min(cap, base·2ⁿ⁻¹) ("equal jitter").
        for n, countdown in countdowns:
            step = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (n - 1))
            assert step / 2 - 0.01 <= countdown <= step + 0.01, (task_id, countdowns)
    # Retried again and again through the outage, the delay grew to the cap.
    longest = max(retried.values(), key=len)
    assert [n for n, _ in longest] == list(range(1, len(longest) + 1)), longest
    assert min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (len(longest) - 1)) == RETRY_CAP_S, longest
    # After the second restart: first try, no retry, no warning.
    for task_id in r.after_restart_ids:
        assert r.runs[task_id] == ("succeeded", 1, 0), (task_id, r.runs.get(task_id))
    assert all(res["candles"]["inserted"] > 0 for res in r.after_restart_results)
    assert r.after_restart_warnings == [], r.after_restart_warnings

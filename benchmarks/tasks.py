"""Task overhead (issue 21, item 5): no-op tasks through quantbeat's base task vs bare Celery,
end to end, on the same broker, result backend and pool.

Three no-op tasks live in one benchmark-only worker app (``benchmarks/_tasks_app.py``, built
on :mod:`workers.app`: the same configuration, consumer, events and signals), so the task
class is the only difference:

* ``bench.bare_noop`` — Celery's default ``Task`` (the reference);
* ``quantbeat.bench.noop`` — :class:`workers.base.QuantbeatTask`: per execution the
  ``job_runs``/``job_attempts`` start (with the lost-run check) and end writes — on PostgreSQL
  two statements, one round trip each (:class:`db.jobs.DirectHistory`) — masking, the size
  check, argument binding, the ``job`` log line;
* ``quantbeat.bench.noop_no_history`` — the same base with its history writes removed
  (reported, to split the overhead between the history writes and the rest).

Each run sends N tasks (default 2,000) to the ``cpu`` queue and waits for every result
(Redis result backend); tasks/s = N ÷ (first send → last result). Kinds alternate within a
run, best of 3 runs each, on a worker with the ``cpu`` worker's pool: prefork × 2 (the
project's ``worker_max_tasks_per_child`` applies to both kinds); then the same on threads × 2.

Then a profile of where the base task's extra time goes, in this process (``Task.apply``:
the same ``__call__``, no broker): time per call of each kind, the time of each history
step, the server round trips per task (every psycopg wait) and what still goes through
SQLAlchemy (statements, transactions, pool checkouts — each checkout pre-pings), beside the
floors of one transaction (``session_scope`` with ``SELECT 1``) and one bare psycopg round
trip.

Goal: ``base_task_vs_bare`` = base tasks/s ÷ bare tasks/s on prefork × 2, measured in the same
run, ≥ 0.70.

Needs PostgreSQL (``QUANTBEAT_BENCH_DATABASE_URL``, default database ``quantbeat_bench_tasks``;
migrated, its job history truncated at start) and Redis (``QUANTBEAT_BENCH_REDIS_URL``,
default ``redis://127.0.0.1:6379/10``, flushed). About 1.5 minutes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Not this script's folder: there "tasks" would be this file, not the tasks package that
# workers.app includes.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks._support import (  # noqa: E402
    ensure_database,
    start_worker,
    stop_worker,
    use_services,
)

DB_URL, _REDIS = use_services("quantbeat_bench_tasks", 10)
assert _REDIS is not None
REDIS_URL: str = _REDIS
os.environ["QUANTBEAT_METRICS_PORT"] = "0"

import psycopg  # noqa: E402
import redis  # noqa: E402
from celery.result import ResultSet  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from benchmarks._tasks_app import BARE_NOOP, NOOP, NOOP_NO_HISTORY  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import get_engine, session_scope  # noqa: E402
from quantbeat.infra.logging import configure_logging  # noqa: E402
from workers.app import app  # noqa: E402
from workers.base import QuantbeatTask  # noqa: E402

N = int(os.environ.get("QUANTBEAT_BENCH_TASKS", "2000"))
RUNS = 3
PROFILE_CALLS = 500
TARGET = 0.70
KINDS = {"bare": BARE_NOOP, "base": NOOP, "base without history": NOOP_NO_HISTORY}


def _reset() -> None:
    with session_scope() as session:
        session.execute(text("TRUNCATE job_runs, job_attempts, dead_letters RESTART IDENTITY"))


def _run(name: str, n: int) -> float:
    """Send ``n`` tasks ``name`` to the cpu queue, wait for every result; tasks/s."""
    t0 = time.perf_counter()
    results = ResultSet([app.send_task(name, queue="cpu") for _ in range(n)])
    results.join_native(timeout=600, propagate=True)
    rate = n / (time.perf_counter() - t0)
    results.forget()
    return rate


def _measure(pool: str) -> dict[str, list[float]]:
    worker = start_worker(f"bench-tasks-{pool}", pool=pool, app_module="benchmarks._tasks_app")
    try:
        for name in KINDS.values():  # warm: children forked, connections open, code loaded
            _run(name, 100)
        rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(RUNS):
            for kind, name in KINDS.items():
                rates[kind].append(_run(name, N))
        return rates
    finally:
        stop_worker(worker)


def _report(pool: str, rates: dict[str, list[float]]) -> float:
    bare = max(rates["bare"])
    parts = []
    for kind, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        parts.append(f"{kind} {max(values):,.0f} tasks/s ({runs}; {max(values) / bare:.2f}×)")
    print(f"{pool} ×2, {N:,} no-op tasks end to end, best of {RUNS}: " + "; ".join(parts))
    return max(rates["base"]) / bare


# -- profile ---------------------------------------------------------------------------------


class _DbCounter:
    """Statements, transactions and pool checkouts on the engine, with statement time."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statement_s = 0.0
        self._t0 = 0.0

    def install(self) -> None:
        engine = get_engine()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", lambda *_: self.counts.update(["commit"]))
        event.listen(engine, "rollback", lambda *_: self.counts.update(["rollback"]))
        event.listen(engine.pool, "checkout", lambda *_: self.counts.update(["checkout"]))

    def _before(self, *_: Any) -> None:
        self._t0 = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statement_s += time.perf_counter() - self._t0
        self.counts.update(["statement"])
        self.counts.update([statement.split(None, 1)[0].upper()])


@contextmanager
def _timed_steps(times: dict[str, float]) -> Iterator[None]:
    """Time QuantbeatTask's three history steps (this process only, restored on exit)."""
    steps = {"lost-run read": "_reaped_as_lost", "start write": "_record_start"}
    steps["end write"] = "_finish"
    saved = {attr: getattr(QuantbeatTask, attr) for attr in steps.values()}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - t0

        return wrapper

    for label, attr in steps.items():
        setattr(QuantbeatTask, attr, timed(label, saved[attr]))
    try:
        yield
    finally:
        for attr, fn in saved.items():
            setattr(QuantbeatTask, attr, fn)


def _per_call_ms(name: str, calls: int) -> float:
    task = app.tasks[name]
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls // 5):
            task.apply()
        samples.append((time.perf_counter() - t0) / (calls // 5))
    return statistics.median(samples) * 1000


def _floors_ms(calls: int) -> tuple[float, float]:
    """A ``session_scope`` transaction with ``SELECT 1``; a bare psycopg ``SELECT 1``."""
    t0 = time.perf_counter()
    for _ in range(calls):
        with session_scope() as session:
            session.execute(text("SELECT 1"))
    scope = (time.perf_counter() - t0) / calls
    with psycopg.connect(DB_URL.replace("+psycopg", ""), autocommit=True) as conn:
        t0 = time.perf_counter()
        for _ in range(calls):
            conn.execute("SELECT 1").fetchone()
        bare = (time.perf_counter() - t0) / calls
    return scope * 1000, bare * 1000


def _profile() -> None:
    for name in KINDS.values():
        _per_call_ms(name, 50)  # warm
    per_call = {kind: _per_call_ms(name, PROFILE_CALLS) for kind, name in KINDS.items()}
    counter = _DbCounter()
    counter.install()
    times: dict[str, float] = {}
    task = app.tasks[NOOP]
    # Every server round trip of psycopg (a query, BEGIN, COMMIT, a pre-ping) waits once.
    waits = Counter[str]()
    wait = psycopg.Connection.wait

    def counted_wait(self: psycopg.Connection[Any], *args: Any, **kwargs: Any) -> Any:
        waits.update(["wait"])
        return wait(self, *args, **kwargs)

    psycopg.Connection.wait = counted_wait  # type: ignore[method-assign]
    with _timed_steps(times):
        t0 = time.perf_counter()
        for _ in range(PROFILE_CALLS):
            task.apply()
        total = (time.perf_counter() - t0) / PROFILE_CALLS * 1000
    psycopg.Connection.wait = wait  # type: ignore[method-assign]
    per = {k: v / PROFILE_CALLS for k, v in counter.counts.items()}
    steps = {k: v / PROFILE_CALLS * 1000 for k, v in times.items()}
    statements_ms = counter.statement_s / PROFILE_CALLS * 1000  # before the floors run
    scope_ms, rtt_ms = _floors_ms(PROFILE_CALLS)
    trips = waits["wait"] / PROFILE_CALLS
    print(
        f"profile (in-process Task.apply, {PROFILE_CALLS} calls): per call "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in per_call.items())
        + f"; base minus bare {per_call['base'] - per_call['bare']:.3f} ms, of which history "
        f"{per_call['base'] - per_call['base without history']:.3f} ms"
    )
    print(
        f"  base per task: {per.get('statement', 0):.0f} statements through SQLAlchemy "
        f"({', '.join(f'{k} {v:.0f}' for k, v in per.items() if k.isupper())}), "
        f"{per.get('commit', 0):.0f} transactions, {per.get('checkout', 0):.0f} pool checkouts "
        f"(pre-ping), {trips:.1f} psycopg server round trips (the direct history writes "
        f"included); SQLAlchemy statements' own time "
        f"{statements_ms:.3f} ms"
    )
    print(
        f"  base per task ({total:.3f} ms with timers): "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in steps.items())
        + f", the rest {total - sum(steps.values()):.3f} ms"
    )
    print(
        f"  floors: one session_scope transaction with SELECT 1 {scope_ms:.3f} ms; "
        f"a bare psycopg round trip {rtt_ms:.3f} ms"
    )


def main() -> None:
    configure_logging("WARNING")  # the profile's Task.apply calls log as workers do
    ensure_database(DB_URL)
    migrate.upgrade(DB_URL)
    _reset()
    redis.Redis.from_url(REDIS_URL).flushdb()
    print(f"broker and results {REDIS_URL}, PostgreSQL {DB_URL.rsplit('/', 1)[1]}")
    ratio = _report("prefork", _measure("prefork"))
    _report("threads", _measure("threads"))
    with session_scope() as session:
        recorded = session.execute(
            text("SELECT count(*) FROM job_runs WHERE task_name = :n AND state = 'succeeded'"),
            {"n": NOOP},
        ).scalar_one()
    expected = 2 * (100 + RUNS * N)  # warm-up and runs, on both pools
    print(f"job_runs of {NOOP} recorded succeeded: {recorded:,} (expected {expected:,})")
    _profile()
    verdict = "met" if ratio >= TARGET else "missed"
    print(f"goal base_task_vs_bare: {ratio:.2f} (target >= {TARGET:.2f}) {verdict}")


if __name__ == "__main__":
    main()

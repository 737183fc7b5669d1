"""Scenario 11 (issue 9): 50 concurrent clients submit indicator requests and backtests for
60 s. No client sees an error, every indicator request returns values, and every backtest a
client submitted ends ``completed`` exactly once in PostgreSQL. p50/p90/p99/max latency and
throughput per request kind are printed and recorded, never asserted. Each client sends its
next request as soon as the last is answered, so the cpu queue is saturated: the latencies
are those of a full queue (about 50 in-flight requests over the throughput), not of an idle
system.

The system under load: a ``cpu`` prefork worker (2 children, production ``workers.app``) on a
throwaway Redis of the test's own (broker, result backend, indicator cache and backtest live
state), the test database with a few months of simulated KOSPI candles. The clients are
:mod:`tests.faults.load_client` processes running threads (see ``CLIENT_PROCESSES``): they
use the public client API (``get_indicator``, ``get_indicators``, ``submit_backtest`` +
``wait``) exactly as an application would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import BacktestEquity, BacktestRun, BacktestTrade
from tests.faults.load_client import REQUEST_TIMEOUT_S
from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import small_kospi_history
from tests.support.services import ROOT, WorkerProcess
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

#: How long the clients submit work (the issue fixes it at 60 s).
DURATION_S = 60.0
#: Concurrent clients, and the processes they are spread over (threads in each). Measured on
#: the 2-core machine: 50 threads in one process use about a quarter of one core (the test
#: prints it as "client CPU"), so the GIL is not the bottleneck and a second process would
#: only add its start-up. The clients run in a process of their own anyway, so that the
#: production Celery app there points at this test's broker.
CLIENTS = 50
CLIENT_PROCESSES = 1
#: Worker pool children on the cpu queue (the machine has 2 cores).
CPU_CONCURRENCY = 2
DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 7, 1)  # ~100 sessions: 80-bar requests and 60-day backtests fit


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _start_cpu_worker(env: dict[str, str], tmp_dir: Path) -> WorkerProcess:
    """The production app on the cpu queue, prefork with :data:`CPU_CONCURRENCY` children."""
    hostname = f"load-cpu-{uuid.uuid4().hex[:8]}@localhost"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "--queues=cpu",
        "--pool=prefork",
        f"--concurrency={CPU_CONCURRENCY}",
        f"--hostname={hostname}",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=WARNING",
    ]
    return WorkerProcess(argv, hostname, tmp_dir / "cpu-worker.log", {**os.environ, **env})


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(worker: WorkerProcess) -> None:
    """SIGKILL the worker and its pool children: the broker is thrown away with whatever is
    still queued, and a warm (or even cold) Celery shutdown costs 3–5 s here."""
    if worker.proc.poll() is None:
        children = _children(worker.proc.pid)
        worker.proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    worker.stop()  # reaps the process, closes the log


class ClientProcess:
    """One :mod:`tests.faults.load_client` process and its files."""

    def __init__(self, index: int, threads: int, env: dict[str, str], tmp_dir: Path) -> None:
        self.out = tmp_dir / f"client-{index}.json"
        self.log_path = tmp_dir / f"client-{index}.log"
        self._log = self.log_path.open("wb")
        argv = [
            sys.executable,
            "-m",
            "tests.faults.load_client",
            f"--threads={threads}",
            f"--seconds={DURATION_S}",
            f"--seed={index + 1}",
            f"--end={DAY.isoformat()}",
            f"--out={self.out}",
        ]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"load client exited early:\n{self.log()}")
        return Path(f"{self.out}.ready").exists()

    def go(self, names: list[str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"instruments": names}).encode() + b"\n")
        self.proc.stdin.close()

    def result(self, timeout: float) -> dict[str, Any]:
        code = self.proc.wait(timeout)
        assert code == 0, f"load client exited {code}:\n{self.log()}"
        data: dict[str, Any] = json.loads(self.out.read_text(encoding="utf-8"))
        return data

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def _client_app(env: dict[str, str]) -> Celery:
    """A Celery client of the test's broker (ping, queue sizes); the production app of this
    process, shared with other tests, is left alone."""
    app = Celery("load-test")
    app.config_from_object("celeryconfig")
    app.conf.update(
        broker_url=env["QUANTBEAT_BROKER_URL"], result_backend=env["QUANTBEAT_RESULT_BACKEND"]
    )
    return app


@pytest.fixture(scope="module")
def system(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A throwaway Redis (broker, results, cache, live state), the cpu worker on it, the
    candles, and the client processes warmed up and waiting for ``go``. The worker and the
    clients start while the candles load. Nothing is routed to the io or ai queues in these
    flows (the test checks it), so no worker consumes them."""
    tmp_dir = tmp_path_factory.mktemp("load")
    with ExitStack() as cleanup:
        t0 = time.monotonic()
        server = cleanup.enter_context(ThrowawayRedis(tmp_dir / "redis"))
        env = {
            "QUANTBEAT_BROKER_URL": server.url(0),
            "QUANTBEAT_RESULT_BACKEND": server.url(1),
            "QUANTBEAT_REDIS_URL": server.url(2),
            "QUANTBEAT_LOG_LEVEL": "WARNING",
        }
        worker = _start_cpu_worker(env, tmp_dir)
        cleanup.callback(_kill, worker)
        per_process = [CLIENTS // CLIENT_PROCESSES] * CLIENT_PROCESSES
        per_process[0] += CLIENTS - sum(per_process)
        clients = [ClientProcess(i, n, env, tmp_dir) for i, n in enumerate(per_process)]
        for c in clients:
            cleanup.callback(c.stop)
        names = small_kospi_history(database, FIRST.isoformat(), DAY.isoformat())
        assert len(names) >= 10, names
        t_data = time.monotonic() - t0
        app = _client_app(env)
        worker.wait_ready(app)
        t_worker = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while not all(c.ready() for c in clients):
            assert time.monotonic() < deadline, "load clients not ready within 60 s"
            time.sleep(0.05)
        print(
            f"\nload set-up: candles in {t_data:.1f} s, worker ready at {t_worker:.1f} s, "
            f"clients at {time.monotonic() - t0:.1f} s"
        )
        yield {"app": app, "worker": worker, "clients": clients, "names": names}


def _queued(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` on the app's broker (a non-passive declare: with Redis an
    empty queue does not exist, and declaring one changes nothing)."""
    with app.connection_for_read() as conn:
        declared = app.amqp.queues[queue].bind(conn.default_channel).queue_declare()
        return int(declared.message_count)


def _stored_runs(run_ids: list[str]) -> dict[str, tuple[str, int, int, int, int]]:
    """Per run id found in PostgreSQL: (state, attempts, equity rows, sessions in the
    summary, trades rows − closed − open trades of the summary)."""
    out: dict[str, tuple[str, int, int, int, int]] = {}
    with session_scope() as session:
        equity = dict(
            session.execute(
                select(BacktestEquity.run_id, func.count())
                .where(BacktestEquity.run_id.in_(run_ids))
                .group_by(BacktestEquity.run_id)
            ).all()
        )
        trades = dict(
            session.execute(
                select(BacktestTrade.run_id, func.count())
                .where(BacktestTrade.run_id.in_(run_ids))
                .group_by(BacktestTrade.run_id)
            ).all()
        )
        for run in session.execute(
            select(BacktestRun).where(BacktestRun.id.in_(run_ids))
        ).scalars():
            summary = run.summary or {}
            expected_trades = summary.get("closed_trades", 0) + summary.get("open_trades", 0)
            out[run.id] = (
                run.state,
                run.attempts,
                int(equity.get(run.id, 0)),
                int(summary.get("sessions", -1)),
                int(trades.get(run.id, 0)) - int(expected_trades),
            )
    return out


def test_fifty_clients_for_sixty_seconds_lose_nothing(system, outcome):
    clients: list[ClientProcess] = system["clients"]
    started = time.monotonic()
    for c in clients:
        c.go(system["names"])
    results = [c.result(timeout=DURATION_S + REQUEST_TIMEOUT_S + 30) for c in clients]
    wall = time.monotonic() - started
    records = [r for res in results for r in res["records"]]
    errors = [r for r in records if not r["ok"]]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_kind.setdefault(r["kind"], []).append(r)

    # Backtests: every run id a client got is in PostgreSQL once, completed by one execution
    # with one stored result (equity rows = sessions, trade rows = closed + open trades).
    run_ids = [r["run_id"] for r in by_kind.get("backtest", []) if r["run_id"]]
    unsubmitted = [r for r in by_kind.get("backtest", []) if not r["run_id"]]
    stored = _stored_runs(run_ids)
    with session_scope() as session:
        all_runs = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
    lost_runs = [i for i in run_ids if i not in stored or stored[i][0] != "completed"]
    twice = [
        i
        for i, (_state, attempts, days, sessions, extra_trades) in stored.items()
        if attempts != 1 or days != sessions or extra_trades != 0
    ]
    # Indicator requests (single and batches of three) not answered with values.
    unanswered = [r for r in records if r["kind"] != "backtest" and not r["ok"]]

    # -- report (never asserted: latency depends on the machine) -------------------------------
    lines = [
        f"load: {CLIENTS} clients ({CLIENT_PROCESSES} processes) x {DURATION_S:g} s, "
        f"cpu worker prefork x{CPU_CONCURRENCY}; {len(records)} requests in {wall:.1f} s, "
        f"{len(errors)} errors; client CPU {sum(res['cpu_s'] for res in results):.1f} s"
    ]
    summary: dict[str, tuple[float, float]] = {}
    for kind in ("indicator", "batch", "backtest"):
        ms = [r["latency_s"] * 1e3 for r in by_kind.get(kind, []) if r["ok"]]
        if not ms:
            lines.append(f"  {kind:9}: none answered")
            continue
        p50, p90 = _percentile(ms, 0.5), _percentile(ms, 0.9)
        summary[kind] = (p50, p90)
        sources = ""
        if kind == "indicator":
            hits = sum(1 for r in by_kind[kind] if r["ok"] and r["detail"] == "cache")
            sources = f", cache hits {hits / len(ms):.0%}"
        lines.append(
            f"  {kind:9}: {len(ms):5} ok, {len(ms) / DURATION_S:6.1f}/s, p50 {p50:7.1f} ms, "
            f"p90 {p90:7.1f} ms, p99 {_percentile(ms, 0.99):7.1f} ms, max {max(ms):7.1f} ms"
            f"{sources}"
        )
    throughput = (len(records) - len(errors)) / DURATION_S
    lines.append(f"  throughput: {throughput:.1f} requests/s answered")
    print("\n".join(lines))

    ind = summary.get("indicator", (float("nan"), float("nan")))
    bt = summary.get("backtest", (float("nan"), float("nan")))
    outcome(
        Outcome(
            number=11,
            scenario="load: 50 clients × 60 s",
            sent=len(records),
            completed=len(records) - len(errors),
            duplicates=len(twice),
            lost=len(lost_runs) + len(unsubmitted) + len(unanswered),
            recovery_s=None,
            notes=(
                f"p50/p90 indicators {ind[0]:.0f}/{ind[1]:.0f} ms, "
                f"backtests {bt[0]:.0f}/{bt[1]:.0f} ms, {throughput:.0f} req/s"
            ),
        )
    )

    shown = "\n".join(f"{r['kind']}: {r['detail']}" for r in errors[:10])
    assert not errors, f"{len(errors)} client errors, first ones:\n{shown}"
    assert by_kind.get("indicator"), "no indicator request was sent"
    assert by_kind.get("batch"), "no batch was sent"
    assert run_ids, "no backtest was submitted"
    assert not lost_runs, f"runs not completed: {[(i, stored.get(i)) for i in lost_runs]}"
    assert not twice, f"runs executed or stored more than once: {[stored[i] for i in twice]}"
    assert len(set(run_ids)) == len(run_ids)
    assert all_runs == len(run_ids), f"{all_runs} runs stored for {len(run_ids)} submitted"
    # nothing waits on a queue this deployment has no worker for
    assert (_queued(system["app"], "io"), _queued(system["app"], "ai")) == (0, 0)

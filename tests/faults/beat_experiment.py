"""Two beats for two minutes against a once-a-minute schedule (issue 8's done-when; fault
scenario 6 of issue 9).

It takes over two minutes of wall-clock time, so it runs in the background while the rest of
the suite runs: :func:`start` is called when collection selects
``test_beat_ha_two_beats.py::test_two_beats_run_each_minute_once`` (tests/conftest.py; under
pytest-xdist by the first worker only). When the run is over a background thread collects the
outcome (:meth:`BeatExperiment.finish`) into :func:`result_path`; the test, ordered last and in
whichever worker process it runs, waits for that file (:func:`wait_result`) and checks it.

Everything it uses is its own, so the suite's table truncations and Redis flushes cannot touch
it: a throwaway redis-server on a free port (broker, results, redbeat) and a PostgreSQL
database ``<test database>_beat`` migrated to head. Processes: one worker (threads) and two
groups of two beats:

* ``locked`` — two ``quantbeat``-configured beats sharing redbeat's lock: one ticks, one
  waits (the production set-up);
* ``unlocked`` — two beats with the lock disabled, both ticking: only the PostgreSQL
  ``(entry, scheduled_for)`` key stands between them and a double run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: How long the beats run (seconds): two whole minutes plus the start-up of the processes.
RUN_SECONDS = 150.0
GROUPS: dict[str, dict[str, str]] = {
    "locked": {"TEST_REDBEAT_PREFIX": "qb:test-locked:", "TEST_REDBEAT_LOCK": "lock"},
    "unlocked": {"TEST_REDBEAT_PREFIX": "qb:test-unlocked:", "TEST_REDBEAT_LOCK": ""},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class BeatExperiment:
    """The background run; :meth:`finish` stops it and returns the executions seen."""

    database_url: str
    workdir: Path
    started: float = 0.0  # time.monotonic() when the beats were started
    started_wall: float = 0.0  # the same moment, time.time()
    stopped_wall: float = 0.0  # time.time() when finish() stopped the processes
    error: BaseException | None = None
    redis_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _finisher: threading.Thread | None = None
    _redis: subprocess.Popen[bytes] | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, daemon=True)
        self._thread.start()
        self._finisher = threading.Thread(target=self._publish, daemon=True)
        self._finisher.start()

    def _publish(self) -> None:
        """Wait out the run, then write its outcome (or its error) to :func:`result_path`."""
        try:
            outcome: dict[str, Any] = self.finish()
        except BaseException as exc:  # the test reports it
            outcome = {"error": f"{exc.__class__.__name__}: {exc}"}
            self.stop()
        path = result_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(outcome, default=str), encoding="utf-8")
        tmp.replace(path)

    def join(self) -> None:
        """Wait until the outcome is written (the end of the run plus the shutdown)."""
        if self._finisher is not None:
            self._finisher.join(RUN_SECONDS + 120)
        self.stop()

    def _run_guarded(self) -> None:
        try:
            self._launch()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _env(self, **extra: str) -> dict[str, str]:
        base = f"redis://127.0.0.1:{self.redis_port}"
        return {
            **os.environ,
            "QUANTBEAT_DATABASE_URL": self.database_url,
            "QUANTBEAT_BROKER_URL": f"{base}/0",
            "QUANTBEAT_RESULT_BACKEND": f"{base}/1",
            "QUANTBEAT_REDIS_URL": f"{base}/2",
            "QUANTBEAT_DATA_DIR": str(self.workdir),
            **extra,
        }

    def _launch(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.redis_port = _free_port()
        self._redis = subprocess.Popen(
            [
                redis_server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _recreate_database(self.database_url)
        celery = [sys.executable, "-m", "celery", "-A", "tests.support.beat_app"]
        self.procs["worker"] = self._spawn(
            "worker",
            [
                *celery,
                "worker",
                "--queues=io",
                "--pool=threads",
                "--concurrency=4",
                "--hostname=beat-experiment@localhost",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            self._env(),
        )
        self.started = time.monotonic()
        self.started_wall = time.time()
        for group, env in GROUPS.items():
            for n in (1, 2):
                self.procs[f"{group}-{n}"] = self._spawn(
                    f"{group}-{n}",
                    [
                        *celery,
                        "beat",
                        "--scheduler=workers.beat:QuantbeatScheduler",
                        "--max-interval=5",
                        "--loglevel=INFO",
                    ],
                    self._env(
                        **env,
                        TEST_BEAT_ENTRIES=f"every-minute-{group}",
                        QUANTBEAT_BEAT_LOCK_TIMEOUT="25",
                    ),
                )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def remaining(self) -> float:
        """Seconds until the beats have run :data:`RUN_SECONDS`."""
        if not self.started:
            return RUN_SECONDS
        return max(0.0, RUN_SECONDS - (time.monotonic() - self.started))

    def finish(self) -> dict[str, Any]:
        """Wait out the run, stop every process, and return ``{"executions": [...],
        "slots": [...], "logs": {...}, "window": (started, stopped)}`` read from the
        experiment's database (``window`` in ``time.time()`` seconds: when the beats started,
        when the processes were told to stop)."""
        if self._thread is not None:
            self._thread.join(120)
        if self.error is not None:
            raise self.error
        time.sleep(self.remaining())
        # Let the last sent tick finish before the worker stops.
        time.sleep(3)
        self.stopped_wall = time.time()
        self.stop()
        return {
            **_read(self.database_url),
            "logs": self.logs(),
            "window": (self.started_wall, self.stopped_wall),
        }

    def logs(self) -> dict[str, str]:
        out = {}
        for path in self.workdir.glob("*.log"):
            out[path.stem] = path.read_text(errors="replace")[-6000:]
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            self._redis.wait(10)


def _admin_url(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name


def _recreate_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    admin, name = _admin_url(url)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    # In a subprocess: alembic's context is process-global, and the suite's own `database`
    # fixture migrates in the main thread at the same time.
    subprocess.run(
        [sys.executable, "-c", f"from db import migrate; migrate.upgrade({url!r})"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


def _read(url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            executions = [
                dict(r._mapping)
                for r in conn.execute(
                    text(
                        "SELECT task_id, state, result, worker FROM job_runs "
                        "WHERE task_name = 'quantbeat.ops.test_tick'"
                    )
                )
            ]
            slots = [
                dict(r._mapping)
                for r in conn.execute(text("SELECT entry, scheduled_for, task_id FROM beat_slots"))
            ]
    finally:
        engine.dispose()
    return {"executions": executions, "slots": slots}


def result_path() -> Path:
    """Where this test run's outcome is written: one file per run (xdist's run id, shared by
    its workers; else this process)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    return ROOT / "var" / f"beat-experiment-{run}.json"


def wait_result(timeout: float = RUN_SECONDS + 180) -> dict[str, Any]:
    """The outcome :meth:`BeatExperiment.finish` returned, once written (the file is then
    removed).

    Raises:
        AssertionError: no outcome within ``timeout`` seconds (the experiment was not
            started: it starts at collection in the first xdist worker), or the
            experiment failed (its error).
    """
    path = result_path()
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no beat experiment outcome at {path} after {timeout:.0f} s: it starts at "
                "collection (tests/conftest.py), in the first xdist worker"
            )
        time.sleep(1)
    outcome: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    path.unlink(missing_ok=True)
    if "error" in outcome:
        raise AssertionError(f"the beat experiment failed: {outcome['error']}")
    return outcome


def start(database_url: str) -> BeatExperiment:
    """Start the experiment in the background against ``<database_url>_beat``."""
    experiment = BeatExperiment(
        database_url=f"{database_url}_beat",
        workdir=Path(tempfile.mkdtemp(prefix="quantbeat-beat-")),
    )
    experiment.start()
    return experiment

"""Service fixtures of the integration and fault tests: the real PostgreSQL test database
(schema from ``alembic upgrade head``), real Redis, and a real Celery worker in a subprocess.

A pytest plugin (``pytest_plugins`` in tests/conftest.py), so that tests/integration and
tests/faults share one session database and one session worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from tests.conftest import TEST_BROKER_URL, TEST_DATABASE_URL, TEST_RESULT_BACKEND
from tests.support import parallel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def database() -> str:
    """The test database, emptied and migrated to head once per session."""
    from db import migrate
    from db.engine import create_engine_for

    parallel.ensure_database(TEST_DATABASE_URL)  # an xdist worker's own one is made here
    engine = create_engine_for(TEST_DATABASE_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL test database unreachable ({exc.__class__.__name__}); "
            "run `make test`, which prepares it, or set QUANTBEAT_TEST_DATABASE_URL",
            pytrace=False,
        )
        raise  # unreachable: pytest.fail raises
    finally:
        engine.dispose()
    migrate.upgrade(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_stores() -> None:
    """Empty test broker and result databases."""
    for url in (TEST_BROKER_URL, TEST_RESULT_BACKEND):
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis unreachable at {url}: {exc}; run `make test`", pytrace=False)
        finally:
            client.close()


@pytest.fixture
def clean_db(database: str) -> str:
    """Truncate every table before the test."""
    from db.engine import get_engine
    from db.models import Base

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return database


class WorkerProcess:
    """A ``celery worker`` subprocess, with its log kept for failure reports."""

    def __init__(self, argv: list[str], hostname: str, log_path: Path, env: dict[str, str]):
        self.hostname = hostname
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, app: object, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            replies = app.control.ping(destination=[self.hostname], timeout=1.0)  # type: ignore[attr-defined]
            if replies:
                return
        raise RuntimeError(f"worker {self.hostname} did not answer ping:\n{self.log()}")

    def log(self) -> str:
        """The tail of the worker's output, for failure messages."""
        return self.full_log()[-8000:]

    def full_log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Every structured (JSON) log line the worker wrote so far."""
        out = []
        for line in self.full_log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def start_worker(
    app_module: str,
    *,
    queues: str,
    tmp_dir: Path,
    env: dict[str, str] | None = None,
    cli: bool = False,
    pool: str = "threads",
    prefix: tuple[str, ...] = (),
) -> WorkerProcess:
    """Start a worker subprocess (``celery -A app_module worker``, or ``quantbeat worker``
    when ``cli``) on ``queues`` with ``env`` over the test's environment; ``prefix`` goes
    before the command (e.g. ``ip netns exec <name>`` to run it in a network namespace).
    Wait for it with :meth:`WorkerProcess.wait_ready`."""
    hostname = f"itest-{uuid.uuid4().hex[:8]}@localhost"
    if cli:
        argv = [
            str(Path(sys.executable).with_name("quantbeat")),
            "worker",
            f"--queues={queues}",
            "--concurrency=4",
            f"--hostname={hostname}",
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "worker",
            f"--queues={queues}",
            f"--pool={pool}",
            "--concurrency=4",
            f"--hostname={hostname}",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
        ]
    full_env = {**os.environ, **(env or {})}
    argv = [*prefix, *argv]
    return WorkerProcess(argv, hostname, tmp_dir / f"{hostname.split('@')[0]}.log", full_env)


@pytest.fixture(scope="session")
def worker(
    database: str, redis_stores: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A real worker (production tasks + test-only tasks) consuming io, cpu and ai."""
    from tests.support.worker_app import app

    proc = start_worker(
        "tests.support.worker_app", queues="io,cpu,ai", tmp_dir=tmp_path_factory.mktemp("worker")
    )
    try:
        proc.wait_ready(app)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def celery_app(worker: WorkerProcess) -> object:
    from tests.support.worker_app import app

    return app

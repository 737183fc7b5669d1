"""What the benchmarks share: a scratch database and a real ``cpu`` worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist."""
    import psycopg

    admin, name = url.replace("+psycopg", "").rsplit("/", 1)
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_worker(
    name: str,
    *,
    concurrency: int = 2,
    queues: str = "cpu",
    pool: str = "prefork",
    app_module: str = "workers.app",
) -> subprocess.Popen[bytes]:
    """A worker (default: prefork on the ``cpu`` queue) of the Celery app in ``app_module``
    (one that builds on :mod:`workers.app`) with this process's environment, once it answers
    ping (exits the benchmark if it does not start within 60 s)."""
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "worker",
            f"--queues={queues}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--hostname={hostname}",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from workers.app import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(destination=[hostname], timeout=1.0):
            return proc
    proc.kill()
    raise SystemExit("the benchmark worker did not start")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, then kill if it takes more than 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def recreate_database(url: str) -> None:
    """Drop (if it exists) and create the PostgreSQL database of ``url``: a benchmark that
    calls this starts from nothing, whatever ran before it."""
    import psycopg

    admin, name = url.replace("+psycopg", "").rsplit("/", 1)
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')

"""Running the suite on several pytest-xdist workers (``make test`` runs ``pytest -n 2``).

Integration and fault tests truncate every table, flush Redis databases and consume the task
queues with real workers, so two test processes must never share a store. Each xdist worker
therefore gets its own:

* PostgreSQL database: ``gw0`` (and a run without xdist) keeps the prepared test database;
  ``gwN`` uses ``<test database>_gwN``, created on first use;
* Redis server: ``gw0`` keeps the prepared one; ``gwN`` starts a throwaway ``redis-server``
  (no persistence) on a free port, stopped when the worker exits. A whole server rather than
  other database numbers, because several tests use database numbers of their own and Redis
  pub/sub (Celery's broadcasts) is server-wide.

Everything else a test starts (workers, Flower, throwaway servers) takes free ports already.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit


def worker_id() -> str:
    """This process's xdist worker id (``gw0``, ``gw1`` …), ``""`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


#: Names the xdist worker that chose the stores now in the environment (tests/conftest.py
#: exports them): a subprocess of that worker inherits both and uses them as they are, while
#: an xdist worker inheriting the controller's (``""``) chooses its own.
CHOSEN = "QUANTBEAT_TEST_STORES_CHOSEN_BY"


def is_primary() -> bool:
    """Whether this process uses the stores in its environment as given: no xdist, worker
    ``gw0``, or a subprocess of a worker that already chose its own."""
    return worker_id() in ("", "gw0") or os.environ.get(CHOSEN) == worker_id()


def export(database: str, redis: str) -> None:
    """Put this worker's stores into the environment its subprocesses inherit."""
    os.environ["QUANTBEAT_TEST_DATABASE_URL"] = database
    os.environ["QUANTBEAT_TEST_REDIS_URL"] = redis
    os.environ[CHOSEN] = worker_id()


def database_url(base: str) -> str:
    """The PostgreSQL URL of this worker's test database (see the module docstring)."""
    return base if is_primary() else f"{base}_{worker_id()}"


def ensure_database(url: str) -> None:
    """Create the database ``url`` names when it does not exist (through the server's
    ``postgres`` database)."""
    import psycopg

    parts = urlsplit(url.replace("+psycopg", ""))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # made meanwhile elsewhere
            conn.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_url(base: str) -> str:
    """The Redis base URL (no database number) of this worker: ``base`` for the primary,
    else a throwaway server's.

    Raises:
        RuntimeError: ``redis-server`` is not installed or did not start.
    """
    if is_primary():
        return base
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix=f"quantbeat-redis-{worker_id()}-")
    for _attempt in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    atexit.register(_stop, proc)
                    return f"redis://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        _stop(proc)  # the port was taken meanwhile, or the server did not come up
    raise RuntimeError(f"no throwaway redis-server started for xdist worker {worker_id()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

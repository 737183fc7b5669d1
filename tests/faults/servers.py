"""Throwaway servers for fault tests: a test that kills or restarts a server never touches the
shared ones. Each server runs on a free port with its data under a temporary directory."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A ``redis-server`` of the test's own, optionally with AOF (``appendfsync always`` when
    ``aof``), that can be killed (SIGKILL) and restarted on the same port and data directory.
    It listens on ``host`` only (default 127.0.0.1; another address, e.g. the host end of a
    test's veth link, turns protected mode off so that clients from that link may connect).

    Raises:
        RuntimeError: ``redis-server`` is not installed, or it does not answer within 10 s.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        port: int | None = None,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.host = host
        self.port = port or free_port(host)
        #: ``--requirepass`` when given (clients must AUTH); ``extra_args`` go on the command
        #: line as they are (e.g. the ``--tls-*`` options).
        self.password = password
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self) -> ThrowawayRedis:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
        ]
        if self.host != "127.0.0.1":
            argv += ["--protected-mode", "no"]
        if self.aof:
            argv += ["--appendfsync", "always"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        argv += list(self.extra_args)
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    log = (self.workdir / "redis.log").read_text()[-2000:]
                    raise RuntimeError(f"throwaway redis on {self.port} exited:\n{log}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"throwaway redis on {self.port} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> ThrowawayRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# The same lookups as scripts/test_services.py (a script, not an importable package).


def _find_pg_binary(name: str) -> str:
    """``initdb``/``pg_ctl`` from PATH or Debian's /usr/lib/postgresql/<version>/bin (the
    newest version).

    Raises:
        RuntimeError: the binary is not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError(
            f"{name} is not installed (apt-get install postgresql) and is needed for a "
            "throwaway PostgreSQL"
        )
    return candidates[0]


def _as_postgres_user(argv: list[str]) -> list[str]:
    """initdb/pg_ctl refuse to run as root: as root, run them as the ``postgres`` user.

    Raises:
        RuntimeError: running as root and ``runuser`` is missing.
    """
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and `runuser` is missing: cannot start PostgreSQL")
    return [runuser, "-u", "postgres", "--", *argv]


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own (``initdb`` + ``pg_ctl`` on a free port, trust
    authentication for ``postgres`` on 127.0.0.1), that can be stopped and started again on
    the same port and data directory. It listens on ``host`` only (default 127.0.0.1); with
    ``clients`` (a CIDR such as ``10.213.0.0/24``) it also trusts connections from that network
    (e.g. a test's veth link), which initdb's loopback-only ``pg_hba.conf`` would refuse.
    :meth:`start` initialises the cluster on first use and creates the database ``dbname``;
    :meth:`migrate` applies quantbeat's migrations to it in a subprocess (Alembic's context is
    process-global).

    As root, initdb/pg_ctl run as the ``postgres`` user (they refuse root), so the data lives
    in a directory of its own under the system temp dir, owned by ``postgres`` (pytest's
    ``tmp_path`` is private to root). :meth:`cleanup` removes it. The server runs with
    ``fsync=off``: a stopped or killed server loses nothing the OS already has (only an OS
    crash would), and tests do not wait on the disk.

    Raises:
        RuntimeError: the binaries are missing, or the server does not start within 30 s.
        subprocess.CalledProcessError: initdb, pg_ctl or the migration failed (output shown).
    """

    def __init__(
        self,
        *,
        dbname: str = "quantbeat_fault",
        port: int | None = None,
        host: str = "127.0.0.1",
        clients: str | None = None,
    ) -> None:
        self.initdb = _find_pg_binary("initdb")
        self.pg_ctl = _find_pg_binary("pg_ctl")
        self.dbname = dbname
        self.host = host
        self.clients = clients
        self.port = port or free_port(host)
        self.basedir = Path(tempfile.mkdtemp(prefix="quantbeat-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.basedir, "postgres", "postgres")
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "postgres.log"
        self._created = False

    def url(self) -> str:
        """The SQLAlchemy URL of ``dbname``."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{self.dbname}"

    def _run(self, argv: list[str], timeout: float = 60.0) -> None:
        done = subprocess.run(
            _as_postgres_user(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, argv, output=done.stdout, stderr=done.stderr + self.log_tail()
            )

    def start(self) -> ThrowawayPostgres:
        """Initialise the cluster (first call), start the server and wait until it accepts
        connections; create ``dbname`` on the first start."""
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                [self.initdb, "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-N"]
            )
            if self.clients is not None:
                with (self.datadir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                    hba.write(f"host all all {self.clients} trust\n")
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -k {self.basedir} "
            "-c fsync=off -c full_page_writes=off"
        )
        pg_ctl = [self.pg_ctl, "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "30"]
        self._run([*pg_ctl, "start", "-o", options])
        if not self._created:
            import psycopg

            admin = f"postgresql://postgres@{self.host}:{self.port}/postgres"
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
            self._created = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (``fast``: disconnect every client, then shut down
        cleanly; ``immediate``: like a crash). Does nothing when the server is not running."""
        if (self.datadir / "postmaster.pid").exists():
            self._run([self.pg_ctl, "-D", str(self.datadir), "-w", "-t", "30", "stop", "-m", mode])

    def migrate(self) -> None:
        """Apply quantbeat's migrations to ``dbname`` in a subprocess."""
        code = "import sys; from db import migrate; migrate.upgrade(sys.argv[1])"
        done = subprocess.run(
            [sys.executable, "-c", code, self.url()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, "db.migrate.upgrade", output=done.stdout, stderr=done.stderr
            )

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop the server (immediate) and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.cleanup()

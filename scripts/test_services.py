"""Prepare what the test suite needs: a reachable PostgreSQL with a migrated test database and a
reachable Redis. Writes their URLs to an env file that ``make test`` sources.

Order of preference for each service:
1. the URL given in ``QUANTBEAT_TEST_DATABASE_URL`` / ``QUANTBEAT_TEST_REDIS_URL``;
2. the local default (PostgreSQL 127.0.0.1:5432 user postgres, Redis 127.0.0.1:6379);
3. the machine's PostgreSQL cluster started with ``pg_ctlcluster`` (Debian);
4. a throwaway server under ``var/test-services`` (initdb/pg_ctl on port 55432,
   redis-server on port 56379), when the binaries exist.
Otherwise it says exactly what is missing and exits 1.

It also installs Debian's chromium and chromium-driver (for the Flower and dashboard browser
tests), fonts-nanum (Korean text in the dashboard screenshots), faketime (libfaketime, for
the beat trading-day test), iproute2 and nftables (the partition fault test),
docker-compose (to validate the compose file), prometheus and prometheus-alertmanager
(promtool and amtool, to test the alert rules and check the monitoring configuration) when
they are missing and it runs as root with
apt-get; otherwise it warns, naming what is missing.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "var" / "test-services"
TEST_DB = "quantbeat_test"
THROWAWAY_PG_PORT = 55432
THROWAWAY_REDIS_PORT = 56379


def say(message: str) -> None:
    print(f"test-services: {message}", flush=True)


def fail(message: str) -> NoReturn:
    print(f"test-services: ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable(host, port):
            return True
        time.sleep(0.3)
    return False


def find_pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb/pg_ctl refuse to run as root; run them as the postgres user when we are root."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        fail("running as root and `runuser` is missing, so PostgreSQL cannot be started")
    return [runuser, "-u", "postgres", "--", *cmd]


def ensure_postgres() -> str:
    given = os.environ.get("QUANTBEAT_TEST_DATABASE_URL")
    if given:
        parts = urlsplit(given.replace("+psycopg", ""))
        if not reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
            fail(f"QUANTBEAT_TEST_DATABASE_URL: {parts.hostname}:{parts.port} is unreachable")
        return given
    if reachable("127.0.0.1", 5432):
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{TEST_DB}"

    pg_ctlcluster = shutil.which("pg_ctlcluster")
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if pg_ctlcluster and versions:
        for version in versions:
            say(f"PostgreSQL not reachable; starting cluster {version}/main with pg_ctlcluster")
            subprocess.run(
                [pg_ctlcluster, "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
            )
        if wait_for("127.0.0.1", 5432, 20):
            return f"postgresql+psycopg://postgres@127.0.0.1:5432/{TEST_DB}"

    initdb, pg_ctl = find_pg_binary("initdb"), find_pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        fail(
            "PostgreSQL is not reachable at 127.0.0.1:5432 and no initdb/pg_ctl were found. "
            "Install PostgreSQL 15+ (Debian: apt-get install postgresql), start it, or set "
            "QUANTBEAT_TEST_DATABASE_URL=postgresql+psycopg://USER@HOST:PORT/quantbeat_test"
        )
    data = STATE / "pg"
    STATE.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(STATE, "postgres")
    if not (data / "PG_VERSION").exists():
        say(f"initialising a throwaway PostgreSQL cluster in {data}")
        subprocess.run(
            as_postgres_user([initdb, "-D", str(data), "-U", "postgres", "--auth=trust"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if not reachable("127.0.0.1", THROWAWAY_PG_PORT):
        say(f"starting the throwaway PostgreSQL on port {THROWAWAY_PG_PORT}")
        subprocess.run(
            as_postgres_user(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-l",
                    str(STATE / "pg.log"),
                    "-w",
                    "start",
                    "-o",
                    f"-p {THROWAWAY_PG_PORT} -c listen_addresses=127.0.0.1 -k {STATE}",
                ]
            ),
            check=True,
        )
    return f"postgresql+psycopg://postgres@127.0.0.1:{THROWAWAY_PG_PORT}/{TEST_DB}"


def ensure_redis() -> str:
    given = os.environ.get("QUANTBEAT_TEST_REDIS_URL")
    if given:
        parts = urlsplit(given)
        if not reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
            fail(f"QUANTBEAT_TEST_REDIS_URL points at {parts.hostname}:{parts.port}, unreachable")
        return given.rstrip("/")
    if reachable("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379"
    server = shutil.which("redis-server")
    if server is None:
        fail(
            "Redis is not reachable at 127.0.0.1:6379 and redis-server was not found. "
            "Install Redis 7 (Debian: apt-get install redis-server), start it, or set "
            "QUANTBEAT_TEST_REDIS_URL=redis://HOST:PORT"
        )
    if not reachable("127.0.0.1", THROWAWAY_REDIS_PORT):
        STATE.mkdir(parents=True, exist_ok=True)
        say(f"starting a throwaway redis-server on port {THROWAWAY_REDIS_PORT}")
        subprocess.run(
            [
                server,
                "--port",
                str(THROWAWAY_REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(STATE),
                "--logfile",
                str(STATE / "redis.log"),
            ],
            check=True,
        )
        if not wait_for("127.0.0.1", THROWAWAY_REDIS_PORT, 10):
            fail(f"redis-server did not come up; see {STATE / 'redis.log'}")
    return f"redis://127.0.0.1:{THROWAWAY_REDIS_PORT}"


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url.replace("+psycopg", ""))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            say(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    from db import migrate as db_migrate

    db_migrate.upgrade(url)
    say(f"migrations applied ({db_migrate.current_revision(url)})")


# System files tests need -> (the Debian package that provides it, the test that needs it).
SYSTEM_FILES = {
    "/usr/bin/chromium": ("chromium", "the Flower browser test"),
    "/usr/bin/chromedriver": ("chromium-driver", "the Flower browser test"),
    # tests/integration/test_beat_trading_day.py runs beat and workers on a faked clock
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1": (
        "faketime",
        "the beat trading-day test",
    ),
    # tests/faults/test_partition.py builds two hosts (network namespaces) and cuts them off
    "/usr/sbin/ip": ("iproute2", "the network-partition fault test"),
    "/usr/sbin/nft": ("nftables", "the network-partition fault test"),
    # tests/unit/test_compose.py validates docker-compose.yml with `docker-compose config`
    # (no Docker engine needed)
    "/usr/bin/docker-compose": ("docker-compose", "the compose file's validation"),
    # tests/unit/test_monitoring.py: `promtool check rules` / `promtool test rules` on the
    # alert rules and every dashboard expression; `amtool check-config` on Alertmanager's
    "/usr/bin/promtool": ("prometheus", "the alert rules' unit tests"),
    "/usr/bin/amtool": ("prometheus-alertmanager", "the Alertmanager configuration check"),
    # the dashboard browser test's screenshots show Korean labels (without a Korean font
    # Chromium draws boxes; the test itself passes either way)
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf": (
        "fonts-nanum",
        "Korean text in the dashboard screenshots",
    ),
}


def ensure_system_packages() -> None:
    """Install the Debian packages of :data:`SYSTEM_FILES` whose files are missing when we
    are root with apt-get; otherwise say what is missing (the tests that need them then skip,
    naming it too)."""
    missing = [path for path in SYSTEM_FILES if not Path(path).exists()]
    if not missing:
        return
    packages = sorted({SYSTEM_FILES[path][0] for path in missing})
    purposes = ", ".join(sorted({SYSTEM_FILES[path][1] for path in missing}))
    command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    apt_get = shutil.which("apt-get")
    if os.geteuid() == 0 and apt_get is not None:
        say(f"{', '.join(missing)} missing: running `{command}` (for {purposes})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # Wait for another apt/dpkg run instead of failing on its lock.
        install = [apt_get, "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"]
        install += ["--no-install-recommends", *packages]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            say("install failed; refreshing the package lists (apt-get update) and retrying")
            subprocess.run([apt_get, "-q", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        missing = [path for path in SYSTEM_FILES if not Path(path).exists()]
        if not missing:
            say(f"{', '.join(packages)} installed")
            return
        packages = sorted({SYSTEM_FILES[path][0] for path in missing})
        purposes = ", ".join(sorted({SYSTEM_FILES[path][1] for path in missing}))
        command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    why = "not root" if os.geteuid() != 0 else "apt-get unavailable or the install failed"
    say(
        f"WARNING: {', '.join(missing)} missing ({why}); {purposes} will be skipped. "
        f"Install as root: `{command}`"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True, type=Path)
    args = parser.parse_args()
    pg_url = ensure_postgres()
    redis_url = ensure_redis()
    ensure_database(pg_url)
    migrate(pg_url)
    ensure_system_packages()
    args.env_file.parent.mkdir(parents=True, exist_ok=True)
    args.env_file.write_text(
        f"QUANTBEAT_TEST_DATABASE_URL={pg_url}\nQUANTBEAT_TEST_REDIS_URL={redis_url}\n"
    )
    say(f"PostgreSQL {pg_url.split('@')[-1]} and Redis {redis_url} ready")


if __name__ == "__main__":
    main()

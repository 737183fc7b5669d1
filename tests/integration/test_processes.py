"""The long-running processes an operator starts: beat, Flower, and the main job against the
real stack (``quantbeat run --distributed``)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_beat_starts_with_the_schedule_and_persists_it(tmp_path: Path, redis_stores: None):
    """`quantbeat beat` takes redbeat's lock, stores every entry of the schedule in Redis
    (where a standby beat finds it), and records its ticks for `quantbeat health`."""
    import redis

    from beat_schedule import BEAT_SCHEDULE
    from quantbeat.infra.keys import BEAT_TICK_KEY
    from quantbeat.infra.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    for key in client.scan_iter("qb:redbeat:*"):
        client.delete(key)
    client.delete(BEAT_TICK_KEY)
    log = tmp_path / "beat.log"
    env = {**os.environ, "QUANTBEAT_DATA_DIR": str(tmp_path / "data")}
    with log.open("wb") as out:
        proc = subprocess.Popen([QUANTBEAT, "beat"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not client.exists(BEAT_TICK_KEY):
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.3)
            assert "beat: Acquired lock" in log.read_text(), log.read_text()[-3000:]
            assert client.exists(BEAT_TICK_KEY), log.read_text()[-3000:]
            stored = {k.decode() for k in client.scan_iter("qb:redbeat:*")}
            assert {f"qb:redbeat:{name}" for name in BEAT_SCHEDULE} <= stored
            assert client.exists("qb:redbeat::lock")
        finally:
            _stop(proc)
    assert not client.exists("qb:redbeat::lock"), "the lock was not released at shutdown"
    for key in client.scan_iter("qb:redbeat:*"):
        client.delete(key)


def test_flower_requires_basic_auth(tmp_path: Path, redis_stores: None):
    port = _free_port()
    secret = "admin:s3cret-pw"
    env = {
        **os.environ,
        "QUANTBEAT_FLOWER_BASIC_AUTH": secret,
        "QUANTBEAT_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [QUANTBEAT, "flower", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if _status(f"{base}/healthcheck") == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail(f"flower never answered:\n{log.read_text()[-3000:]}")
            assert _status(f"{base}/") == 401
            assert _status(f"{base}/", auth="admin:wrong") == 401
            assert _status(f"{base}/", auth=secret) == 200
        finally:
            _stop(proc)
    assert "s3cret-pw" not in log.read_text()


def test_run_distributed_uses_the_running_workers(worker, clean_db):
    env = dict(os.environ)
    done = subprocess.run(
        [QUANTBEAT, "run", "--distributed", "--date", "2026-11-18", "--timeout", "120"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed mode" in done.stdout
    assert "postgresql+psycopg://postgres@" in done.stdout  # the stack's database, not SQLite
    universe = int(os.environ["QUANTBEAT_SIM_UNIVERSE_SIZE"])
    assert "first run: a year of history" in done.stdout  # the database was empty
    assert f"new {260 * universe:,}" in done.stdout

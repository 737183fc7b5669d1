"""Redis AUTH and TLS everywhere a Redis URL is used (issue 16, item 5), against a
``redis-server --requirepass`` of the test's own (and its ``--tls-port`` when this redis-server
was built with TLS): a real worker consumes through the password URL, beat (redbeat) keeps its
lock and ticks, the rate limiter, the indicator cache and the Gemini quota work, ``quantbeat
health`` reaches broker, result backend and beat's Redis — and the password never shows in
the worker's or beat's log, the health report, job history or dead letters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from db.engine import session_scope
from db.models import DeadLetter, JobRun
from quantbeat.infra.ai_quota import ai_limiter, forget_ai_limiters
from quantbeat.infra.cache import Entry, cache_for, forget_caches
from quantbeat.infra.keys import BEAT_TICK_KEY, REDBEAT_LOCK_KEY
from quantbeat.infra.ratelimit import forget_limiters, limiter_for
from quantbeat.infra.settings import normalize_redis_url
from tests.faults.servers import ThrowawayRedis, free_port
from tests.integration.helpers import eventually
from tests.support.services import WorkerProcess, start_worker

pytestmark = pytest.mark.integration

SECRET = "Zk3-auth-8d1f5e2a9c"
WRONG = "Zk3-wrong-0b7c6a5d4e"
QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


class SecuredRedis(ThrowawayRedis):
    """A throwaway ``redis-server --requirepass SECRET --save ""``, optionally also listening
    with TLS (certificate for 127.0.0.1 signed by itself, given to clients as their CA)."""

    def __init__(self, workdir: Path, port: int, tls_port: int | None = None) -> None:
        self.tls_port = tls_port
        tls = (
            ()
            if tls_port is None
            else (
                "--tls-port",
                str(tls_port),
                "--tls-cert-file",
                str(workdir / "cert.pem"),
                "--tls-key-file",
                str(workdir / "key.pem"),
                "--tls-ca-cert-file",
                str(workdir / "cert.pem"),
                "--tls-auth-clients",
                "no",
            )
        )
        super().__init__(workdir, port=port, password=SECRET, extra_args=tls)

    @property
    def cert(self) -> Path:
        return self.workdir / "cert.pem"

    def url(self, db: int = 0, *, tls: bool = False, password: str = SECRET) -> str:
        """The URL as a setting would hold it (``rediss://`` normalised by Settings)."""
        if tls:
            raw = f"rediss://:{password}@127.0.0.1:{self.tls_port}/{db}?ssl_ca_certs={self.cert}"
            return normalize_redis_url(raw, field="test")
        return f"redis://:{password}@127.0.0.1:{self.port}/{db}"


def _tls_support(workdir: Path) -> str | None:
    """Why this host cannot make the TLS certificate (``None``: it can, and did). Whether
    redis-server was built with TLS shows when it starts with the ``tls-*`` options."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl is not installed (needed to make a certificate)"
    made = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(workdir / "key.pem"),
            "-out",
            str(workdir / "cert.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if made.returncode != 0:
        return f"openssl could not make a certificate: {made.stderr[-300:]}"
    return None


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecuredRedis, str | None]]:
    """The secured server and, when TLS is not available, why."""
    workdir = tmp_path_factory.mktemp("secured-redis")
    no_tls = _tls_support(workdir)
    server = SecuredRedis(workdir, free_port(), None if no_tls else free_port())
    try:
        server.start()
    except RuntimeError as exc:
        if no_tls is not None:
            raise
        # A build without TLS refuses the tls-* options: run the AUTH tests anyway.
        no_tls = f"redis-server refused its TLS options: {str(exc)[-300:]}"
        server = SecuredRedis(workdir, free_port(), None)
        server.start()
    try:
        yield server, no_tls
    finally:
        server.stop()


@pytest.fixture(params=["auth", "tls"])
def server(request: pytest.FixtureRequest, secured: tuple[SecuredRedis, str | None]) -> Any:
    """``(server, tls)`` for plain AUTH and for AUTH over TLS (skipped, with the reason, when
    this redis-server has no TLS)."""
    found, no_tls = secured
    tls = request.param == "tls"
    if tls and no_tls is not None:
        pytest.skip(no_tls)
    redis.Redis.from_url(found.url(0, tls=tls)).flushall()
    return found, tls


def _stores(found: SecuredRedis, tls: bool, *, password: str = SECRET) -> dict[str, str]:
    return {
        "QUANTBEAT_BROKER_URL": found.url(0, tls=tls, password=password),
        "QUANTBEAT_RESULT_BACKEND": found.url(1, tls=tls, password=password),
        "QUANTBEAT_REDIS_URL": found.url(2, tls=tls, password=password),
        "QUANTBEAT_METRICS_PORT": "0",
    }


def _run(code: str, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stderr
    return done.stdout


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def test_a_worker_consumes_through_the_password_url(
    server: tuple[SecuredRedis, bool], database: str, tmp_path: Path
):
    found, tls = server
    env = _stores(found, tls)
    worker: WorkerProcess = start_worker(
        "tests.support.worker_app", queues="io", tmp_dir=tmp_path, env=env
    )
    try:
        worker.wait_ready(_app_for(env))
        leaked = f"redis://:{SECRET}@10.0.0.9:6379/0"
        code = (
            "from workers.app import app\n"
            "ok = app.send_task('quantbeat.ops.test_flaky', "
            f"kwargs={{'fail_times': 0, 'redis_url': {leaked!r}}})\n"
            "bad = app.send_task('quantbeat.ops.test_permanent', "
            f"args=[{('cannot reach ' + leaked)!r}])\n"
            "print(ok.id)\n"
            "print(bad.id)\n"
            "print(ok.get(timeout=60))\n"
        )
        ok_id, bad_id, result = _run(code, env).splitlines()[:3]
        assert result == "{'retries': 0}"

        def runs() -> list[JobRun]:
            with session_scope() as session:
                found_runs = list(
                    session.execute(
                        select(JobRun).where(JobRun.task_id.in_([ok_id, bad_id]))
                    ).scalars()
                )
                for row in found_runs:
                    session.expunge(row)
                return found_runs

        rows = eventually(
            runs,
            lambda rs: sorted(r.state for r in rs) == ["failed", "succeeded"],
            timeout=30,
        )
        assert sorted(r.state for r in rows) == ["failed", "succeeded"], [r.state for r in rows]
        with session_scope() as session:
            letters = list(
                session.execute(select(DeadLetter).where(DeadLetter.task_id == bad_id)).scalars()
            )
            history = json.dumps(
                [[r.args, r.kwargs, r.error, r.result] for r in rows]
                + [[d.payload, d.error] for d in letters],
                default=str,
            )
        assert letters, "the permanent failure was not dead-lettered"
        assert "10.0.0.9" in history  # the URLs were recorded ...
        assert SECRET not in history  # ... masked
    finally:
        worker.stop()
    log = worker.full_log()
    assert "ready" in log
    assert SECRET not in log


def _app_for(env: dict[str, str]) -> Any:
    """A client app of the test process pointed at the secured broker (to ping the worker)."""
    return Celery(
        "secured-client",
        broker=env["QUANTBEAT_BROKER_URL"],
        backend=env["QUANTBEAT_RESULT_BACKEND"],
        set_as_current=False,
    )


def test_rate_limits_cache_and_quota_work_with_auth(server: tuple[SecuredRedis, bool]):
    found, tls = server
    url = found.url(2, tls=tls)
    for forget in (forget_limiters, forget_caches, forget_ai_limiters):
        forget()
    try:
        limiter = limiter_for("krx", redis_url=url, rates={"krx": 50.0}, max_wait=5.0)
        assert limiter is not None
        started = time.monotonic()
        for _ in range(5):
            limiter.acquire()
        assert time.monotonic() - started >= 4 / 50 * 0.9  # paced by Redis, not skipped
        pace = redis.Redis.from_url(url).keys("quantbeat:ratelimit:krx:*")
        assert pace, "the limiter kept no state in Redis"

        cache = cache_for(url, ttls={"1d": 60}, timeout=2.0)
        entry = Entry.candles("KOSPI:005930", "1d", "auth-test")
        (miss,) = cache.get_many([entry])
        assert miss.value is None
        assert cache.put_many([(entry, b"candles", miss.generation)]) == 1
        (hit,) = cache.get_many([entry])
        assert hit.value == b"candles"
        assert cache.stats().errors == 0

        quota = ai_limiter(url, rpm=60, rpd=100, max_wait=1.0)
        quota.acquire()
        assert quota.used_today() == 1
    finally:
        for forget in (forget_limiters, forget_caches, forget_ai_limiters):
            forget()


def _health(env: dict[str, str]) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [QUANTBEAT, "health", "--json", "--timeout", "10"],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout), done.stdout + done.stderr


def test_health_reaches_the_secured_redis_and_never_shows_the_password(
    server: tuple[SecuredRedis, bool], database: str
):
    found, tls = server
    # beat's last tick, read by the health check from QUANTBEAT_REDIS_URL
    redis.Redis.from_url(found.url(2, tls=tls)).set(BEAT_TICK_KEY, str(time.time()))
    report, output = _health(_stores(found, tls))
    components = report["components"]
    for name in ("broker", "result_backend", "beat"):
        assert components[name]["status"] == "healthy", components[name]
    assert SECRET not in output
    assert ":***@" in output

    report, output = _health(_stores(found, tls, password=WRONG))
    for name in ("broker", "result_backend", "beat"):
        component = report["components"][name]
        assert component["status"] == "unhealthy", component
        assert "pass" in component["message"].lower() or "auth" in component["message"].lower()
    assert WRONG not in output


def _wait(condition: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"beat never ticked:\n{log.read_text()[-3000:]}")


def test_beat_keeps_its_lock_and_ticks_through_the_password_url(
    server: tuple[SecuredRedis, bool], database: str, tmp_path: Path
):
    found, tls = server
    state = redis.Redis.from_url(found.url(2, tls=tls))
    log = tmp_path / "beat.log"
    env = {**_base_env(), **_stores(found, tls), "QUANTBEAT_DATA_DIR": str(tmp_path / "data")}
    with log.open("wb") as out:
        proc = subprocess.Popen([QUANTBEAT, "beat"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: bool(state.exists(BEAT_TICK_KEY)), proc, log)
            assert state.exists(REDBEAT_LOCK_KEY)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert SECRET not in log.read_text()

"""Three ``ai`` worker processes against one fake Gemini that answers with 429 storms: the
server never sees more than the configured global rate, sees nothing during a cooldown, and
every analysis ends succeeded or recorded as failed."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from db.engine import session_scope
from db.models import AiAnalysis
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.helpers import small_kospi_history

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
BROKER, BACKEND = f"{TEST_REDIS_URL}/13", f"{TEST_REDIS_URL}/14"
LIMITS = f"{TEST_REDIS_URL}/15"  # the shared quota and cooldown of these workers
RPM = 30  # one request per 2 s across all workers
RETRY_AFTER = 3.0
ANALYSES = 10


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    found = small_kospi_history(database, "2026-11-02", DAY.isoformat())
    assert len(found) >= ANALYSES
    return found[:ANALYSES]


@pytest.fixture(scope="module")
def fake_gemini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake server as its own process: the first 4 answers are 429 (Retry-After 3 s),
    then 30 % of the rest (seeded)."""
    log = tmp_path_factory.mktemp("gemini") / "log.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.fake_gemini",
            "--port",
            "0",
            "--mode",
            "storm",
            "--first",
            "4",
            "--probability",
            "0.3",
            "--seed",
            "7",
            "--retry-after",
            str(RETRY_AFTER),
            "--log-file",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        base_url = json.loads(proc.stdout.readline())["base_url"]
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def ai_workers(
    names: list[str], fake_gemini: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    for url in (BROKER, BACKEND, LIMITS):
        redis.Redis.from_url(url).flushdb()
    env = {
        "QUANTBEAT_BROKER_URL": BROKER,
        "QUANTBEAT_RESULT_BACKEND": BACKEND,
        "QUANTBEAT_REDIS_URL": LIMITS,
        "QUANTBEAT_GEMINI_API_KEY": "test-key-0123456789abcdef",
        "QUANTBEAT_GEMINI_BASE_URL": fake_gemini,
        "QUANTBEAT_GEMINI_MODEL": "gemini-test",
        "QUANTBEAT_GEMINI_RPM": str(RPM),
        "QUANTBEAT_GEMINI_RPD": "1000",
        "QUANTBEAT_AI_COOLDOWN": "3",
        "QUANTBEAT_MAX_RETRIES": "30",
        "QUANTBEAT_MAX_ATTEMPTS": "40",
        "QUANTBEAT_RETRY_BACKOFF_BASE": "1",
        "QUANTBEAT_RETRY_BACKOFF_MAX": "6",
    }
    tmp = tmp_path_factory.mktemp("ai-workers")
    procs = [start_worker("tests.support.worker_app", queues="ai", tmp_dir=tmp, env=env)
             for _ in range(3)]  # fmt: skip
    try:
        for proc in procs:
            proc.wait_ready(_client())
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _client() -> Celery:
    client = Celery("ai-storm-client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=BROKER, result_backend=BACKEND)
    return client


def _log(base_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base_url}/_log", timeout=5) as answer:
        entries: list[dict[str, Any]] = json.load(answer)["requests"]
    return [e for e in entries if ":generateContent" in e["path"]]


def test_a_429_storm_respects_the_global_rate_and_the_cooldowns(ai_workers, names, fake_gemini):
    client = _client()
    sent = [
        client.send_task("quantbeat.ai.analyze", args=[name, DAY.isoformat(), "closing_bet"])
        for name in names
    ]
    deadline = time.monotonic() + 240
    for result in sent:
        try:
            result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        except Exception as exc:  # a timeout here means an analysis never ended
            pytest.fail(f"analysis {result.id} did not end: {exc}")

    # every analysis ended, succeeded or recorded as failed
    with session_scope() as session:
        rows = session.execute(
            select(AiAnalysis.status, AiAnalysis.analyzer, AiAnalysis.total_tokens)
        ).all()
    assert len(rows) == len(names)
    assert {status for status, _, _ in rows} <= {"succeeded", "failed"}
    succeeded = [r for r in rows if r[0] == "succeeded"]
    assert succeeded, "the storm let nothing through"
    assert all(analyzer == "gemini" and tokens for _, analyzer, tokens in succeeded)

    log = _log(fake_gemini)
    throttled = [e for e in log if e["status"] == 429]
    assert len(throttled) >= 4, "the storm did not happen"
    assert all(e["api_key"] == "test-key-0123456789abcdef" for e in log)
    times = sorted(e["t_monotonic"] for e in log)
    # the global rate: grants are spaced 60/RPM s apart across the three workers, so no
    # window of W seconds holds more than W·RPM/60 requests (+1 for the window's edges)
    for width in (2.0, 10.0, 30.0):
        allowed = width * RPM / 60 + 1
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t < start + width)
            assert inside <= allowed, f"{inside} requests within {width} s of {start}"
    # nothing during a cooldown: after a 429 (Retry-After 3 s), no request until it ends
    # (a request already on its way when the 429 left may arrive within a few ms)
    for e in throttled:
        t = e["t_monotonic"]
        during = [x for x in times if t + 0.25 < x < t + RETRY_AFTER - 0.05]
        assert not during, f"{len(during)} request(s) during the cooldown after {t}"

"""Scenario 7 (issue 9): a 429 storm. The global rate is respected and nothing is sent during a
cooldown the provider demanded — for Gemini (three ``ai`` worker processes, the AI issue) and
for a data provider (Upbit crypto candles, two ``io`` worker processes).

Both storms run at once, so their waits overlap: one module-scoped set of five workers on a
throwaway Redis (broker db 0, results db 1, the shared rate limits and cooldowns db 2) starts
together; the AI analyses are sent first and run while the Upbit storm is collected and checked.
Each provider is a fake server of its own that logs when every request arrived (the server's
clock is the judge):

* Gemini (tests/support/fake_gemini.py, a subprocess): the first 4 answers are 429 with
  ``Retry-After: 3``, then 30 % of the rest (seeded); ``QUANTBEAT_GEMINI_RPM`` = 60.
* Upbit (tests/support/fake_upbit.py, a thread): two bursts of 429 with ``Retry-After: 2``;
  ``QUANTBEAT_PROVIDER_RATES`` = 5/s for ``upbit``. Every 429 starts the limiter's shared
  cooldown at once (quantbeat/sources.py), and a worker that reserved a slot before a cooldown
  began checks again after waiting for it (quantbeat/ratelimit.py).

Each storm records an Outcome numbered 7 (two rows in the table).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select, tuple_

from db.engine import session_scope
from db.models import AiAnalysis, DeadLetter, Instrument, IntradayCandle, JobRun
from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayRedis
from tests.integration.helpers import small_kospi_history
from tests.support.fake_upbit import HISTORY_START, FakeUpbit, fake_upbit
from tests.support.services import ROOT, WorkerProcess, start_worker
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

#: A request already on its way when the provider answered 429 may still arrive this long
#: after the 429 left (seconds); anything later than that and before the Retry-After ended
#: was sent during the cooldown.
IN_FLIGHT = 0.25

# --- Gemini -----------------------------------------------------------------------------------
DAY = dt.date(2026, 11, 20)
RPM = 60  # one request per second across all workers
GEMINI_RETRY_AFTER = 3.0
ANALYSES = 10

# --- Upbit ------------------------------------------------------------------------------------
RATE = 5  # requests per second, the configured global rate
UPBIT_RETRY_AFTER = 2
MARKETS = [f"KRW-S{i:02d}" for i in range(16)]
BARS = 400  # one-minute bars per market: two pages of 200
#: Candle requests (0-based, in arrival order) answered 429: two bursts.
THROTTLED = (4, 5, 6, 18, 19)
#: Between a grant and the server's clock reading, scheduling can shift a timestamp a little.
JITTER = 0.05


@dataclass
class Storm:
    """The module's shared set-up: one broker, the fake servers, five workers."""

    client: Celery
    names: list[str]  # instruments to analyse
    gemini_url: str
    upbit: FakeUpbit
    ai_workers: list[WorkerProcess]
    io_workers: list[WorkerProcess]


@pytest.fixture(scope="module")
def fake_gemini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake Gemini as its own process: the first 4 answers are 429 (Retry-After 3 s),
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
            str(GEMINI_RETRY_AFTER),
            "--log-file",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())["base_url"]
    finally:
        proc.terminate()
        proc.wait(10)


def _stop_all(workers: list[WorkerProcess]) -> None:
    """Warm-shut every worker down at once (not one after the other)."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
    for w in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(30)
        w.stop()  # kills one that did not stop in time


@pytest.fixture(scope="module")
def storm(
    database: str, fake_gemini: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storm]:
    tmp = tmp_path_factory.mktemp("rate-storm")
    with (
        ThrowawayRedis(tmp / "redis") as server,
        fake_upbit(MARKETS, throttled=THROTTLED, retry_after=UPBIT_RETRY_AFTER) as upbit,
    ):
        broker, backend, limits = (server.url(n) for n in (0, 1, 2))
        common = {
            "QUANTBEAT_BROKER_URL": broker,
            "QUANTBEAT_RESULT_BACKEND": backend,
            "QUANTBEAT_REDIS_URL": limits,
            # a storm costs retries: enough that every task gets through it
            "QUANTBEAT_MAX_RETRIES": "30",
            "QUANTBEAT_MAX_ATTEMPTS": "40",
        }
        ai_env = {
            **common,
            "QUANTBEAT_GEMINI_API_KEY": "test-key-0123456789abcdef",
            "QUANTBEAT_GEMINI_BASE_URL": fake_gemini,
            "QUANTBEAT_GEMINI_MODEL": "gemini-test",
            "QUANTBEAT_GEMINI_RPM": str(RPM),
            "QUANTBEAT_GEMINI_RPD": "1000",
            "QUANTBEAT_AI_COOLDOWN": "3",
            "QUANTBEAT_RETRY_BACKOFF_BASE": "1",
            "QUANTBEAT_RETRY_BACKOFF_MAX": "6",
        }
        io_env = {
            **common,
            "QUANTBEAT_CRYPTO_SOURCE": "upbit",
            "QUANTBEAT_UPBIT_BASE_URL": upbit.url,
            "QUANTBEAT_PROVIDER_RATES": f'{{"upbit": {RATE}}}',
            "QUANTBEAT_RATE_LIMIT_MAX_WAIT": "30",
        }
        ai_workers = [
            start_worker("tests.support.worker_app", queues="ai", tmp_dir=tmp, env=ai_env)
            for _ in range(3)
        ]
        io_workers = [
            start_worker("workers.app", queues="io", tmp_dir=tmp, env=io_env) for _ in range(2)
        ]
        client = Celery("rate-storm-client")
        client.config_from_object("celeryconfig")
        client.conf.update(broker_url=broker, result_backend=backend)
        try:
            # while the workers start: instruments with history to analyse (this empties
            # every table first)
            names = small_kospi_history(database, "2026-11-02", DAY.isoformat())
            assert len(names) >= ANALYSES
            for w in ai_workers + io_workers:
                w.wait_ready(client)
            yield Storm(client, names[:ANALYSES], fake_gemini, upbit, ai_workers, io_workers)
        finally:
            _stop_all(ai_workers + io_workers)


@pytest.fixture(scope="module")
def ai_sent(storm: Storm) -> list[AsyncResult]:
    """The analyses, sent as soon as the workers answer: they run while the Upbit storm does."""
    return [
        storm.client.send_task("quantbeat.ai.analyze", args=[name, DAY.isoformat(), "closing_bet"])
        for name in storm.names
    ]


def _wait_all(results: list[AsyncResult], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for result in results:
        try:
            result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        except Exception as exc:  # a timeout here means a task never ended
            pytest.fail(f"task {result.id} did not end: {exc}")


def _max_in_window(times: list[float], width: float) -> int:
    """The most requests inside any window of ``width`` seconds."""
    return max(
        (sum(1 for t in times[i:] if t < start + width) for i, start in enumerate(times)),
        default=0,
    )


def _during_cooldowns(
    log: list[tuple[float, int]], retry_after: float
) -> list[tuple[float, float]]:
    """(429 time, arrival) of every request that arrived during a cooldown the server asked
    for: later than :data:`IN_FLIGHT` after a 429 and before its Retry-After ended."""
    times = sorted(t for t, _ in log)
    return [
        (t, x)
        for t, status in log
        if status == 429
        for x in times
        if t + IN_FLIGHT < x < t + retry_after - 0.05
    ]


def _recovery(log: list[tuple[float, int]]) -> float | None:
    """Seconds from the last 429 to the next answered (200) request; ``None`` without 429s."""
    throttled = [t for t, status in log if status == 429]
    if not throttled:
        return None
    after = [t for t, status in log if status == 200 and t > throttled[-1]]
    return round(min(after) - throttled[-1], 2) if after else None


def test_an_upbit_429_storm_respects_the_global_rate_and_the_cooldowns(
    storm: Storm, ai_sent: list[AsyncResult], outcome: Callable[[Outcome], None]
) -> None:
    start = HISTORY_START
    end = start + dt.timedelta(minutes=BARS)
    sent = [
        storm.client.send_task(
            "quantbeat.collect.crypto_candles",
            kwargs={
                "interval": "1m",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "tickers": [market],
            },
        )
        for market in MARKETS
    ]
    _wait_all(sent, 150)
    ids = [r.id for r in sent]
    with storm.upbit.lock:
        log = sorted(storm.upbit.log)
    logs = "\n".join(w.log()[-3000:] for w in storm.io_workers)

    # every task ended succeeded or dead-lettered, and none was lost
    with session_scope() as session:
        states = dict(
            session.execute(
                select(JobRun.task_id, JobRun.state).where(JobRun.task_id.in_(ids))
            ).all()
        )
        hosts = session.execute(
            select(func.count(func.distinct(JobRun.worker))).where(JobRun.task_id.in_(ids))
        ).scalar_one()
        letters = set(
            session.execute(select(DeadLetter.task_id).where(DeadLetter.task_id.in_(ids)))
            .scalars()
            .all()
        )
        rows, keys = session.execute(
            select(
                func.count(),
                func.count(func.distinct(tuple_(IntradayCandle.instrument_id, IntradayCandle.ts))),
            )
            .select_from(IntradayCandle)
            .join(Instrument, Instrument.id == IntradayCandle.instrument_id)
            .where(Instrument.ticker.in_(MARKETS), IntradayCandle.interval == "1m")
        ).one()
    succeeded = [i for i in ids if states.get(i) == "succeeded"]
    dead = [i for i in ids if i in letters]
    assert len(succeeded) + len(dead) == len(ids), (states, letters, logs)
    inserted = sum(r.result["candles"]["inserted"] for r in sent if r.id in succeeded)
    expected = BARS * len(MARKETS)
    lost = expected - keys
    duplicates = rows - keys
    throttled = [t for t, status in log if status == 429]
    per_second = _max_in_window([t for t, _ in log], 1.0)
    during = _during_cooldowns(log, UPBIT_RETRY_AFTER)
    outcome(
        Outcome(
            number=7,
            scenario="429 storm: Upbit candles, 2 io workers",
            sent=len(ids),
            completed=len(succeeded),
            duplicates=duplicates,
            lost=lost,
            recovery_s=_recovery(log),
            notes=(
                f"{len(throttled)}×429 (Retry-After {UPBIT_RETRY_AFTER} s) in {len(log)} "
                f"requests; at most {per_second} in any 1 s (limit {RATE}/s); "
                f"{len(during)} during a cooldown; {len(dead)} dead-lettered"
            ),
        )
    )

    assert len(throttled) == len(THROTTLED), "the storm did not happen"
    assert (lost, duplicates) == (0, 0), (rows, keys, expected)
    assert inserted == expected  # each bar was written once, by one run
    assert not dead, (dead, logs)
    # nothing during a cooldown the server asked for
    assert not during, during
    # the global rate, as the server saw it: never more than RATE requests inside one second
    times = [t for t, _ in log]
    gaps = [times[i + RATE] - times[i] for i in range(len(times) - RATE)]
    assert min(gaps) >= 1.0 - JITTER, (min(gaps), log)
    # both workers took part, so the limit and the cooldowns held across processes
    assert hosts == 2, logs


def _gemini_log(base_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base_url}/_log", timeout=5) as answer:
        entries: list[dict[str, Any]] = json.load(answer)["requests"]
    return [e for e in entries if ":generateContent" in e["path"]]


def test_a_gemini_429_storm_respects_the_global_rate_and_the_cooldowns(
    storm: Storm, ai_sent: list[AsyncResult], outcome: Callable[[Outcome], None]
) -> None:
    _wait_all(ai_sent, 240)

    # every analysis ended, succeeded or recorded as failed
    with session_scope() as session:
        rows = session.execute(
            select(
                AiAnalysis.instrument_id,
                AiAnalysis.status,
                AiAnalysis.analyzer,
                AiAnalysis.total_tokens,
            ).where(AiAnalysis.trade_date == DAY)
        ).all()
    analysed = {instrument for instrument, *_ in rows}
    succeeded = [r for r in rows if r.status == "succeeded"]
    log = _gemini_log(storm.gemini_url)
    timeline = sorted((e["t_monotonic"], e["status"]) for e in log)
    throttled = [e for e in log if e["status"] == 429]
    times = [t for t, _ in timeline]
    during = _during_cooldowns(timeline, GEMINI_RETRY_AFTER)
    outcome(
        Outcome(
            number=7,
            scenario="429 storm: Gemini, 3 ai workers",
            sent=len(storm.names),
            completed=len(rows),
            duplicates=len(rows) - len(analysed),
            lost=len(storm.names) - len(analysed),
            recovery_s=_recovery(timeline),
            notes=(
                f"{len(throttled)}×429 (Retry-After {GEMINI_RETRY_AFTER:g} s) in {len(log)} "
                f"requests; at most {_max_in_window(times, 10.0)} in any 10 s (limit "
                f"{RPM}/min); {len(during)} during a cooldown; {len(succeeded)} succeeded, "
                f"{len(rows) - len(succeeded)} recorded failed"
            ),
        )
    )

    assert len(rows) == len(analysed) == len(storm.names)
    assert {r.status for r in rows} <= {"succeeded", "failed"}
    assert succeeded, "the storm let nothing through"
    assert all(r.analyzer == "gemini" and r.total_tokens for r in succeeded)

    assert len(throttled) >= 4, "the storm did not happen"
    assert all(e["api_key"] == "test-key-0123456789abcdef" for e in log)
    # the global rate: grants are spaced 60/RPM s apart across the three workers, so no
    # window of W seconds holds more than W·RPM/60 requests (+1 for the window's edges)
    for width in (2.0, 10.0, 30.0):
        allowed = width * RPM / 60 + 1
        assert _max_in_window(times, width) <= allowed, f"more than {allowed} within {width} s"
    # nothing during a cooldown: after a 429 (Retry-After 3 s), no request until it ends
    # (a request already on its way when the 429 left may arrive within IN_FLIGHT)
    assert not during, during

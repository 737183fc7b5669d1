"""Crypto collection against a local fake Upbit: two ``io`` worker processes collecting at
once never exceed the configured global request rate, as counted by the server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import IntradayCandle, JobRun
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import start_worker
from tests.support.fake_upbit import HISTORY_START, fake_upbit

pytestmark = pytest.mark.integration

RATE = 5
MARKETS = [f"KRW-C{i:02d}" for i in range(16)]
JITTER = 0.05


def test_two_workers_share_one_global_rate(clean_db, tmp_path: Path):
    broker, backend, shared = (f"{TEST_REDIS_URL}/{n}" for n in (4, 5, 6))
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    for key in redis.Redis.from_url(shared).scan_iter("quantbeat:ratelimit:upbit:*"):
        redis.Redis.from_url(shared).delete(key)
    client = Celery("client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=broker, result_backend=backend)

    start = HISTORY_START
    end = start + dt.timedelta(minutes=400)  # two pages of 200 one-minute bars per market
    with fake_upbit(MARKETS) as server:
        env = {
            "QUANTBEAT_BROKER_URL": broker,
            "QUANTBEAT_RESULT_BACKEND": backend,
            "QUANTBEAT_REDIS_URL": shared,
            "QUANTBEAT_CRYPTO_SOURCE": "upbit",
            "QUANTBEAT_UPBIT_BASE_URL": server.url,
            "QUANTBEAT_PROVIDER_RATES": f'{{"upbit": {RATE}}}',
            "QUANTBEAT_RATE_LIMIT_MAX_WAIT": "30",
        }
        workers = [
            start_worker("workers.app", queues="io", tmp_dir=tmp_path, env=env) for _ in range(2)
        ]
        try:
            for w in workers:
                w.wait_ready(client)
            results = [
                client.send_task(
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
            summaries = [r.get(timeout=120) for r in results]
        finally:
            for w in workers:
                w.stop()
        arrivals = sorted(server.arrivals)

    assert all(s["candles"]["inserted"] == 400 for s in summaries), summaries
    assert len(arrivals) >= 2 * len(MARKETS)
    # Never more than RATE requests inside one second, as the server saw them.
    gaps = [arrivals[i + RATE] - arrivals[i] for i in range(len(arrivals) - RATE)]
    assert min(gaps) >= 1.0 - JITTER, min(gaps)
    # Both workers took part, so the limit held across processes, not within one.
    with session_scope() as session:
        hosts = session.execute(
            select(func.count(func.distinct(JobRun.worker))).where(
                JobRun.task_name == "quantbeat.collect.crypto_candles"
            )
        ).scalar_one()
        stored = session.execute(select(func.count()).select_from(IntradayCandle)).scalar_one()
    assert hosts == 2
    assert stored == 400 * len(MARKETS)


def test_crypto_gaps_are_found_and_backfilled(celery_app, worker, clean_db):
    import os
    import subprocess
    import sys

    from tests.integration.helpers import eventually

    tickers = ["KRW-BTC", "KRW-ETH"]
    day = dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    for start, end in (
        (day, day + dt.timedelta(hours=6)),
        (day + dt.timedelta(hours=10), day + dt.timedelta(hours=24)),
    ):
        celery_app.send_task(
            "quantbeat.collect.crypto_candles",
            kwargs={
                "interval": "60m",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "tickers": tickers,
            },
        ).get(timeout=120)
    quantbeat = str(Path(sys.executable).with_name("quantbeat"))
    argv = [
        quantbeat,
        "data",
        "gaps",
        "--dataset",
        "crypto-60m",
        "--from",
        "2026-11-18T00:00:00+00:00",
        "--to",
        "2026-11-18T23:00:00+00:00",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(
        [*argv, "--backfill"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr[-2000:]
    # Hours 06:00-09:00 are missing for both markets: 2 gaps of 4 bars.
    assert "2 gap(s), 8 missing bars" in first.stdout
    assert "queued 1 quantbeat.collect.crypto_candles task(s)" in first.stdout

    def report() -> str:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120).stdout

    assert "0 gap(s), 0 missing bars" in eventually(report, lambda out: "0 gap(s)" in out, 60)

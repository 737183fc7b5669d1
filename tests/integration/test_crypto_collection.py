"""Crypto collection through the session worker: gaps in stored crypto candles are found and
backfilled by ``quantbeat data gaps --backfill``. (Two worker processes sharing Upbit's global
rate through a 429 storm are fault scenario 7: tests/faults/test_rate_storm.py.)"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration


def test_crypto_gaps_are_found_and_backfilled(celery_app, worker, clean_db):
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

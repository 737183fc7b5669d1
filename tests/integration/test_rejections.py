"""Bad rows from a provider: the good rows of the batch are stored, each bad row is recorded
with its reason, the task succeeds and the worker keeps going. Driven through a real worker
whose simulated source corrupts 5 % of rows (fault injection)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import DailyCandle, DataRejection
from quant.market.faults import CorruptingSource
from quant.market.quality import check_daily_candles
from quant.market.simulated import SimulatedMarket
from quant.market.types import Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import start_worker
from tests.integration.helpers import job_run
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

DAY = "2026-11-20"
RATE = "0.05"


def test_bad_rows_are_recorded_and_the_rest_of_the_batch_is_stored(clean_db, tmp_path: Path):
    broker, backend = f"{TEST_REDIS_URL}/7", f"{TEST_REDIS_URL}/8"
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    env = {
        "QUANTBEAT_BROKER_URL": broker,
        "QUANTBEAT_RESULT_BACKEND": backend,
        "QUANTBEAT_SIM_CORRUPT_RATE": RATE,
    }
    client = Celery("client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=broker, result_backend=backend)
    proc = start_worker("workers.app", queues="io", tmp_dir=tmp_path, env=env)
    try:
        proc.wait_ready(client)
        kwargs = {"trade_date": DAY, "market": "KOSPI"}
        first = client.send_task("quantbeat.collect.daily_candles", kwargs=kwargs)
        summary = first.get(timeout=90)
        second = client.send_task("quantbeat.collect.daily_candles", kwargs=kwargs)
        again = second.get(timeout=90)
    finally:
        proc.stop()

    s = get_settings()
    source = CorruptingSource(
        SimulatedMarket(s.sim_seed, s.sim_universe_size, krx_calendar()),
        float(RATE),
        seed=s.sim_seed,
    )
    day = dt.date.fromisoformat(DAY)
    good, bad = check_daily_candles(source.daily_candles(day, day, market=Market.KOSPI))
    assert len(bad) > 0

    assert summary["rejected"] == len(bad)
    assert summary["candles"] == {"inserted": len(good), "updated": 0, "unchanged": 0}
    assert job_run(first.id).state == "succeeded"
    assert again["rejected"] == len(bad)
    assert again["candles"] == {"inserted": 0, "updated": 0, "unchanged": len(good)}

    with session_scope() as session:
        stored = session.execute(select(func.count()).select_from(DailyCandle)).scalar_one()
        rows = session.execute(select(DataRejection)).scalars().all()
        recorded = {(r.ticker, r.reason, r.occurrences, r.dataset, r.source) for r in rows}
        details = [r.detail for r in rows]
    assert stored == len(good)
    assert recorded == {(b.ticker, b.reason, 2, "daily_candles", "simulated") for b in bad}
    assert all(detail for detail in details)

"""The first vertical slice through a real worker: collect a simulated day into PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select, text

from db.engine import session_scope
from db.models import DailyCandle, Instrument, InvestorFlow
from quant.market.simulated import SimulatedMarket
from quant.market.types import Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar
from tests.integration.helpers import candle_snapshot, job_run

pytestmark = pytest.mark.integration

DAY = "2026-11-20"  # a Friday, a KRX session


def _expected(market: Market) -> tuple[int, dict[str, float]]:
    s = get_settings()
    source = SimulatedMarket(
        seed=s.sim_seed, universe_size=s.sim_universe_size, calendar=krx_calendar()
    )
    day = dt.date.fromisoformat(DAY)
    frame = source.daily_candles(day, day, market=market)
    return len(source.list_instruments(day, market)), dict(
        zip(frame["ticker"], frame["close"], strict=True)
    )


def test_task_sent_by_name_from_another_process_stores_candles_once(celery_app, clean_db):
    sender = (
        "from workers.app import app; "
        f"r = app.send_task('quantbeat.collect.daily_candles', "
        f"kwargs={{'trade_date': '{DAY}', 'market': 'KOSPI'}}); print(r.id)"
    )
    task_id = subprocess.run(
        [sys.executable, "-c", sender],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout.strip()
    summary = AsyncResult(task_id, app=celery_app).get(timeout=60)

    n_instruments, closes = _expected(Market.KOSPI)
    assert summary["session"] is True
    assert summary["simulated"] is True
    assert summary["instruments"] == n_instruments
    assert summary["candles"] == {"inserted": n_instruments, "updated": 0, "unchanged": 0}
    with session_scope() as session:
        stored = dict(
            session.execute(
                select(Instrument.ticker, DailyCandle.close)
                .join(DailyCandle.instrument)
                .where(DailyCandle.trade_date == dt.date.fromisoformat(DAY))
            ).all()
        )
    assert stored == closes

    run = job_run(task_id)
    assert (run.task_name, run.queue, run.state, run.attempts) == (
        "quantbeat.collect.daily_candles",
        "io",
        "succeeded",
        1,
    )
    assert run.kwargs == {"trade_date": DAY, "market": "KOSPI"}
    assert run.finished_at is not None
    assert run.duration_ms is not None
    assert run.duration_ms > 0
    assert run.result is not None
    assert run.result["candles"]["inserted"] == n_instruments

    before = candle_snapshot(DAY)
    again = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": DAY, "market": "KOSPI"}
    ).get(timeout=60)
    assert again["candles"] == {"inserted": 0, "updated": 0, "unchanged": n_instruments}
    assert candle_snapshot(DAY) == before  # not one row rewritten


def test_both_markets_and_flows_are_collected(celery_app, clean_db):
    candles = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": DAY}
    ).get(timeout=60)
    flows = celery_app.send_task(
        "quantbeat.collect.investor_flows", kwargs={"trade_date": DAY}
    ).get(timeout=60)
    total = get_settings().sim_universe_size
    assert candles["markets"] == ["KOSPI", "KOSDAQ"]
    assert candles["instruments"] == flows["instruments"] == total
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(Instrument)).scalar_one() == total
        n_flows = session.execute(select(func.count()).select_from(InvestorFlow)).scalar_one()
    # Halted instruments have no flows row only if the source omits them; both datasets cover
    # every instrument that traded.
    assert flows["flows"]["inserted"] == n_flows
    assert n_flows > 0.99 * total


def test_a_day_without_a_session_stores_nothing(celery_app, clean_db):
    summary = celery_app.send_task(
        "quantbeat.collect.daily_candles",
        kwargs={"trade_date": "2026-11-21"},  # Saturday
    ).get(timeout=60)
    assert summary["session"] is False
    assert summary["candles"] is None
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(DailyCandle)).scalar_one() == 0


def test_a_changed_value_is_rewritten_and_only_that_row(celery_app, clean_db):
    kwargs = {"trade_date": DAY, "market": "KOSPI"}
    first = celery_app.send_task("quantbeat.collect.daily_candles", kwargs=kwargs).get(timeout=60)
    n = first["candles"]["inserted"]
    with session_scope() as session:
        tampered_id, original = session.execute(
            text("SELECT id, close FROM daily_candles ORDER BY id LIMIT 1")
        ).one()
        session.execute(
            text("UPDATE daily_candles SET close = close + 1 WHERE id = :i"), {"i": tampered_id}
        )
    before = {row[0]: row for row in candle_snapshot(DAY)}

    again = celery_app.send_task("quantbeat.collect.daily_candles", kwargs=kwargs).get(timeout=60)

    assert again["candles"] == {"inserted": 0, "updated": 1, "unchanged": n - 1}
    after = {row[0]: row for row in candle_snapshot(DAY)}
    changed = {i for i in before if before[i] != after[i]}
    assert changed == {tampered_id}
    assert after[tampered_id][3] == original  # the source's value is back


def test_the_same_day_collected_twice_at_once_is_stored_once(celery_app, clean_db):
    kwargs = {"trade_date": DAY, "market": "KOSDAQ"}
    results = [
        celery_app.send_task("quantbeat.collect.daily_candles", kwargs=kwargs) for _ in range(3)
    ]
    summaries = [r.get(timeout=90)["candles"] for r in results]
    n_instruments, _ = _expected(Market.KOSDAQ)
    assert sum(s["inserted"] for s in summaries) == n_instruments
    for s in summaries:
        assert min(s.values()) >= 0
        assert sum(s.values()) == n_instruments
    assert len(candle_snapshot(DAY)) == n_instruments

"""History: range collection, incremental catch-up from the last stored date, the backfill
command, and the universe refresh — through the real worker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select

from db.engine import session_scope
from db.models import DailyCandle, Instrument
from quant.market.simulated import SimulatedMarket
from quant.market.types import Market
from quantbeat.settings import get_settings
from quantbeat.sources import krx_calendar

pytestmark = pytest.mark.integration

D = dt.date


def kospi_size() -> int:
    s = get_settings()
    market = SimulatedMarket(s.sim_seed, s.sim_universe_size, krx_calendar())
    return len(market.list_instruments(D(2026, 11, 20), Market.KOSPI))


def stored_days() -> list[dt.date]:
    with session_scope() as session:
        return list(
            session.execute(
                select(DailyCandle.trade_date).distinct().order_by(DailyCandle.trade_date)
            ).scalars()
        )


def test_a_range_collects_every_session_in_it(celery_app, clean_db):
    summary = celery_app.send_task(
        "quantbeat.collect.daily_range",
        kwargs={"start": "2026-09-21", "end": "2026-09-30", "market": "KOSPI"},
    ).get(timeout=120)
    sessions = krx_calendar().sessions(D(2026, 9, 21), D(2026, 9, 30))
    assert len(sessions) == 6  # Chuseok (24-26 Sep) is not a session
    assert summary["sessions"] == 6
    assert summary["candles"]["inserted"] == 6 * kospi_size()
    assert stored_days() == sessions


def test_incremental_runs_resume_after_the_last_stored_session(celery_app, clean_db):
    celery_app.send_task(
        "quantbeat.collect.daily_range",
        kwargs={"start": "2026-11-02", "end": "2026-11-13", "market": "KOSPI"},
    ).get(timeout=120)
    summary = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"market": "KOSPI", "until": "2026-11-20"}
    ).get(timeout=120)
    assert (summary["start"], summary["end"]) == ("2026-11-16", "2026-11-20")
    assert summary["candles"]["inserted"] == 5 * kospi_size()
    # One instrument lagging behind pulls the next run back to where it stopped.
    with session_scope() as session:
        lagging = session.execute(select(Instrument.id).limit(1)).scalar_one()
        session.execute(
            delete(DailyCandle).where(
                DailyCandle.instrument_id == lagging, DailyCandle.trade_date >= D(2026, 11, 18)
            )
        )
    again = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"market": "KOSPI", "until": "2026-11-20"}
    ).get(timeout=120)
    assert again["start"] == "2026-11-18"
    assert again["candles"]["inserted"] == 3  # the lagging instrument's three days
    assert again["candles"]["unchanged"] == 3 * kospi_size() - 3


def test_backfill_command_fills_history_once(worker, clean_db):
    quantbeat = str(Path(sys.executable).with_name("quantbeat"))
    argv = [
        quantbeat,
        "collect",
        "backfill",
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
        "--market",
        "KOSPI",
        "--dataset",
        "candles",
        "--chunk-sessions",
        "5",
    ]
    first = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    sessions = krx_calendar().sessions(D(2026, 10, 1), D(2026, 10, 31))
    assert stored_days() == sessions
    assert f"inserted {len(sessions) * kospi_size():,}" in first.stdout
    second = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "inserted 0" in second.stdout


def test_universe_refresh_lists_and_delists(celery_app, clean_db):
    first = celery_app.send_task("quantbeat.collect.universe").get(timeout=120)
    assert first["listed"] == get_settings().sim_universe_size
    assert first["delisted"] == 0
    with session_scope() as session:  # an instrument the provider no longer lists
        session.execute(
            insert(Instrument).values(
                market="KOSPI",
                ticker="999999",
                name="gone",
                currency="KRW",
                listing_status="listed",
                source="simulated",
            )
        )
    second = celery_app.send_task("quantbeat.collect.universe").get(timeout=120)
    assert second["delisted"] == 1
    with session_scope() as session:
        status = session.execute(
            select(Instrument.listing_status).where(Instrument.ticker == "999999")
        ).scalar_one()
        listed = session.execute(
            select(func.count())
            .select_from(Instrument)
            .where(Instrument.listing_status == "listed")
        ).scalar_one()
    assert status == "delisted"
    assert listed == get_settings().sim_universe_size

"""History: range collection, incremental catch-up from the last stored date, the backfill
command, and the universe refresh — through the real worker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, update

from db.engine import session_scope
from db.models import DailyCandle, Instrument
from quant.market.simulated import SimulatedMarket
from quant.market.types import Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar

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
    # It re-fetches the last stored session (KRX revises figures after the close) and
    # collects the rest.
    assert (summary["start"], summary["end"]) == ("2026-11-13", "2026-11-20")
    assert summary["candles"]["inserted"] == 5 * kospi_size()
    assert summary["candles"]["unchanged"] == kospi_size()
    # One instrument lagging behind pulls the next run back to where it stopped.
    with session_scope() as session:
        lagging = session.execute(
            select(Instrument.id).order_by(Instrument.id).limit(1)
        ).scalar_one()
        session.execute(
            delete(DailyCandle).where(
                DailyCandle.instrument_id == lagging, DailyCandle.trade_date >= D(2026, 11, 18)
            )
        )
    again = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"market": "KOSPI", "until": "2026-11-20"}
    ).get(timeout=120)
    assert again["start"] == "2026-11-17"  # the lagging instrument's last stored session
    assert again["candles"]["inserted"] == 3  # the lagging instrument's three days
    assert again["candles"]["unchanged"] == 4 * kospi_size() - 3


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


def test_doubtful_bars_are_stored_flagged(celery_app, clean_db):
    celery_app.send_task(
        "quantbeat.collect.daily_range",
        kwargs={"start": "2026-06-01", "end": "2026-11-19", "market": "KOSPI"},
    ).get(timeout=120)
    with session_scope() as session:
        rows = session.execute(select(DailyCandle.volume, DailyCandle.quality_flags)).all()
        # A stored close far below the truth makes the next real bar look like a +100 % move.
        target = session.execute(
            select(Instrument.id).order_by(Instrument.id).limit(1)
        ).scalar_one()
        session.execute(
            update(DailyCandle)
            .where(DailyCandle.instrument_id == target, DailyCandle.trade_date == D(2026, 11, 19))
            .values(close=DailyCandle.close / 2)
        )
    assert any(v == 0 for v, _ in rows)  # the simulated market halts now and then
    for volume, flags in rows:
        assert ("zero_volume" in (flags or "")) == (volume == 0)
        assert "limit_move" not in (flags or "")  # the simulated market respects the limit
    celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": "2026-11-20", "market": "KOSPI"}
    ).get(timeout=120)
    with session_scope() as session:
        flagged = (
            session.execute(
                select(DailyCandle.instrument_id).where(
                    DailyCandle.trade_date == D(2026, 11, 20),
                    DailyCandle.quality_flags.contains("limit_move"),
                )
            )
            .scalars()
            .all()
        )
    assert flagged == [target]


def test_data_gaps_reports_and_backfills(worker, clean_db):
    quantbeat = str(Path(sys.executable).with_name("quantbeat"))
    env = dict(os.environ)
    with_market = ["--market", "KOSDAQ", "--from", "2026-11-02", "--to", "2026-11-13"]
    for start, end in (("2026-11-02", "2026-11-04"), ("2026-11-10", "2026-11-13")):
        summary = subprocess.run(
            [
                quantbeat,
                "collect",
                "backfill",
                "--from",
                start,
                "--to",
                end,
                "--market",
                "KOSDAQ",
                "--dataset",
                "candles",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert summary.returncode == 0, summary.stderr[-2000:]
    report = subprocess.run(
        [quantbeat, "data", "gaps", *with_market, "--backfill"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    n = len(
        SimulatedMarket(
            get_settings().sim_seed, get_settings().sim_universe_size, krx_calendar()
        ).list_instruments(D(2026, 11, 13), Market.KOSDAQ)
    )
    # 11-05, 11-06 and 11-09 are missing for every KOSDAQ instrument.
    assert f"{n:,} gap(s), {3 * n:,} missing instrument-sessions" in report.stdout
    assert "2026-11-05" in report.stdout
    assert "2026-11-09" in report.stdout
    assert "queued 1 quantbeat.collect.daily_range task(s)" in report.stdout

    def gaps_left() -> str:
        done = subprocess.run(
            [quantbeat, "data", "gaps", *with_market],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout

    from tests.integration.helpers import eventually

    final = eventually(gaps_left, lambda out: ": 0 gap(s)" in out, timeout=60)
    assert ": 0 gap(s), 0 missing" in final

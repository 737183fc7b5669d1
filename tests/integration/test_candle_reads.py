"""Daily bars read into NumPy (db.candles.read_daily_bars) from PostgreSQL: the scenario and
its checks are tests/support/candle_reads.py, run three times — on the rows only (nothing
packed: binary COPY), with every month packed (db.candle_months), and with some months
packed and some written since (each instrument-month from one of the two)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import candle_months
from db.engine import create_engine_for
from tests.support import candle_reads as scenario

pytestmark = pytest.mark.integration


@pytest.fixture(params=["rows", "packed", "mixed"])
def session(database: str, request: pytest.FixtureRequest) -> Iterator[Session]:
    engine = create_engine_for(database)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE instruments RESTART IDENTITY CASCADE"))
    with Session(engine) as s:
        scenario.store_history(s)
        if request.param != "rows":
            report = candle_months.pack(lambda: _scope(engine))
            assert report.packed > 20
            assert report.remaining == 0
        if request.param == "mixed":
            # touch two months of A and one of B: those read from the rows, the rest packed
            s.execute(
                text(
                    "UPDATE daily_candles SET volume = volume WHERE trade_date IN "
                    "('2026-11-20', '2026-03-02', '2026-06-01')"
                )
            )
            s.commit()
            stale = s.execute(text("SELECT count(*) FROM candle_months_stale")).scalar_one()
            assert stale >= 3
        yield s
    engine.dispose()


@contextmanager
def _scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s, s.begin():
        yield s


def test_last_bars_are_exactly_each_instruments_last_bars(session: Session):
    scenario.check_last_bars_are_exactly_each_instruments_last_bars(session)


def test_null_prices_read_as_nan_and_values_come_with_their_dates(session: Session):
    scenario.check_null_prices_read_as_nan_and_values_come_with_their_dates(session)


def test_range_read_and_alignment(session: Session):
    scenario.check_range_read_and_alignment(session)


def test_more_bars_than_stored_gives_every_bar(session: Session):
    scenario.check_more_bars_than_stored_gives_every_bar(session)


def test_market_sessions(session: Session):
    scenario.check_market_sessions(session)

"""Daily bars read into NumPy (db.candles.read_daily_bars) from PostgreSQL, binary COPY:
the scenario and its checks are tests/support/candle_reads.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import create_engine_for
from tests.support import candle_reads as scenario

pytestmark = pytest.mark.integration


@pytest.fixture
def session(database: str) -> Iterator[Session]:
    engine = create_engine_for(database)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE instruments RESTART IDENTITY CASCADE"))
    with Session(engine) as s:
        scenario.store_history(s)
        yield s
    engine.dispose()


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

"""Daily bars read into NumPy (db.candles.read_daily_bars) from the embedded default's own
database file (SQLite, through the driver into one matrix): the same scenario and checks as
the PostgreSQL test (tests/support/candle_reads.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from db.engine import create_engine_for
from db.models import Base
from tests.support import candle_reads as scenario


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'reads.sqlite'}")
    Base.metadata.create_all(engine)
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

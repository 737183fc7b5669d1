"""Intraday snapshots against PostgreSQL (issue 17, item 2): during a session the day so far
of every listed instrument and index is stored with its moment, as history; a moment taken
twice is stored once; bad rows are rejected and recorded while the rest is kept; unknown
tickers are counted, not stored; outside a session nothing is taken; ``health`` judges
freshness from what is stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import DataRejection, IntradaySnapshot
from db.store import ensure_instruments
from quant.errors import ValidationError
from quant.market.types import SNAPSHOT_COLUMNS
from quantbeat.services import health, snapshots

pytestmark = pytest.mark.integration

KST = ZoneInfo("Asia/Seoul")
TICKERS = ["005930", "000660", "035420"]


class FakeSnapshots:
    """The day so far: prices grow with the minutes since the open; ``bad`` breaks one
    ticker's row (high below low); ``stranger`` adds a ticker the database does not list."""

    name = "simulated-snapshot-test"
    simulated = True

    def __init__(self) -> None:
        self.bad: str | None = None
        self.stranger = False

    def _frame(self, tickers: Sequence[str], at: dt.datetime, base: float) -> pd.DataFrame:
        minutes = (at.hour * 60 + at.minute) - 9 * 60
        rows: list[dict[str, Any]] = []
        for i, ticker in enumerate(tickers):
            last = base * (1 + i) * (1 + minutes / 10_000)
            rows.append(
                {
                    "ticker": ticker,
                    "open": base * (1 + i),
                    "high": last * 1.01,
                    "low": base * (1 + i) * 0.99 if ticker != self.bad else last * 1.02,
                    "close": last,
                    "volume": 1_000.0 * minutes,
                    "value": 1_000.0 * minutes * last,
                }
            )
        return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))

    def market_snapshot(self, day: dt.date, at: dt.datetime, market: Any = None) -> pd.DataFrame:
        tickers = [*TICKERS, "999999"] if self.stranger else TICKERS
        return self._frame(tickers, at, 50_000.0)

    def index_snapshot(self, day: dt.date, at: dt.datetime, codes: Sequence[str]) -> pd.DataFrame:
        frame = self._frame(list(codes), at, 2_500.0)
        frame["volume"] = np.nan
        frame["value"] = np.nan
        return frame


@pytest.fixture
def source(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> FakeSnapshots:
    with session_scope() as session:
        ensure_instruments(session, "KOSPI", TICKERS, source="test")
    fake = FakeSnapshots()
    monkeypatch.setattr(snapshots, "snapshot_source", lambda settings: fake)
    return fake


def _rows() -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(IntradaySnapshot)).scalar_one())


def test_a_snapshot_during_the_session_is_stored_once_as_history(source: FakeSnapshots):
    at = dt.datetime(2026, 11, 20, 11, 0, tzinfo=KST)
    first = snapshots.take_snapshot(at)
    assert first["trade_date"] == "2026-11-20"
    # 3 instruments; 3 indices and the 8 sector ETFs
    assert (first["instruments"], first["indices"], first["new"]) == (3, 11, 14)
    assert first["simulated"] is True
    # no daily bars of the indices are stored here: the gate of that moment says why
    assert first["gate"] == "UNKNOWN"
    assert snapshots.take_snapshot(at)["new"] == 0  # the same moment again
    later = snapshots.take_snapshot(dt.datetime(2026, 11, 20, 15, 10, tzinfo=KST))
    assert later["new"] == 14
    assert _rows() == 28  # history: the 11:00 rows are kept
    with session_scope() as session:
        row = session.execute(
            select(IntradaySnapshot)
            .where(IntradaySnapshot.series_id.is_not(None))
            .order_by(IntradaySnapshot.taken_at.desc())
            .limit(1)
        ).scalar_one()
        assert row.volume is None  # an index snapshot without volume
        assert row.taken_at == dt.datetime(2026, 11, 20, 6, 10, tzinfo=dt.UTC)


def test_bad_rows_are_rejected_and_unknown_tickers_counted(source: FakeSnapshots):
    source.bad = "000660"
    source.stranger = True
    found = snapshots.take_snapshot(dt.datetime(2026, 11, 20, 10, 0, tzinfo=KST))
    assert found["rejected"] == 1
    assert found["unknown_tickers"] == 1
    assert found["new"] == 2 + 11
    with session_scope() as session:
        rejection = session.execute(select(DataRejection)).scalar_one()
    assert rejection.dataset == "intraday_snapshots"
    assert rejection.ticker == "000660"
    assert rejection.reason == "high_below_low"


@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(2026, 11, 20, 8, 59, tzinfo=KST),  # before the open
        dt.datetime(2026, 11, 20, 15, 31, tzinfo=KST),  # after the close
        dt.datetime(2026, 11, 21, 11, 0, tzinfo=KST),  # Saturday
        dt.datetime(2026, 9, 25, 11, 0, tzinfo=KST),  # 추석
    ],
)
def test_nothing_is_taken_outside_a_session(source: FakeSnapshots, at: dt.datetime):
    found = snapshots.take_snapshot(at)
    assert "outside a KRX session" in found["skipped"]
    assert _rows() == 0


def test_a_naive_moment_is_refused(source: FakeSnapshots):
    with pytest.raises(ValidationError, match="at must be timezone-aware"):
        snapshots.take_snapshot(dt.datetime(2026, 11, 20, 11, 0))


def test_health_reads_the_latest_snapshot(source: FakeSnapshots):
    now = dt.datetime(2026, 11, 20, 11, 5, tzinfo=KST)
    assert snapshots.snapshot_age(now) == (True, None)
    snapshots.take_snapshot(dt.datetime(2026, 11, 20, 11, 0, tzinfo=KST))
    session_open, latest = snapshots.snapshot_age(now)
    assert session_open is True
    assert latest == dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    assert health.assess_snapshots(session_open, latest, now, 10).status == health.Status.HEALTHY

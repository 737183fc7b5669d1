"""The latest snapshot's time on the embedded default's SQLite file is timezone-aware UTC, as
on PostgreSQL: ``health`` subtracts it from now during a KRX session (it raised TypeError,
can't subtract offset-naive and offset-aware datetimes, whenever a session was open)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import forget_engines, session_scope
from db.migrate import upgrade
from db.models import IntradaySnapshot
from db.snapshots import latest_snapshot
from quantbeat.infra.settings import reset_settings
from quantbeat.services.health import assess_snapshots


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'snap.sqlite'}"
    monkeypatch.setenv("QUANTBEAT_DATABASE_URL", url)
    reset_settings()
    forget_engines()
    upgrade(url)
    yield url
    forget_engines()
    reset_settings()


def test_the_latest_snapshot_is_aware_utc_and_health_can_age_it(database: str) -> None:
    taken = dt.datetime(2026, 12, 7, 0, 10, tzinfo=dt.UTC)  # 09:10 KST, a session is open
    with session_scope() as session:
        assert latest_snapshot(session) is None
        session.add(
            IntradaySnapshot(trade_date=taken.date(), taken_at=taken, open=1.0, high=1.0,
                             low=1.0, close=1.0, source="simulated", simulated=True)
        )  # fmt: skip
    with session_scope() as session:
        latest = latest_snapshot(session)
        assert latest == taken
        assert latest is not None
        assert latest.tzinfo is not None
        assert latest_snapshot(session, taken.date()) == taken
    now = taken + dt.timedelta(minutes=3)
    health = assess_snapshots(True, latest, now, 10)
    assert health.status.value == "healthy", health
